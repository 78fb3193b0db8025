"""Every family's export step publishes an int8 variant beside the float32 graph: quantized ops, listed and verified
files, its quality figure measured on the same test split as the float32 one (the float32 graph's figure from the
same code equals the manifest's own), its parity and speed-up, and the default-precision rule applied."""

import math
from pathlib import Path

import onnx
import pytest

from service.manifest import read_manifest, verify_files
from training.kit.quantize import default_precision


def _fp32_figure(family: str, metrics: dict[str, object]) -> float:
    model = metrics["model"]
    assert isinstance(model, dict)
    if family == "sentiment":
        return float(model["test"]["accuracy"])
    return float(model["test_perplexity"] if family == "wordlm" else model["mase"])


@pytest.mark.parametrize("family", ["wordlm", "sentiment", "forecast"])
def test_the_export_publishes_a_measured_int8_variant(family: str, request: pytest.FixtureRequest) -> None:
    fixture = {"wordlm": "models_dir", "sentiment": "sentiment_models_dir", "forecast": "forecast_models_dir"}[family]
    root: Path = request.getfixturevalue(fixture)
    version_dir = next((root / family).iterdir())
    manifest = read_manifest(version_dir)
    assert verify_files(version_dir, manifest) == []
    variant = manifest.variants["int8"]
    (role,) = variant.graphs
    assert role in manifest.graphs and variant.graphs[role].file == "model.int8.onnx"
    ops = {node.op_type for node in onnx.load(str(version_dir / "model.int8.onnx")).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    # same inputs and outputs as the float32 graph: the engines need no change
    assert variant.graphs[role].inputs == manifest.graphs[role].inputs
    assert variant.graphs[role].outputs == manifest.graphs[role].outputs

    tolerance = variant.tolerance
    fp32 = _fp32_figure(family, manifest.metrics)
    assert tolerance["fp32"] == pytest.approx(fp32, rel=1e-4)  # measured on the same split as the manifest's figure
    assert tolerance["value"] == variant.metrics[tolerance["metric"]] and math.isfinite(tolerance["value"])
    assert variant.within_tolerance == tolerance["within"]
    assert variant.metrics["parity_max_abs_diff_vs_fp32"] > 0
    assert set(variant.speedup) == {"batch_1", "batch_64"} and all(v > 0 for v in variant.speedup.values())
    assert manifest.default_precision == default_precision(variant)
