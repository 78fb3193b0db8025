from pathlib import Path

import pytest

from service.tokenizer import EOS, PAD, UNK, Detokenizer, Vocab, detokenize, tokenize

TEXT = """'Oh dear! Oh dear! I shall be late!' (when she thought it over afterwards,
it occurred to her) -- that she ought to have wondered; "Botchan" by Mr. K. Natsume
isn't a rabbit-hole: it's 1,000 miles away?
"""


def test_words_keep_inner_apostrophes_and_punctuation_is_split() -> None:
    assert tokenize("Alice's cat doesn't sit, 'here'!", add_eos=False) == [
        "alice's", "cat", "doesn't", "sit", ",", "'", "here", "'", "!",
    ]  # fmt: skip


def test_eos_closes_every_finished_line_but_not_an_unfinished_last_line() -> None:
    assert tokenize("a b\n\nc d\n") == ["a", "b", EOS, "c", "d", EOS]
    assert tokenize("a b\nc d") == ["a", "b", EOS, "c", "d"]
    assert tokenize("a b\nc", add_eos=False) == ["a", "b", "c"]


def test_paragraph_mode_joins_lines_and_closes_paragraphs_a_blank_line_follows() -> None:
    text = "a b\nc\n\n  \nd e\nf\n\n"
    assert tokenize(text, eos="paragraph") == ["a", "b", "c", EOS, "d", "e", "f", EOS]
    # A prompt being continued: its last paragraph is unfinished, and single line breaks are no ends.
    assert tokenize("The Queen said\n", eos="paragraph") == ["the", "queen", "said"]
    assert tokenize("a\r\n\r\nb", eos="paragraph") == ["a", EOS, "b"]
    assert tokenize(text, eos="none") == tokenize(text, add_eos=False) == ["a", "b", "c", "d", "e", "f"]
    assert tokenize("a\nb\n", eos="line") == tokenize("a\nb\n") == ["a", EOS, "b", EOS]


def test_paragraph_detokenizer_starts_a_fresh_paragraph() -> None:
    tokens = ["'", "oh", "dear", EOS, "she", "said", "."]
    assert detokenize(tokens, eos="paragraph") == "'Oh dear\n\nShe said."
    assert tokenize(detokenize(tokens, eos="paragraph") + "\n\n", eos="paragraph") == [*tokens, EOS]
    # A session's saved state keeps the mode; states saved before the mode existed are line mode.
    detokenizer = Detokenizer("paragraph")
    assert Detokenizer.from_state(detokenizer.state()).feed(EOS) == "\n\n"
    state = detokenizer.state()
    del state["eos"]
    assert Detokenizer.from_state(state).feed(EOS) == "\n"


def test_round_trip_tokens_survive_detokenization() -> None:
    tokens = tokenize(TEXT)
    assert tokenize(detokenize(tokens)) == tokens


@pytest.mark.parametrize(
    ("tokens", "text"),
    [
        (["hello", ",", "world", "."], "Hello, world."),
        (["'", "oh", "dear", "!", "'", "thought", "alice"], "'Oh dear!' thought alice"),
        (["he", "said", '"', "no", "good", '"', "to", "me"], 'He said "no good" to me'),
        (["a", "rabbit", "-", "hole", "(", "deep", ")", ";", "i", "fell"], "A rabbit-hole (deep); I fell"),
        (["i'm", "late", "?", "yes", ":", "very", "."], "I'm late? Yes: very."),
        (["end", ".", EOS, "next", "line"], "End.\nNext line"),
    ],
)
def test_detokenizer_reads_like_prose(tokens: list[str], text: str) -> None:
    assert detokenize(tokens) == text


def test_streaming_pieces_equal_whole_text_and_priming_continues_quote_state() -> None:
    tokens = tokenize(TEXT)
    assert "".join(Detokenizer().pieces(tokens)) == detokenize(tokens)
    primed = Detokenizer()
    primed.prime(["she", "said", '"', "hello"])
    assert "".join(primed.pieces(['"', "and", "left"])) == '" and left'  # a closing quote: no space before it


def test_vocab_min_count_specials_and_unknowns(tmp_path: Path) -> None:
    vocab = Vocab.build(["b", "a", "a", "c", "c", "c", "d"], min_count=2, specials=(PAD, UNK))
    assert vocab.itos == [PAD, UNK, "c", "a"]
    assert vocab.encode(["c", "zzz", "a"]) == [2, 1, 3]
    vocab.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").itos == vocab.itos
