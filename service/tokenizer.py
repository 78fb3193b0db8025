"""Word tokenizer, vocabulary and detokenizer shared by training and serving.

This module is the contract between the two sides: training builds the vocabulary with it and the service
tokenizes prompts with it, so it must not import torch (or anything the service image does not carry).

Rules:
- lower-case;
- a word is a run of letters/digits, with inner apostrophes kept ("don't", "alice's");
- every other visible character is its own token (",", "'", "-", "(" ...);
- `<eos>` marks ends, in one of three modes (a model's manifest says which, `tokenizer.eos`):
  `paragraph` — paragraphs are separated by blank lines, the lines inside one are joined, and `<eos>` closes every
  paragraph that a blank line follows; `line` — `<eos>` closes every non-empty line (the classic word-LM convention,
  and what models trained before the field existed use); `none` — no `<eos>` at all (single snippets). In both
  marking modes the last paragraph or line of a text that does not end with its separator is unfinished (a prompt
  being continued): no `<eos>` after it;
- words outside the vocabulary become `<unk>`.

Reading a book into paragraphs (hard-wrapped lines, texts without blank lines) is the corpus reader's job
(`training/data/text.py`); it hands this module text with blank lines between paragraphs.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

EosMode = Literal["paragraph", "line", "none"]
EOS_MODES: tuple[str, ...] = get_args(EosMode)

EOS = "<eos>"
UNK = "<unk>"
PAD = "<pad>"

# A word: letters/digits with optional inner apostrophes (straight or curly). Anything else that is not space is a
# one-character token. Underscore counts as punctuation (Gutenberg uses it for italics).
_TOKEN_RE = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*|[^\w\s]|_")

_NO_SPACE_BEFORE = frozenset(",.;:!?)]}%")
_NO_SPACE_AFTER = frozenset("([{$")
_JOINERS = frozenset("-/")  # glued on both sides: "rabbit-hole", "and/or"
_QUOTES = frozenset("\"'")
_SENTENCE_END = frozenset(".!?")
_CAPITAL_I = re.compile(r"^i(?=$|')")
_BLANK_LINES = re.compile(r"\n[ \t\f\v]*\n\s*")  # one or more blank (or whitespace-only) lines


def tokenize_line(line: str) -> list[str]:
    """Split one line into lower-cased tokens (no `<eos>`)."""
    return [t.replace("\u2019", "'") for t in _TOKEN_RE.findall(line.lower())]


def tokenize(text: str, add_eos: bool = True, eos: EosMode = "line") -> list[str]:
    """Tokenize text with `<eos>` as the `eos` mode says (module docstring); `add_eos=False` is `eos="none"`."""
    if not add_eos or eos == "none":
        return [t for line in text.splitlines() for t in tokenize_line(line)]
    if eos == "paragraph":
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        blocks = _BLANK_LINES.split(text)
        # A blank line after the last block means it is finished; the split leaves an empty last block then.
        done_flags = [True] * (len(blocks) - 1) + [False]
        tokens: list[str] = []
        for block, done in zip(blocks, done_flags, strict=True):
            words = [t for line in block.splitlines() for t in tokenize_line(line)]
            if words:
                tokens.extend(words)
                if done:
                    tokens.append(EOS)
        return tokens
    assert eos == "line", f"unknown eos mode {eos!r}"
    tokens = []
    lines = text.splitlines() or [text]
    for i, line in enumerate(lines):
        words = tokenize_line(line)
        if not words:
            continue
        tokens.extend(words)
        # The last line of a prompt without a trailing newline is unfinished: no <eos> after it.
        finished = i < len(lines) - 1 or text.endswith(("\n", "\r"))
        if finished:
            tokens.append(EOS)
    return tokens


@dataclass
class Vocab:
    """Token <-> id mapping. `itos[i]` is the token with id i; specials come first."""

    itos: list[str]
    unk: str = UNK
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}
        assert len(self.stoi) == len(self.itos), "duplicate tokens in vocabulary"
        assert self.unk in self.stoi, f"vocabulary lacks {self.unk}"

    @classmethod
    def build(cls, tokens: Iterable[str], min_count: int, specials: tuple[str, ...] = (UNK, EOS)) -> Vocab:
        """Specials first, then tokens seen at least `min_count` times, most frequent first (ties by spelling)."""
        counts = Counter(tokens)
        words = sorted(
            (t for t, n in counts.items() if n >= min_count and t not in specials),
            key=lambda t: (-counts[t], t),
        )
        return cls(itos=[*specials, *words])

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def unk_id(self) -> int:
        return self.stoi[self.unk]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        unk_id = self.unk_id
        return [self.stoi.get(t, unk_id) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps({"itos": self.itos, "unk": self.unk}, ensure_ascii=False, indent=0) + "\n",
            encoding="utf-8",
        )

    @classmethod
    def load(cls, path: Path) -> Vocab:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(itos=list(data["itos"]), unk=data["unk"])


class Detokenizer:
    """Turns tokens back into prose, one token at a time (so streaming and whole-text output agree).

    No space before `,.;:!?` and closing quotes, none after opening quotes; hyphens glue words; `<eos>` is a line
    break (`eos="line"`) or a blank line that starts a new paragraph afresh (`eos="paragraph"`: quotes closed,
    capital letter next); sentences and the pronoun "I" are capitalised. Straight quotes alternate between opening
    and closing, which is why this is stateful: feed it the prompt first (discarding the output) to continue a text
    correctly.
    """

    def __init__(self, eos: EosMode = "line") -> None:
        self.eos = eos
        self._open_quotes: set[str] = set()
        self._space_next = False  # whether the next token needs a leading space
        self._capitalize_next = True

    def feed(self, token: str) -> str:
        if token == EOS and self.eos == "paragraph":
            self._open_quotes.clear()
            self._space_next = False
            self._capitalize_next = True
            return "\n\n"
        if token == EOS:
            # Line ends in the books are mostly wraps inside a sentence: keep quote and capitalisation state.
            self._space_next = False
            return "\n"
        if token == PAD:
            return ""
        if token in _QUOTES:
            if token in self._open_quotes:  # closing quote: hugs the previous word
                self._open_quotes.discard(token)
                self._space_next = True
                # "'Oh dear!' thought Alice": what follows a closed quote is usually a dialogue tag.
                self._capitalize_next = False
                return token
            self._open_quotes.add(token)  # opening quote: hugs the next word
            piece = (" " if self._space_next else "") + token
            self._space_next = False
            return piece
        if token in _JOINERS:
            self._space_next = False
            return token
        if token in _NO_SPACE_BEFORE:
            self._space_next = True
            if token in _SENTENCE_END:
                self._capitalize_next = True
            return token
        word = token
        if self._capitalize_next and word[:1].isalpha():
            word = word[:1].upper() + word[1:]
            self._capitalize_next = False
        word = _CAPITAL_I.sub("I", word)
        piece = (" " if self._space_next else "") + word
        self._space_next = token not in _NO_SPACE_AFTER
        return piece

    def state(self) -> dict[str, object]:
        """JSON-able state, so a session can continue the text exactly where it stopped."""
        return {"open_quotes": sorted(self._open_quotes), "space_next": self._space_next,
                "capitalize_next": self._capitalize_next, "eos": self.eos}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, object]) -> Detokenizer:
        # States saved before the eos mode existed come from line models.
        detokenizer = cls(eos=str(state.get("eos", "line")))  # type: ignore[arg-type]
        detokenizer._open_quotes = set(state["open_quotes"])  # type: ignore[call-overload]
        detokenizer._space_next = bool(state["space_next"])
        detokenizer._capitalize_next = bool(state["capitalize_next"])
        return detokenizer

    def prime(self, tokens: Iterable[str]) -> None:
        """Consume context tokens (for example the prompt) without producing output."""
        for tok in tokens:
            self.feed(tok)

    def pieces(self, tokens: Iterable[str]) -> Iterator[str]:
        for tok in tokens:
            yield self.feed(tok)


def detokenize(tokens: Iterable[str], eos: EosMode = "line") -> str:
    """Join tokens into readable text."""
    return "".join(Detokenizer(eos).pieces(tokens))
