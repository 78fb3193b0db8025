"""The multi-domain default data: labels by the sign of the rating, ids and domains, a split stratified per domain
(whole documents for Amazon/NYT), and leave-one-domain-out subsets."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from service.manifest import read_manifest
from tests.fixtures_sentiment import TINY_MAX_TOKENS, synthetic_texts
from tests.torch_threads import one_torch_thread
from training.data.sentiment import (
    DEFAULT_LABELS,
    Example,
    document_of,
    load_minimal_pairs,
    make_data,
    polarity_examples,
    stratified_split,
)
from training.sentiment import train as sentiment_train
from training.sentiment.config import PretrainConfig, TrainConfig
from training.sentiment.export import export
from training.sentiment.train import train


def _rows(domain: str, n: int, documents: bool = False) -> list[Example]:
    """n rated rows (ratings -2, -1, 0, 1, 2, ... so every fifth is a zero), ids `<doc>_<sentence>` when documents."""
    rows = []
    for i in range(n):
        rid = f"{i // 5}_{i % 5}" if documents else str(i)
        rows.append((rid, float((i % 5) - 2), f"{domain} text {i}"))
    return polarity_examples(rows, domain)


def _all_domains() -> list[Example]:
    return _rows("movie", 400) + _rows("tweets", 200) + _rows("amazon", 300, documents=True) + _rows("nyt", 250, True)


def test_label_is_the_sign_of_the_rating_zeros_dropped_ids_carry_the_domain() -> None:
    rows = [("1", 2.5, "good"), ("2", -0.1, "bad"), ("3", 0.0, "meh")]
    assert polarity_examples(rows, "tweets") == [
        Example("tweets:1", "good", 1, "tweets"),
        Example("tweets:2", "bad", 0, "tweets"),
    ]
    assert document_of(Example("amazon:12_3", "x", 0, "amazon")) == "amazon:12"


def test_split_is_stratified_by_domain_and_label_and_seeded() -> None:
    examples = _all_domains()
    train, valid, test = stratified_split(examples, seed=5)
    assert sorted(e.id for e in train + valid + test) == sorted(e.id for e in examples)
    assert (train, valid, test) == stratified_split(examples, seed=5)
    assert (train, valid, test) != stratified_split(examples, seed=6)
    totals = Counter((e.domain, e.label) for e in examples)
    for part, fraction in ((valid, 0.1), (test, 0.1)):
        counts = Counter((e.domain, e.label) for e in part)
        for domain in ("movie", "tweets"):  # row-split domains: every label's share, to the row
            for label in (0, 1):
                assert abs(counts[(domain, label)] - fraction * totals[(domain, label)]) <= 1
        for domain in ("amazon", "nyt"):  # document-split domains: their share, to a document (4 rows)
            n = sum(v for (d, _), v in counts.items() if d == domain)
            assert abs(n - fraction * sum(v for (d, _), v in totals.items() if d == domain)) <= 4


def test_documents_never_straddle_splits() -> None:
    train, valid, test = stratified_split(_all_domains(), seed=1)
    where: dict[object, str] = {}
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        for e in part:
            if e.domain in ("amazon", "nyt"):
                assert where.setdefault(document_of(e), name) == name


def test_a_domains_split_does_not_depend_on_the_other_domains() -> None:
    """Movie rows split exactly as the movie-only data did (the same seed gives the v1 test rows)."""
    movie = _rows("movie", 400)
    alone = stratified_split(movie, seed=3)
    mixed = stratified_split(_all_domains(), seed=3)
    for a, b in zip(alone, mixed, strict=True):
        assert a == [e for e in b if e.domain == "movie"]
    plain = [Example(e.id.split(":")[1], e.text, e.label) for e in movie]  # a user's file: no domain
    assert [[e.id for e in p] for p in stratified_split(plain, seed=3)] == [
        [e.id.split(":")[1] for e in p] for p in alone
    ]


def test_manifest_split_records_the_mix_and_leave_one_out_drops_one_domain() -> None:
    data = make_data(_all_domains(), list(DEFAULT_LABELS), "synthetic", seed=2, builtin=True)
    assert data.domains() == ["movie", "tweets", "amazon", "nyt"]
    mix = data.split["domain_label_counts"]
    assert sum(sum(c.values()) for c in mix["test"].values()) == len(data.test)
    assert set(mix["train"]) == {"movie", "tweets", "amazon", "nyt"}
    rest = data.without("tweets")
    assert rest.domains() == ["movie", "amazon", "nyt"]
    assert len(rest.train) == len(data.train) - sum(e.domain == "tweets" for e in data.train)


def test_export_reports_every_domain_calibration_and_minimal_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tiny multi-domain model with the lexicon channel: the float16 export works, and the manifest has each
    domain's test table (accuracy, ECE before/after the folded temperature, <unk> rate), both baselines per domain,
    the minimal pairs and the leave-one-domain-out records."""
    lexicon = {"good": 1.9, "great": 3.1, "bad": -2.5, "dreadful": -3.3}  # (not the archive's: no download)
    monkeypatch.setattr(sentiment_train, "load_valence_lexicon", lambda cache_dir: (lexicon, "test lexicon"))
    labels = list(DEFAULT_LABELS)
    examples = []
    for d, documents in (("movie", False), ("tweets", False), ("amazon", True), ("nyt", True)):
        rows = synthetic_texts(120, seed=len(d))
        examples += [
            Example(f"{d}:{i // 4}_{i % 4}" if documents else f"{d}:{i}", f"{d} {t}", labels.index(lab), d)
            for i, (t, lab) in enumerate(rows)
        ]
    data = make_data(examples, labels, "synthetic", seed=0, builtin=True)
    cfg = TrainConfig(
        seed=3, min_count=1, max_tokens=TINY_MAX_TOKENS, batch_size=16, lr=1e-2, epochs=2, ensemble=1,
        model={"embedding": 8, "hidden": 8}, pretrain=PretrainConfig(epochs=0), lexicon=True,
    )  # fmt: skip
    lodo = [{"held_out": "tweets", "bilstm": {"accuracy": 0.5}}]
    with one_torch_thread():
        train(data, cfg, tmp_path / "s.pt")
        target = export(tmp_path / "s.pt", tmp_path / "models", data, version=1, curve=False, lodo=lodo)
    metrics = read_manifest(target).metrics
    model, baselines = metrics["model"], metrics["baselines"]
    for d in ("movie", "tweets", "amazon", "nyt"):
        assert {"accuracy", "ece", "ece_before_temperature", "unk_rate"} <= model[f"test_{d}"].keys()
        assert "accuracy" in baselines["vader"][f"test_{d}"] and "accuracy" in baselines["tfidf_logreg"][f"test_{d}"]
    assert model["minimal_pairs"]["sentences"] == len(load_minimal_pairs())
    assert model["unk_rate_movie_only_vocabulary"]["tweets"] >= model["test_tweets"]["unk_rate"]
    assert model["leave_one_domain_out"] == lodo
    assert "dreadful" in json.loads((target / "vocab.json").read_text())["itos"]
    assert read_manifest(target).config["temperature"] == (
        model["calibration"]["temperature"] if model["calibration"]["used"] else 1.0
    )
