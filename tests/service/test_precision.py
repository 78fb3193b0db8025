"""CELLSTATE_PRECISION: fp32, int8 or auto per family; unknown values and families refused at start-up; a version
without the variant asked for is not served (and says why); GET /models says which precision is served."""

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.config import Settings
from service.manifest import MANIFEST_NAME
from service.registry import load_model
from training.kit.export import ort_session


def _edit_manifest(version_dir: Path, **changes: object) -> None:
    manifest = json.loads((version_dir / MANIFEST_NAME).read_text())
    manifest.update(changes)
    (version_dir / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_one_precision_for_all_with_per_family_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(precision="auto").precision_for("wordlm") == "auto"
    mixed = Settings(precision="fp32, forecast=int8")
    assert [mixed.precision_for(f) for f in ("wordlm", "sentiment", "forecast")] == ["fp32", "fp32", "int8"]
    monkeypatch.setenv("CELLSTATE_PRECISION", "int8,sentiment=fp32")
    from_env = Settings()
    assert (from_env.precision_for("wordlm"), from_env.precision_for("sentiment")) == ("int8", "fp32")


@pytest.mark.parametrize(
    ("value", "message"),
    [("int9", "unknown precision 'int9': use one of auto, fp32, int8"),
     ("fp32,forecast=int4", "unknown precision 'int4' for forecast"),
     ("=int8", "names no family")],
)  # fmt: skip
def test_unknown_precisions_are_refused(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(precision=value)


def test_an_unknown_family_is_refused_at_start_up(models_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown model families \['wordml'\]"):
        create_app(Settings(models_dir=models_dir, precision="wordml=int8"))


def test_the_int8_variant_is_served_when_asked_and_said_so(models_dir: Path) -> None:
    version_dir = models_dir / "wordlm" / "1"
    int8 = load_model(version_dir, Settings(models_dir=models_dir, precision="int8"))
    fp32 = load_model(version_dir, Settings(models_dir=models_dir, precision="fp32"))
    assert (int8.precision, fp32.precision) == ("int8", "fp32")
    rng = np.random.default_rng(0)
    feeds = {"tokens": rng.integers(0, 10, size=(2, 5), dtype=np.int64),
             "h0": np.zeros((2, 2, 24), np.float32), "c0": np.zeros((2, 2, 24), np.float32)}  # fmt: skip
    served = int8.sessions["step"].run(None, feeds)[0]
    np.testing.assert_array_equal(served, ort_session(version_dir / "model.int8.onnx").run(None, feeds)[0])
    assert not np.array_equal(served, fp32.sessions["step"].run(None, feeds)[0])
    # the activations graph for /inspect has no int8 variant: it stays the float32 one
    assert set(int8.sessions) == {"step", "activations"}

    with TestClient(create_app(Settings(models_dir=models_dir, precision="wordlm=int8"))) as c:
        (info,) = c.get("/models").json()
        assert info["precision"] == "int8" and set(info["variants"]) == {"int8"}
        assert info["variants"]["int8"]["metrics"]["test_perplexity"] > 1
        assert "within" in info["variants"]["int8"]["tolerance"]
        (version,) = c.get("/models/wordlm").json()["versions"]
        assert version["precisions"] == ["fp32", "int8"] and version["precision"] == "int8"
        generated = c.post("/generate", json={"prompt": "the cat", "max_new_tokens": 5, "temperature": 0})
        assert generated.status_code == 200 and generated.json()["usage"]["completion_tokens"] >= 1


def test_auto_serves_the_manifest_default(copied_models_dir: Path) -> None:
    version_dir = copied_models_dir / "wordlm" / "1"
    for default in ("int8", "fp32"):
        _edit_manifest(version_dir, default_precision=default)
        assert load_model(version_dir, Settings(precision="auto")).precision == default


def test_a_version_without_the_variant_asked_for_is_not_served(copied_models_dir: Path) -> None:
    version_dir = copied_models_dir / "wordlm" / "1"
    _edit_manifest(version_dir, variants={}, default_precision="fp32")
    with TestClient(create_app(Settings(models_dir=copied_models_dir, precision="int8"))) as c:
        ready = c.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["failures"] == {"wordlm/1": "wordlm/1 has no int8 variant (it has: fp32)"}
    with TestClient(create_app(Settings(models_dir=copied_models_dir, precision="auto"))) as c:
        assert c.get("/ready").status_code == 200 and c.get("/models").json()[0]["precision"] == "fp32"


def test_a_variant_whose_file_is_not_listed_is_a_broken_version(copied_models_dir: Path) -> None:
    version_dir = copied_models_dir / "wordlm" / "1"
    manifest = json.loads((version_dir / MANIFEST_NAME).read_text())
    del manifest["files"]["model.int8.onnx"]
    (version_dir / MANIFEST_NAME).write_text(json.dumps(manifest))
    with TestClient(create_app(Settings(models_dir=copied_models_dir, precision="fp32"))) as c:
        failure = c.get("/ready").json()["failures"]["wordlm/1"]
        assert "int8 graph step: model.int8.onnx is not listed in files" in failure
