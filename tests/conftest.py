"""Shared fixtures: a tiny word LM trained and exported once per session, and apps built on it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.model_cache import cached_models

# The tiny models carry int8 variants, and `auto` could pick one on a given machine: the suite serves float32 unless a
# test asks for another precision (tests/service/test_precision.py), so what every other test checks is fixed.
os.environ.setdefault("CELLSTATE_PRECISION", "fp32")

SENTENCES = [
    "the cat sat on the mat.",
    "the dog sat on the log.",
    "alice said, 'oh dear! i shall be late!'",
    "a white rabbit ran by the river bank.",
    "she was not a bit hurt, and she jumped up.",
    '"what is the use of a book," thought alice.',
    "the queen said to the king that the cat was late.",
]


def write_tiny_corpus(path: Path, repeats: int = 60) -> Path:
    lines = [SENTENCES[(i * 3) % len(SENTENCES)] for i in range(repeats * len(SENTENCES))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus") / "tiny.txt")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> Path:
    """models/wordlm/1 holding a tiny word LM trained for a few seconds on the tiny corpus."""
    from tests.torch_threads import one_torch_thread
    from training.data.text import load_corpus
    from training.wordlm.config import TrainConfig
    from training.wordlm.export import export
    from training.wordlm.train import train

    def build(root: Path) -> None:  # the checkpoint stays beside the models: some tests read it
        corpus = load_corpus(tiny_corpus, eos="line")  # one sentence a line: <eos> after each, as before paragraphs
        cfg = TrainConfig(
            epochs=3,
            batch_size=4,
            bptt=12,
            min_count=1,
            kn_order=3,
            members=1,
            model={"embedding": 24, "hidden": 24, "layers": 2},
        )
        checkpoint = root.parent / "wordlm.pt"
        with one_torch_thread():
            train(corpus, cfg, checkpoint)
            export(checkpoint, root, corpus, curve=False)

    return cached_models("wordlm", build)


@pytest.fixture
def copied_models_dir(models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the models directory that a test may modify."""
    target = tmp_path / "models"
    shutil.copytree(models_dir, target)
    return target


@pytest.fixture(scope="session")
def client(models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=models_dir, intra_op_threads=1))) as c:
        yield c


@pytest.fixture(scope="session")
def sentiment_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/sentiment/1 holding a tiny BiLSTM ensemble trained for seconds on a synthetic separable set."""
    from tests.fixtures_sentiment import build_tiny_sentiment_model

    return cached_models("sentiment", build_tiny_sentiment_model)


@pytest.fixture(scope="session")
def forecast_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/forecast/1 holding a tiny LSTM forecaster trained for seconds on synthetic seasonal series."""
    from tests.fixtures_forecast import build_tiny_forecast_model

    return cached_models("forecast", build_tiny_forecast_model)
