"""int8 variants: the export step's float32 graph quantized with onnxruntime, measured, and described in the manifest.

Dynamic quantization (weights stored as int8 per tensor; activations quantized per call from their own range) of the
LSTM and MatMul/Gemm ops: `LSTM` becomes `DynamicQuantizeLSTM`, `MatMul` becomes `DynamicQuantizeMatMul`.
onnxruntime quantizes the LSTM op only dynamically, and the LSTMs are where the time goes, so static (calibrated)
quantization, which would reach only the small MatMul heads, was not tried. Embedding lookups (`Gather`) stay
float32: they cost no arithmetic.

Every family decides with the same rule: the variant is listed with its quality on the same test split as float32,
its parity against float32, and its speed-up per call; it becomes the version's default (`CELLSTATE_PRECISION=auto`)
when it is within the family's tolerance and faster.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from service.manifest import Manifest, Variant, file_entry, read_manifest, write_manifest

from .export import graph_spec, ort_session

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("LSTM", "MatMul", "Gemm")
SPEEDUP_MIN = 1.05  # int8 becomes the default only when its calls are at least this much faster


@dataclass(frozen=True)
class Tolerance:
    """How far the int8 figure may move from the float32 one: `relative` (a ratio, for perplexity and MASE, where
    lower is better) or `absolute` (points, for accuracy, where higher is better)."""

    metric: str
    limit: float
    kind: str  # "relative" | "absolute"

    def check(self, fp32: float, value: float) -> dict[str, Any]:
        if self.kind == "relative":  # lower is better: value may exceed fp32 by `limit` of it
            change = value / fp32 - 1.0
            within = change <= self.limit
            limit = f"at most {self.limit:.0%} above float32"
        else:  # higher is better: value may fall `limit` below fp32
            change = value - fp32
            within = change >= -self.limit
            limit = f"at most {self.limit:g} below float32"
        return {"metric": self.metric, "limit": limit, "fp32": fp32, "value": value, "change": change,
                "within": bool(within)}  # fmt: skip


def unfold_fp16_storage(model: onnx.ModelProto) -> onnx.ModelProto:
    """Undo `store_weights_as_fp16`: every float16 initializer read through a Cast to float32 becomes the float32
    initializer again, so the quantizer sees constant weights (it skips anything computed)."""
    graph = model.graph
    halves = {i.name: i for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    keep, restored = [], []
    for node in graph.node:
        if node.op_type == "Cast" and len(node.input) == 1 and node.input[0] in halves:
            weights = numpy_helper.to_array(halves[node.input[0]]).astype(np.float32)
            restored.append(numpy_helper.from_array(weights, node.output[0]))
        else:
            keep.append(node)
    if not restored:
        return model
    used = {name for node in keep for name in node.input}
    initializers = [i for i in graph.initializer if i.name not in halves or i.name in used]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(initializers + restored)
    return model


def method(ops: Sequence[str]) -> str:
    return f"onnxruntime dynamic quantization (int8 weights per tensor, activations per call) of {', '.join(ops)}"


def quantize_int8(src: Path, dst: Path, ops: Sequence[str] = QUANTIZED_OPS) -> None:
    """Write the dynamic-int8 version of the float32 graph `src` to `dst`, quantizing the ops of these types."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "float32.onnx"
        onnx.save(unfold_fp16_storage(onnx.load(str(src))), str(plain))
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs a generic "consider pre-processing" warning per call
        try:
            quantize_dynamic(plain, dst, weight_type=QuantType.QInt8, op_types_to_quantize=list(ops))
        finally:
            root.setLevel(level)
    onnx.checker.check_model(str(dst))


def max_abs_diff(fp32: Path, int8: Path, cases: Iterable[Mapping[str, np.ndarray]]) -> float:
    """Largest |int8 - fp32| over every output of every case (the parity figure of a variant)."""
    a, b = ort_session(fp32), ort_session(int8)
    worst = 0.0
    for feeds in cases:
        for x, y in zip(a.run(None, dict(feeds)), b.run(None, dict(feeds)), strict=True):
            if x.size:
                worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y))))
    return worst


