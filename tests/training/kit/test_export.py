"""Publishing a version (all or nothing), the read-back graph contract, float16 weight storage."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from service.manifest import DataSpec, read_manifest, verify_files
from tests.training.kit.tagger import Tagger
from training.kit.export import (
    ParityError,
    check_parity,
    export_onnx,
    graph_spec,
    ort_session,
    publish_version,
    round_weights_to_fp16,
    store_weights_as_fp16,
)


def _export(module: nn.Module, path: Path) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    cases = [{"x": rng.standard_normal((b, t, 8)).astype(np.float32)} for b, t in ((1, 1), (4, 9))]
    export_onnx(module, (torch.from_numpy(cases[1]["x"]),), path, ["x"], ["y"], {"x": {0: "batch", 1: "seq"}})
    return cases


def _describe_fields() -> dict[str, object]:
    return {"name": "tagger-test", "graphs": {}, "data": DataSpec(source="test", sha256="0" * 64)}


def test_a_published_version_lists_and_verifies_its_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Tagger().eval()
    with publish_version(tmp_path, "tagger") as staged:
        path = staged.path / "model.onnx"
        cases = _export(module, path)
        assert check_parity(module, path, cases, 1e-5) <= 1e-5
        staged.describe(**{**_describe_fields(), "graphs": {"tag": graph_spec(path)}})
        assert not staged.target.exists()  # appears only when the block ends
    assert staged.target == tmp_path / "tagger" / "1"
    manifest = read_manifest(staged.target)
    assert set(manifest.files) == {"model.onnx"} and verify_files(staged.target, manifest) == []
    spec = manifest.graphs["tag"]
    assert [t.dims for t in spec.inputs] == [["batch", "seq", 8]] and spec.opset == 17
    with publish_version(tmp_path, "tagger") as staged:  # the next free number
        staged.describe(**_describe_fields())
    assert staged.target.name == "2"


def test_nothing_is_published_when_the_block_raises(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Tagger().eval()
    with pytest.raises(ParityError), publish_version(tmp_path, "tagger") as staged:
        path = staged.path / "model.onnx"
        cases = _export(module, path)
        staged.describe(**_describe_fields())
        check_parity(module, path, cases, atol=-1.0)  # no difference can pass
    assert list((tmp_path / "tagger").iterdir()) == []


def test_nothing_is_published_without_a_description(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="never described"), publish_version(tmp_path, "tagger") as staged:
        (staged.path / "model.onnx").write_bytes(b"")
    assert list((tmp_path / "tagger").iterdir()) == []


def test_a_version_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "tagger" / "3").mkdir(parents=True)
    with pytest.raises(FileExistsError), publish_version(tmp_path, "tagger", version=3):
        pass


def test_float16_storage_is_exact_for_rounded_weights(tmp_path: Path) -> None:
    torch.manual_seed(2)
    module = Tagger().eval()
    round_weights_to_fp16(module)
    path = tmp_path / "m.onnx"
    cases = _export(module, path)
    before = [ort_session(path).run(None, c)[0] for c in cases]
    size = path.stat().st_size
    store_weights_as_fp16(path)
    after = [ort_session(path).run(None, c)[0] for c in cases]
    assert path.stat().st_size < 0.6 * size
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
