"""Sentiment data: every labelled domain of the pinned vaderSentiment archive, or a user's CSV/JSONL file.

Default data (shared DATA.md): `vaderSentiment==3.3.2` sdist -> `additional_resources/hutto_ICWSM_2014.tar.gz` ->
four `*_GroundTruth.txt` files, rows `id <TAB> mean human rating (-4..4) <TAB> text` with CRLF line ends: Rotten
Tomatoes movie snippets (10,605), tweets (4,200), Amazon review snippets (3,708) and NYT editorial snippets (5,190).
Label = sign of the rating (negative/positive); rows rated exactly 0 are dropped. Each row keeps its domain, and ids
are prefixed with it (`amazon:1_3`).

The split is seeded and done per domain, 80/10/10. Movie snippets and tweets are independent rows: each label's rows
are shuffled with the seed and cut (stratified). Amazon and NYT ids are `<document>_<sentence>`, sentences of one
review or editorial: whole documents are shuffled and cut, so neighbouring sentences never straddle splits (their
label balance is then only approximately equal across splits). The same seed gives the same rows in each split; the
manifest records each split's row-id hash and its label counts per domain.
"""

from __future__ import annotations

import csv
import hashlib
import json
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
DOMAINS = {"movie": MOVIE_REVIEWS, "tweets": TWEETS, "amazon": AMAZON, "nyt": NYT_EDITORIALS}
DOCUMENT_DOMAINS = frozenset({"amazon", "nyt"})  # ids `<document>_<sentence>`: split by document

# The VADER lexicon (word <TAB> mean valence -4..4 <TAB> sd <TAB> ratings) from the same pinned sdist.
VADER_LEXICON = ArchiveFile(
    requirement=_VADER_SDIST[0],
    no_binary=":all:",
    archive_name=_VADER_SDIST[1],
    archive_sha256=_VADER_SDIST[2],
    member="vaderSentiment-3.3.2/vaderSentiment/vader_lexicon.txt",
    member_sha256="1ec9c6e9ee19aade328f8beb393a6afa71a5bb3acf7d3cc22d4ef568df374bf5",
)
MINIMAL_PAIRS = Path(__file__).with_name("sentiment_minimal_pairs.jsonl")


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: int  # index into the data set's label names
    domain: str = ""  # the default data's domain (movie, tweets, amazon, nyt); "" for a user's file


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
    builtin: bool = False  # the default archive data (VADER and the per-domain tables apply)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def domains(self) -> list[str]:
        """The domains present, in DOMAINS order (then any others, sorted); [""] for a user's file."""
        present = {e.domain for e in self.train + self.valid + self.test}
        return [d for d in DOMAINS if d in present] + sorted(present - DOMAINS.keys())

    def without(self, domain: str) -> SentimentData:
        """The same splits with one domain's rows left out (leave-one-domain-out training)."""

        def keep(rows: list[Example]) -> list[Example]:
            return [e for e in rows if e.domain != domain]

        return replace(
            self,
            train=keep(self.train),
            valid=keep(self.valid),
            test=keep(self.test),
            source=f"{self.source} without {domain}",
        )


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


def polarity_examples(rows: Sequence[tuple[str, float, str]], domain: str = "") -> list[Example]:
    """Label = sign of the mean rating (0 negative, 1 positive); rows rated exactly 0 are dropped.

    With a domain, each example carries it and its id is prefixed `<domain>:`."""
    prefix = f"{domain}:" if domain else ""
    return [Example(id=prefix + i, text=t, label=int(r > 0), domain=domain) for i, r, t in rows if r != 0]


def read_valence_lexicon(path: Path) -> dict[str, float]:
    """VADER lexicon entries that are one token of the service's tokenizer -> mean valence (-4..4).

    Emoticons and other entries that the tokenizer splits (":)", "<3") are left out: no single id carries them."""
    from service.tokenizer import tokenize  # the tokenizer is the contract; imported here to keep this module light

    lexicon = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        tokens = tokenize(parts[0], add_eos=False)
        if len(tokens) == 1 and tokens[0] == parts[0].lower():
            lexicon[tokens[0]] = float(parts[1])
    return lexicon


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


def document_of(example: Example) -> str:
    """`amazon:12_3` -> `amazon:12`: the review or editorial a sentence comes from."""
    return example.id.rsplit("_", 1)[0]


def domain_rng(seed: int, domain: str) -> np.random.Generator:
    """Each domain's own shuffle, so a domain's split never depends on which other domains are loaded. The movie
    snippets (and a user's file) use the plain seed: their split is the one the movie-only models had."""
    if domain in ("", "movie"):
        return np.random.default_rng(seed)
    return np.random.default_rng([seed, zlib.crc32(domain.encode())])


