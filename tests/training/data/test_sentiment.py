"""Sentiment data: the built-in ground truth, users' CSV and JSONL files, and the stratified split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data.sentiment import (
    DataFormatError,
    Example,
    load_sentiment_data,
    polarity_examples,
    read_ground_truth,
    stratified_split,
)


def test_ground_truth_rows_and_polarity(tmp_path: Path) -> None:
    path = tmp_path / "movieReviewSnippets_GroundTruth.txt"
    path.write_bytes(b"1\t2.5\tA fine film.\r\n2\t-1.25\tDull.\r\n3\t0.0\tMeh.\r\n4\t0.1\tOkay\tish\r\n")
    with pytest.raises(DataFormatError, match="line 4"):
        read_ground_truth(path)
    path.write_bytes(b"1\t2.5\tA fine film.\r\n2\t-1.25\tDull.\r\n3\t0.0\tMeh.\r\n")
    rows = read_ground_truth(path)
    assert rows == [("1", 2.5, "A fine film."), ("2", -1.25, "Dull."), ("3", 0.0, "Meh.")]
    assert polarity_examples(rows) == [Example("1", "A fine film.", 1), Example("2", "Dull.", 0)]  # zero dropped


def _user_rows(n: int = 60) -> list[tuple[str, str]]:
    labels = ["joy", "anger", "fear"]
    return [(f"text number {i} , {labels[i % 3]} here", labels[i % 3]) for i in range(n)]


def test_user_csv_and_jsonl_give_the_same_data(tmp_path: Path) -> None:
    rows = _user_rows()
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text("Text,label,extra\n" + "".join(f'"{t}",{lab},x\n' for t, lab in rows), encoding="utf-8")
    jsonl_path = tmp_path / "mine.jsonl"
    jsonl_path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows), encoding="utf-8")
    from_csv = load_sentiment_data(csv_path, seed=3)
    from_jsonl = load_sentiment_data(jsonl_path, seed=3)
    assert from_csv.labels == from_jsonl.labels == ["anger", "fear", "joy"]  # any number of labels, sorted
    assert from_csv.sizes() == {"train": 48, "valid": 6, "test": 6}
    # Same texts and labels in both formats; ids are line numbers (CSV has a header line, so they differ).
    assert [(e.text, e.label) for e in from_csv.test] == [(e.text, e.label) for e in from_jsonl.test]
    for split in (from_csv.train, from_csv.valid, from_csv.test):  # stratified: every label in every split
        assert {e.label for e in split} == {0, 1, 2}
    assert from_csv.split["sizes"] == from_csv.sizes() and set(from_csv.split["ids_sha256"]) == {
        "train",
        "valid",
        "test",
    }


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("a.csv", "words,label\nhi,1\n", "lacks column"),
        ("a.csv", "text,label\nhi,1\nho,1\n", "at least 2 distinct labels"),
        ("a.jsonl", '{"text": "hi", "label": "a"}\n{"text": "  ", "label": "b"}\n', "line 2: empty"),
        ("a.jsonl", '{"text": "hi", "label": "a"}\nnot json\n', "line 2: not JSON"),
        ("a.jsonl", '{"text": "hi", "label": true}\n', "label must be"),
        ("a.txt", "hi\n", ".csv or .jsonl"),
    ],
)
def test_user_file_errors_say_where(tmp_path: Path, name: str, content: str, error: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError, match=error):
        load_sentiment_data(path)


def test_split_is_seeded_stratified_and_disjoint() -> None:
    examples = [Example(str(i), f"t{i}", int(i % 4 == 0)) for i in range(1000)]
    a = stratified_split(examples, seed=1)
    b = stratified_split(examples, seed=1)
    c = stratified_split(examples, seed=2)
    assert a == b and a != c
    ids = [{e.id for e in part} for part in a]
    assert sum(map(len, ids)) == 1000 and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert [len(p) for p in a] == [800, 100, 100]
    assert [sum(e.label for e in p) for p in a] == [200, 25, 25]  # label ratio kept in each split
