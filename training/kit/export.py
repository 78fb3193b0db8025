"""ONNX export, parity check and publishing of a model version — shared by every family.

Recipe (see shared DESIGN): `torch.onnx.export(dynamo=False, opset_version=17)` with named inputs/outputs and
dynamic batch/seq axes gives native ONNX `LSTM` ops with correct dynamic shapes. Every export is checked against
PyTorch before anything is written; a version directory appears atomically (rename) or not at all
(`publish_version`). Weights can be stored as float16 and computed in float32 (`store_weights_as_fp16`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from service.manifest import (
    DataSpec,
    GraphSpec,
    Manifest,
    TensorSpec,
    TokenizerSpec,
    file_entry,
    next_version,
    utc_now,
    write_manifest,
)

log = logging.getLogger(__name__)

OPSET = 17
_DTYPES: dict[int, str] = {onnx.TensorProto.INT64: "int64", onnx.TensorProto.FLOAT: "float32"}


class ParityError(RuntimeError):
    pass


def export_onnx(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> None:
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (native LSTM op, true dynamic shapes; see DESIGN.md).
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
        )
    onnx.checker.check_model(str(path))


def graph_spec(path: Path) -> GraphSpec:
    """The input/output contract read back from the saved graph (so the manifest states what the file really is)."""
    model = onnx.load(str(path))

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        t = value.type.tensor_type
        dims: list[str | int] = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        return TensorSpec(name=value.name, dtype=_DTYPES[t.elem_type], dims=dims)

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return GraphSpec(
        file=path.name,
        opset=opset,
        inputs=[spec(v) for v in model.graph.input],
        outputs=[spec(v) for v in model.graph.output],
    )


def ort_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_parity(module: nn.Module, path: Path, cases: Iterable[dict[str, np.ndarray]], atol: float) -> float:
    """Run every case through PyTorch and onnxruntime; raise ParityError past `atol`. Returns the max |diff|."""
    session = ort_session(path)
    worst = 0.0
    module.eval()
    for feeds in cases:
        with torch.no_grad():
            expected = module(*(torch.from_numpy(v) for v in feeds.values()))
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, feeds)
        for name, e, g in zip([o.name for o in session.get_outputs()], expected, got, strict=True):
            if tuple(e.shape) != g.shape:
                raise ParityError(
                    f"{name}: shape {g.shape} from onnxruntime, {tuple(e.shape)} from PyTorch "
                    f"for inputs { ({k: v.shape for k, v in feeds.items()}) }"
                )
            diff = float(np.max(np.abs(e.numpy() - g))) if g.size else 0.0
            worst = max(worst, diff)
            if not diff <= atol:
                raise ParityError(
                    f"{name}: max |diff| {diff:.3g} > {atol:g} for inputs { ({k: v.shape for k, v in feeds.items()}) }"
                )
    log.info("parity ok: max |diff| %.3g (limit %g)", worst, atol)
    return worst


@dataclass
class StagedVersion:
    """A model version being built: write its files into `path`, then `describe(...)` its manifest."""

    path: Path  # the staging directory (hidden, inside the family directory)
    version: int
    target: Path  # where it appears when the block ends without an exception
    fields: dict[str, Any] | None = None

    def describe(self, **fields: Any) -> None:
        """The manifest fields other than family, version, created_at and files (filled in from what is on disk)."""
        self.fields = fields


@contextmanager
def publish_version(models_dir: Path, family: str, version: int | None = None) -> Iterator[StagedVersion]:
    """Build a version in a staging directory; when the block ends, rename it into `models/<family>/<version>/`.

        with publish_version(models_dir, "wordlm") as staged:
            ...write files into staged.path, check them...
            staged.describe(name=..., graphs=..., metrics=...)
        return staged.target

    If the block raises (a failed parity check, say) or never describes the version, nothing is published.
    """
    family_dir = models_dir / family
    family_dir.mkdir(parents=True, exist_ok=True)
    version = version or next_version(family_dir)
    target = family_dir / str(version)
    if target.exists():
        raise FileExistsError(f"{target} exists; versions are immutable")
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=family_dir))
    staged = StagedVersion(path=staging, version=version, target=target)
    try:
        yield staged
        if staged.fields is None:
            raise RuntimeError(f"{family} version {version}: the block wrote files but never described them")
        files = {p.name: file_entry(p) for p in sorted(staging.iterdir()) if p.is_file()}
        manifest = Manifest(family=family, version=version, created_at=utc_now(), files=files, **staged.fields)
        write_manifest(staging, manifest)
        staging.chmod(0o755)  # mkdtemp makes it private
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("published %s", target)


# ---- float16 weight storage ------------------------------------------------------------------------------------------
@torch.no_grad()
def round_weights_to_fp16(module: nn.Module) -> None:
    """Make every parameter exactly representable in float16 (so fp16 storage loses nothing more)."""
    for p in module.parameters():
        p.copy_(p.half().float())


def store_weights_as_fp16(path: Path, min_elements: int = 64) -> None:
    """Rewrite the graph's float32 weights as float16 initializers, each read through a Cast back to float32.

    Halves the file; the computation stays float32 (onnxruntime folds the Casts into float32 constants when it loads
    the graph). The weights must already be float16-representable (`round_weights_to_fp16`), so the result is
    bit-identical to the float32 graph.
    """
    model = onnx.load(str(path))
    graph = model.graph
    initializers, casts = [], []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            initializers.append(init)
            continue
        weights = numpy_helper.to_array(init)
        half = weights.astype(np.float16)
        assert np.array_equal(half.astype(np.float32), weights), f"{init.name} is not float16-representable"
        initializers.append(numpy_helper.from_array(half, f"{init.name}.fp16"))
        casts.append(
            onnx.helper.make_node(
                "Cast", [f"{init.name}.fp16"], [init.name], to=onnx.TensorProto.FLOAT, name=f"{init.name}.cast"
            )
        )
    nodes = list(graph.node)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.node[:]
    graph.node.extend([*casts, *nodes])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


__all__ = [
    "DataSpec",
    "GraphSpec",
    "ParityError",
    "StagedVersion",
    "TokenizerSpec",
    "check_parity",
    "export_onnx",
    "graph_spec",
    "ort_session",
    "publish_version",
    "round_weights_to_fp16",
    "store_weights_as_fp16",
]