def stratified_split(
    examples: Sequence[Example], seed: int, fractions: tuple[float, float, float] = SPLIT_FRACTIONS
) -> tuple[list[Example], list[Example], list[Example]]:
    """Per domain and label: shuffle its rows with `seed` and cut them into train/valid/test by `fractions`.

    Domains in DOCUMENT_DOMAINS are cut by whole documents instead (one stratum per domain). Every split keeps the
    domain mix and (for row-split domains) the label proportions; each split is returned in file order. A user's
    file (domain "") is split per label exactly as before domains existed.
    """
    assignment = np.zeros(len(examples), dtype=np.int64)  # 0 train, 1 valid, 2 test
    # stratum (domain, label; label -1 = by document) -> units (lists of row indices), in file order
    strata: dict[tuple[str, int], dict[str, list[int]]] = {}
    for i, e in enumerate(examples):
        if e.domain in DOCUMENT_DOMAINS:
            strata.setdefault((e.domain, -1), {}).setdefault(document_of(e), []).append(i)
        else:
            strata.setdefault((e.domain, e.label), {})[str(i)] = [i]
    rngs: dict[str, np.random.Generator] = {}
    for key in sorted(strata, key=lambda k: (k[0] not in ("", "movie"), k)):
        rng = rngs.setdefault(key[0], domain_rng(seed, key[0]))
        units = list(strata[key].values())
        order = rng.permutation(len(units))
        n_valid = round(len(units) * fractions[1])
        n_test = round(len(units) * fractions[2])
        for rank, u in enumerate(order):
            assignment[units[u]] = 1 if rank < n_valid else 2 if rank < n_valid + n_test else 0
    parts: tuple[list[Example], list[Example], list[Example]] = ([], [], [])
    for e, part in zip(examples, assignment, strict=True):
        parts[part].append(e)
    return parts


def make_data(
    examples: list[Example], labels: list[str], source: str, seed: int, builtin: bool = False
) -> SentimentData:
    train, valid, test = stratified_split(examples, seed)
    parts = {"train": train, "valid": valid, "test": test}
    split: dict[str, Any] = {
        "method": "per domain: stratified by label (movie, tweets) or by whole documents (amazon, nyt), seeded "
        "shuffle, 80/10/10",
        "seed": seed,
        "fractions": list(SPLIT_FRACTIONS),
        "sizes": {name: len(rows) for name, rows in parts.items()},
        "label_counts": {name: dict(Counter(labels[e.label] for e in rows)) for name, rows in parts.items()},
        "ids_sha256": {name: ids_sha256(rows) for name, rows in parts.items()},
    }
    if any(e.domain for e in examples):
        split["domain_label_counts"] = {
            name: {d: dict(Counter(labels[e.label] for e in rows if e.domain == d)) for d in _domains_of(rows)}
            for name, rows in parts.items()
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


def _domains_of(rows: Sequence[Example]) -> list[str]:
    return list(dict.fromkeys(e.domain for e in rows))


# ---- entry points --------------------------------------------------------------------------------------------------
def load_sentiment_data(
    path: Path | None = None,
    seed: int = 1234,
    cache_dir: Path = DEFAULT_CACHE,
    domains: Sequence[str] = tuple(DOMAINS),
) -> SentimentData:
    """The user's CSV/JSONL file at `path`, or the default archive's labelled domains; split with `seed`."""
    if path is None:
        examples = [e for d in domains for e in polarity_examples(read_ground_truth(fetch(DOMAINS[d], cache_dir)), d)]
        counts = Counter(e.domain for e in examples)
        source = (
            "; ".join(f"{d} {counts[d]} rows: {DOMAINS[d].source}" for d in domains)
            + " (label = sign of the mean rating; zeros dropped)"
        )
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


def load_valence_lexicon(cache_dir: Path = DEFAULT_CACHE) -> tuple[dict[str, float], str]:
    """The VADER lexicon's one-token words -> mean valence (-4..4), and its source."""
    return read_valence_lexicon(fetch(VADER_LEXICON, cache_dir)), VADER_LEXICON.source


def load_minimal_pairs(path: Path = MINIMAL_PAIRS) -> list[dict[str, Any]]:
    """The hand-written minimal pairs: `{"pair", "category", "text", "label"}` per line, two lines per pair."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_auxiliary_labelled(cache_dir: Path = DEFAULT_CACHE) -> tuple[list[Example], str]:
    """The NYT editorial snippets with their polarity (zeros dropped): extra training rows from another domain.

    Ids are prefixed `nyt:` so they never collide with the movie-review ids."""
    rows = read_ground_truth(fetch(NYT_EDITORIALS, cache_dir))
    examples = [Example(id=f"nyt:{e.id}", text=e.text, label=e.label) for e in polarity_examples(rows)]
    return examples, f"{NYT_EDITORIALS.source} (label = sign of the mean rating; zeros dropped)"
