"""Sentiment data: the Rotten Tomatoes snippets of the pinned vaderSentiment archive, or a user's CSV/JSONL file.

Default data (shared DATA.md): `vaderSentiment==3.3.2` sdist -> `additional_resources/hutto_ICWSM_2014.tar.gz` ->
`movieReviewSnippets_GroundTruth.txt`, 10,605 rows `id <TAB> mean rating (-4..4) <TAB> text` with CRLF line ends.
Label = sign of the rating (negative/positive); the 37 rows rated exactly 0 are dropped. The same folder holds tweets
and Amazon snippets (out-of-domain checks, never trained on) and NYT editorial snippets (unlabelled text for
language-model pre-training; their ratings are ignored).

The split is stratified and seeded: each label's rows are shuffled with the seed and cut 80/10/10, so the same seed
gives the same rows in each split. The hash of each split's row ids goes into the manifest.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .archives import DEFAULT_CACHE, ArchiveFile, fetch

DEFAULT_LABELS = ("negative", "positive")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_NAMES = ("train", "valid", "test")

_VADER_SDIST = (
    "vaderSentiment==3.3.2",
    "vaderSentiment-3.3.2.tar.gz",
    "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
)
_HUTTO_TAR = (
    "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
    "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa",
)


def _hutto_file(name: str, sha256: str) -> ArchiveFile:
    requirement, archive_name, archive_sha256 = _VADER_SDIST
    return ArchiveFile(
        requirement=requirement,
        no_binary=":all:",
        archive_name=archive_name,
        archive_sha256=archive_sha256,
        member=f"hutto_ICWSM_2014/{name}",
        member_sha256=sha256,
        nested=(_HUTTO_TAR,),
    )


MOVIE_REVIEWS = _hutto_file(
    "movieReviewSnippets_GroundTruth.txt", "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350"
)
TWEETS = _hutto_file("tweets_GroundTruth.txt", "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f")
AMAZON = _hutto_file(
    "amazonReviewSnippets_GroundTruth.txt", "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2"
)
NYT_EDITORIALS = _hutto_file(
    "nytEditorialSnippets_GroundTruth.txt", "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e"
)
OUT_OF_DOMAIN = {"tweets": TWEETS, "amazon": AMAZON}


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: int  # index into the data set's label names


@dataclass
class SentimentData:
    """A labelled data set cut into train/valid/test; `labels[i]` is the name of label id i."""

    train: list[Example]
    valid: list[Example]
    test: list[Example]
    labels: list[str]
    source: str
    sha256: str  # of the rows (id, label, text) the split was cut from, in file order
    split: dict[str, Any] = field(default_factory=dict)  # seed, fractions, sizes and row-id hashes per split
    builtin: bool = False  # the default Rotten Tomatoes data (its out-of-domain sets and VADER apply)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


class DataFormatError(ValueError):
    pass


# ---- reading -------------------------------------------------------------------------------------------------------
def read_ground_truth(path: Path) -> list[tuple[str, float, str]]:
    """Rows `(id, mean rating, text)` of one of the archive's `*_GroundTruth.txt` files (CRLF, tab-separated)."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise DataFormatError(f"{path.name} line {n}: expected 3 tab-separated fields, got {len(parts)}")
        rows.append((parts[0], float(parts[1]), parts[2].strip()))
    return rows


def polarity_examples(rows: Sequence[tuple[str, float, str]]) -> list[Example]:
    """Label = sign of the mean rating (0 negative, 1 positive); rows rated exactly 0 are dropped."""
    return [Example(id=i, text=t, label=int(r > 0)) for i, r, t in rows if r != 0]


def read_labelled_file(path: Path) -> tuple[list[str], list[str], list[str]]:
    """(ids, texts, label strings) of a user's file.

    - `.csv`: a header row with columns `text` and `label` (any others are ignored; an `id` column is used when
      present);
    - `.jsonl` / `.json`: one JSON object per line with keys `text` and `label` (and optionally `id`).
    Labels may be strings or integers; any number of distinct labels (at least 2). Ids default to the line number.
    """
    records: list[tuple[int, dict[str, Any]]] = []
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            columns = {c.strip().lower(): c for c in reader.fieldnames or []}
            missing = {"text", "label"} - columns.keys()
            if missing:
                raise DataFormatError(f"{path}: CSV header lacks column(s) {sorted(missing)} (has {reader.fieldnames})")
            for row in reader:
                record = {key: row[original] for key, original in columns.items()}
                records.append((reader.line_num, record))
    elif suffix in (".jsonl", ".json"):
        for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path} line {n}: not JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or "text" not in record or "label" not in record:
                raise DataFormatError(f'{path} line {n}: expected an object with "text" and "label"')
            records.append((n, record))
    else:
        raise DataFormatError(f"{path}: expected a .csv or .jsonl file")

    ids, texts, labels = [], [], []
    for n, record in records:
        text, label = record["text"], record["label"]
        if not isinstance(text, str) or not text.strip():
            raise DataFormatError(f"{path} line {n}: empty or non-string text")
        if isinstance(label, bool) or not isinstance(label, str | int) or str(label).strip() == "":
            raise DataFormatError(f"{path} line {n}: label must be a non-empty string or an integer")
        ids.append(str(record.get("id") or n))
        texts.append(text.strip())
        labels.append(str(label).strip())
    if len(set(ids)) != len(ids):
        raise DataFormatError(f"{path}: ids are not unique")
    if len(set(labels)) < 2:
        raise DataFormatError(f"{path}: need at least 2 distinct labels, found {sorted(set(labels))}")
    return ids, texts, labels