def call_speedup(fp32: Path, int8: Path, feeds_by_batch: Mapping[int, Mapping[str, np.ndarray]],
                 calls: int = 40, rounds: int = 5) -> dict[str, float]:  # fmt: skip
    """float32 call time / int8 call time at each batch size: the median of `rounds` interleaved rounds of `calls`
    calls each, on this machine (a fixed number of calls, so a tiny test model costs next to nothing)."""
    sessions = {"fp32": ort_session(fp32), "int8": ort_session(int8)}
    out = {}
    for batch, feeds in feeds_by_batch.items():
        times: dict[str, list[float]] = {"fp32": [], "int8": []}
        for _ in range(rounds):
            for name, session in sessions.items():
                session.run(None, dict(feeds))  # warm
                start = time.perf_counter()
                for _ in range(calls):
                    session.run(None, dict(feeds))
                times[name].append(time.perf_counter() - start)
        out[f"batch_{batch}"] = round(statistics.median(times["fp32"]) / statistics.median(times["int8"]), 3)
    return out


def zero_state(layers: int, batch: int, hidden: int) -> dict[str, np.ndarray]:
    """The step graphs' `h0`/`c0` feeds for a fresh state (speed cases)."""
    return {"h0": np.zeros((layers, batch, hidden), np.float32), "c0": np.zeros((layers, batch, hidden), np.float32)}


def int8_variant(
    version_dir: Path,
    roles: Mapping[str, str],
    quality: Callable[[Path], dict[str, Any]],
    fp32_quality: dict[str, Any],
    tolerance: Tolerance,
    parity_cases: Iterable[Mapping[str, np.ndarray]],
    speed_feeds: Mapping[int, Mapping[str, np.ndarray]],
    ops: Sequence[str] = QUANTIZED_OPS,
) -> Variant:
    """Quantize the float32 graph of each role ({role: float32 file}) into `<stem>.int8.onnx` beside it, and measure
    it: `quality(int8 file)` gives the same figures `fp32_quality` has (the tolerance metric among them), on the same
    split; parity and speed are measured on the first role's graph."""
    graphs = {}
    first: tuple[Path, Path] | None = None
    for role, file in roles.items():
        src = version_dir / file
        dst = version_dir / f"{src.stem}.int8.onnx"
        quantize_int8(src, dst, ops)
        graphs[role] = graph_spec(dst)
        first = first or (src, dst)
    assert first is not None, "no graph to quantize"
    metrics = quality(first[1])
    metrics["parity_max_abs_diff_vs_fp32"] = max_abs_diff(*first, parity_cases)
    checked = tolerance.check(float(fp32_quality[tolerance.metric]), float(metrics[tolerance.metric]))
    speedup = call_speedup(*first, speed_feeds)
    log.info("int8: %s %.4g (fp32 %.4g, %s), speed-up %s", tolerance.metric, checked["value"], checked["fp32"],
             "within tolerance" if checked["within"] else "OUTSIDE tolerance", speedup)  # fmt: skip
    return Variant(method=method(ops), graphs=graphs, metrics=metrics, tolerance=checked,
                   within_tolerance=checked["within"], speedup=speedup)  # fmt: skip


def default_precision(variant: Variant) -> str:
    """int8 when it is within tolerance and faster at every batch size measured; float32 otherwise."""
    faster = bool(variant.speedup) and min(variant.speedup.values()) >= SPEEDUP_MIN
    return "int8" if variant.within_tolerance and faster else "fp32"


def add_variant(version_dir: Path, precision: str, variant: Variant) -> Manifest:
    """Add a variant to a published version (its float32 files stay as they are, checked by sha256 first), and
    choose its default precision again."""
    manifest = read_manifest(version_dir)
    for name, entry in manifest.files.items():
        if file_entry(version_dir / name) != entry:
            raise ValueError(f"{version_dir / name} changed since export; not amending a damaged version")
    files = dict(manifest.files)
    for graph in variant.graphs.values():
        files[graph.file] = file_entry(version_dir / graph.file)
    amended = manifest.model_copy(
        update={
            "files": dict(sorted(files.items())),
            "variants": {**manifest.variants, precision: variant},
            "default_precision": default_precision(variant),
        }
    )
    write_manifest(version_dir, Manifest.model_validate(amended.model_dump()))
    return amended
