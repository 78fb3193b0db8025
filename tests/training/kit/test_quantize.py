"""int8 variants: the quantized graph really is int8 and close to float32, float16-stored weights are quantized too,
the tolerance rule, the default-precision rule, and amending a published version without touching its files."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from service.manifest import DataSpec, Variant, read_manifest, verify_files
from tests.training.kit.tagger import Tagger
from training.kit.export import (
    export_onnx,
    graph_spec,
    ort_session,
    publish_version,
    round_weights_to_fp16,
    store_weights_as_fp16,
)
from training.kit.quantize import (
    Tolerance,
    add_variant,
    default_precision,
    int8_variant,
    quantize_int8,
    unfold_fp16_storage,
)


def _cases() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((b, t, 8)).astype(np.float32)} for b, t in ((1, 1), (4, 9), (16, 30))]


def _export(path: Path, fp16: bool = False) -> Path:
    torch.manual_seed(3)
    module = Tagger().eval()
    if fp16:
        round_weights_to_fp16(module)
    export_onnx(module, (torch.from_numpy(_cases()[1]["x"]),), path, ["x"], ["y"], {"x": {0: "batch", 1: "seq"}})
    if fp16:
        store_weights_as_fp16(path)
    return path


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("fp16", [False, True], ids=["float32-stored", "float16-stored"])
def test_the_int8_graph_quantizes_the_lstm_and_the_head_and_stays_close(tmp_path: Path, fp16: bool) -> None:
    src = _export(tmp_path / "m.onnx", fp16)
    dst = tmp_path / "m.int8.onnx"
    quantize_int8(src, dst)
    assert {"DynamicQuantizeLSTM"} <= _ops(dst) and "LSTM" not in _ops(dst)
    assert _ops(dst) & {"DynamicQuantizeMatMul", "MatMulInteger"}, _ops(dst)
    a, b = ort_session(src), ort_session(dst)
    for case in _cases():
        y32, y8 = a.run(None, case)[0], b.run(None, case)[0]
        assert y8.shape == y32.shape
        diff = np.abs(y8 - y32).max()
        assert 0 < diff < 0.2 * np.abs(y32).max()  # rounded (not the float32 graph), but close
        if y32.size > 3:
            assert np.corrcoef(y8.ravel(), y32.ravel())[0, 1] > 0.98


def test_quantizing_only_the_lstm_leaves_the_head_in_float32(tmp_path: Path) -> None:
    src = _export(tmp_path / "m.onnx")
    quantize_int8(src, tmp_path / "lstm.int8.onnx", ops=("LSTM",))
    ops = _ops(tmp_path / "lstm.int8.onnx")
    assert "DynamicQuantizeLSTM" in ops and not ops & {"DynamicQuantizeMatMul", "MatMulInteger"}


def test_unfolding_float16_storage_gives_the_same_outputs(tmp_path: Path) -> None:
    src = _export(tmp_path / "m.onnx", fp16=True)
    model = onnx.load(str(src))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    unfolded = unfold_fp16_storage(model)
    assert not any(i.data_type == onnx.TensorProto.FLOAT16 for i in unfolded.graph.initializer)
    onnx.save(unfolded, str(tmp_path / "u.onnx"))
    for case in _cases():
        np.testing.assert_array_equal(
            ort_session(src).run(None, case)[0], ort_session(tmp_path / "u.onnx").run(None, case)[0]
        )


def test_tolerances_in_both_directions() -> None:
    perplexity = Tolerance("test_perplexity", 0.02, "relative")  # lower is better
    assert perplexity.check(50.0, 50.99)["within"] and not perplexity.check(50.0, 51.01)["within"]
    assert perplexity.check(50.0, 40.0)["within"]
    accuracy = Tolerance("test_accuracy", 0.005, "absolute")  # higher is better
    assert accuracy.check(0.80, 0.7951)["within"] and not accuracy.check(0.80, 0.7949)["within"]
    assert accuracy.check(0.80, 0.9)["within"]
    assert perplexity.check(50.0, 51.0)["change"] == pytest.approx(0.02)


def _published(tmp_path: Path) -> Path:
    with publish_version(tmp_path, "tagger") as staged:
        onnx_path = _export(staged.path / "model.onnx")
        staged.describe(name="tagger-test", graphs={"step": graph_spec(onnx_path)},
                        data=DataSpec(source="test", sha256="0" * 64))  # fmt: skip
    return staged.target


def _variant(version_dir: Path, quality: dict[str, float]) -> Variant:
    cases = _cases()
    return int8_variant(version_dir, {"step": "model.onnx"}, lambda path: dict(quality), {"score": 1.0},
                        Tolerance("score", 0.02, "relative"), cases, {1: cases[0], 16: cases[2]})  # fmt: skip


def test_a_variant_is_added_to_a_published_version_with_its_figures(tmp_path: Path) -> None:
    version_dir = _published(tmp_path)
    before = read_manifest(version_dir)
    variant = _variant(version_dir, {"score": 1.01})
    manifest = add_variant(version_dir, "int8", variant)
    again = read_manifest(version_dir)
    assert again == manifest and verify_files(version_dir, again) == []
    assert again.files["model.onnx"] == before.files["model.onnx"]  # the float32 graph is untouched
    assert again.graph_files("int8") == {"step": "model.int8.onnx"} and again.graph_files("fp32") == {
        "step": "model.onnx"
    }
    int8 = again.variants["int8"]
    assert int8.within_tolerance and int8.tolerance["value"] == 1.01
    assert int8.metrics["parity_max_abs_diff_vs_fp32"] > 0 and set(int8.speedup) == {"batch_1", "batch_16"}
    assert again.default_precision == default_precision(int8)


def test_the_default_is_int8_only_when_within_tolerance_and_faster(tmp_path: Path) -> None:
    version_dir = _published(tmp_path)
    within, outside = _variant(version_dir, {"score": 1.0}), _variant(version_dir, {"score": 1.5})
    assert not outside.within_tolerance
    fast = within.model_copy(update={"speedup": {"batch_1": 2.0, "batch_64": 1.3}})
    slow = within.model_copy(update={"speedup": {"batch_1": 2.0, "batch_64": 0.9}})
    assert default_precision(fast) == "int8"
    assert default_precision(slow) == "fp32"  # slower at one batch size measured
    assert default_precision(outside.model_copy(update={"speedup": fast.speedup})) == "fp32"


def test_a_damaged_version_is_not_amended(tmp_path: Path) -> None:
    version_dir = _published(tmp_path)
    variant = _variant(version_dir, {"score": 1.0})
    with (version_dir / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="changed since export"):
        add_variant(version_dir, "int8", variant)