# ---- splitting -----------------------------------------------------------------------------------------------------
def rows_sha256(examples: Sequence[Example], labels: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(f"{e.id}\t{labels[e.label]}\t{e.text}\n".encode())
    return digest.hexdigest()


def ids_sha256(examples: Sequence[Example]) -> str:
    """Hash of the row ids of one split, in the order the split lists them (file order)."""
    return hashlib.sha256("\n".join(e.id for e in examples).encode()).hexdigest()


def stratified_split(
    examples: Sequence[Example], seed: int, fractions: tuple[float, float, float] = SPLIT_FRACTIONS
) -> tuple[list[Example], list[Example], list[Example]]:
    """Per label: shuffle its rows with `seed` and cut them into train/valid/test by `fractions`.

    Every split keeps the label proportions; each split is returned in file order.
    """
    rng = np.random.default_rng(seed)
    assignment = np.zeros(len(examples), dtype=np.int64)  # 0 train, 1 valid, 2 test
    by_label: dict[int, list[int]] = {}
    for i, e in enumerate(examples):
        by_label.setdefault(e.label, []).append(i)
    for label in sorted(by_label):
        rows = np.asarray(by_label[label])[rng.permutation(len(by_label[label]))]
        n_valid = round(len(rows) * fractions[1])
        n_test = round(len(rows) * fractions[2])
        assignment[rows[:n_valid]] = 1
        assignment[rows[n_valid : n_valid + n_test]] = 2
    parts: tuple[list[Example], list[Example], list[Example]] = ([], [], [])
    for e, part in zip(examples, assignment, strict=True):
        parts[part].append(e)
    return parts


def make_data(
    examples: list[Example], labels: list[str], source: str, seed: int, builtin: bool = False
) -> SentimentData:
    train, valid, test = stratified_split(examples, seed)
    parts = {"train": train, "valid": valid, "test": test}
    split = {
        "method": "stratified by label, seeded shuffle, 80/10/10",
        "seed": seed,
        "fractions": list(SPLIT_FRACTIONS),
        "sizes": {name: len(rows) for name, rows in parts.items()},
        "label_counts": {name: dict(Counter(labels[e.label] for e in rows)) for name, rows in parts.items()},
        "ids_sha256": {name: ids_sha256(rows) for name, rows in parts.items()},
    }
    return SentimentData(
        train=train,
        valid=valid,
        test=test,
        labels=labels,
        source=source,
        sha256=rows_sha256(examples, labels),
        split=split,
        builtin=builtin,
    )


# ---- entry points --------------------------------------------------------------------------------------------------
def load_sentiment_data(path: Path | None = None, seed: int = 1234, cache_dir: Path = DEFAULT_CACHE) -> SentimentData:
    """The user's CSV/JSONL file at `path`, or the default Rotten Tomatoes snippets; split with `seed`."""
    if path is None:
        examples = polarity_examples(read_ground_truth(fetch(MOVIE_REVIEWS, cache_dir)))
        source = f"{MOVIE_REVIEWS.source} (label = sign of the mean rating; zeros dropped)"
        return make_data(examples, list(DEFAULT_LABELS), source, seed, builtin=True)
    ids, texts, names = read_labelled_file(path)
    labels = sorted(set(names))
    index = {name: i for i, name in enumerate(labels)}
    examples = [Example(id=i, text=t, label=index[n]) for i, t, n in zip(ids, texts, names, strict=True)]
    return make_data(examples, labels, f"file {path}", seed)


def load_out_of_domain(cache_dir: Path = DEFAULT_CACHE) -> dict[str, list[Example]]:
    """Tweets and Amazon snippets of the same archive, labelled like the default data (zeros dropped)."""
    return {name: polarity_examples(read_ground_truth(fetch(spec, cache_dir))) for name, spec in OUT_OF_DOMAIN.items()}


def load_unlabelled_snippets(cache_dir: Path = DEFAULT_CACHE) -> tuple[list[str], str]:
    """The NYT editorial snippets as plain text (their ratings are ignored): text for LM pre-training."""
    rows = read_ground_truth(fetch(NYT_EDITORIALS, cache_dir))
    return [text for _, _, text in rows], NYT_EDITORIALS.source


def load_auxiliary_labelled(cache_dir: Path = DEFAULT_CACHE) -> tuple[list[Example], str]:
    """The NYT editorial snippets with their polarity (zeros dropped): extra training rows from another domain.

    Ids are prefixed `nyt:` so they never collide with the movie-review ids."""
    rows = read_ground_truth(fetch(NYT_EDITORIALS, cache_dir))
    examples = [Example(id=f"nyt:{e.id}", text=e.text, label=e.label) for e in polarity_examples(rows)]
    return examples, f"{NYT_EDITORIALS.source} (label = sign of the mean rating; zeros dropped)"
