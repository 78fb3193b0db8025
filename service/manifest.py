"""The manifest: what a model version is, written by training and read by the service.

`models/<family>/<version>/manifest.json` describes everything a reader needs — files with their sha256, the ONNX
graphs' input/output contracts, tokenizer settings, family-specific settings, data provenance, hyper-parameters and
measured metrics next to their baseline. Nothing is re-derived from file names or code defaults.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class TensorSpec(_Strict):
    name: str
    dtype: Literal["int64", "float32"]
    dims: list[str | int]  # symbolic names ("batch", "seq") or fixed sizes


class GraphSpec(_Strict):
    """One ONNX graph: its file, opset and the exact input/output contract."""

    file: str
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class TokenizerSpec(_Strict):
    kind: Literal["word"] = "word"
    vocab_file: str
    vocab_size: int
    min_count: int
    lowercase: bool = True
    # Where <eos> goes (service/tokenizer.py): "paragraph" (blank lines end paragraphs), "line" (every line end;
    # also what a manifest without the field means, as models/wordlm/1), "none" (single snippets, as sentiment).
    eos: Literal["paragraph", "line", "none"] = "line"


class DataSpec(_Strict):
    source: str  # a human-readable description: package archive + file, or a user's path
    sha256: str  # hash of the exact text/rows the splits were cut from
    splits: dict[str, Any] = Field(default_factory=dict)  # sizes, and how the split was made


PRECISIONS = ("fp32", "int8")


class Variant(_Strict):
    """The same trained weights in another precision, made by the export step from the float32 graph: graphs that
    replace the float32 ones by role (roles not listed keep theirs), measured on the same test split."""

    method: str  # how it was made, e.g. onnxruntime dynamic quantization of which ops
    graphs: dict[str, GraphSpec]
    metrics: dict[str, Any] = Field(default_factory=dict)  # quality (same names as metrics.model) and parity
    tolerance: dict[str, Any] = Field(default_factory=dict)  # {"metric", "limit", "fp32", "value", "change"}
    within_tolerance: bool
    speedup: dict[str, float] = Field(default_factory=dict)  # float32 / this precision's call time, by batch size


class Manifest(_Strict):
    schema_version: int = SCHEMA_VERSION
    family: str
    name: str
    version: int = Field(ge=1)
    created_at: str
    description: str = ""
    files: dict[str, FileEntry]
    graphs: dict[str, GraphSpec]  # by role, e.g. "step"
    tokenizer: TokenizerSpec | None = None
    config: dict[str, Any] = Field(default_factory=dict)  # architecture, read by the family's engine
    data: DataSpec
    training: dict[str, Any] = Field(default_factory=dict)  # hyper-parameters, seed, duration, command
    metrics: dict[str, Any] = Field(default_factory=dict)  # {"model": {...}, "baselines": {name: {...}}}
    variants: dict[str, Variant] = Field(default_factory=dict)  # by precision ("int8"); float32 is the graphs above
    # What CELLSTATE_PRECISION=auto serves: the precision that measured fastest within its tolerance at export.
    default_precision: Literal["fp32", "int8"] = "fp32"

    def graph_files(self, precision: str) -> dict[str, str]:
        """The file of each graph role in `precision` (ValueError when this version has no such variant)."""
        files = {role: graph.file for role, graph in self.graphs.items()}
        if precision == "fp32":
            return files
        if precision not in self.variants:
            have = ", ".join(["fp32", *self.variants]) or "fp32"
            raise ValueError(f"{self.family}/{self.version} has no {precision} variant (it has: {have})")
        return files | {role: graph.file for role, graph in self.variants[precision].graphs.items()}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def read_manifest(version_dir: Path) -> Manifest:
    return Manifest.model_validate_json((version_dir / MANIFEST_NAME).read_text(encoding="utf-8"))


def write_manifest(version_dir: Path, manifest: Manifest) -> Path:
    path = version_dir / MANIFEST_NAME
    path.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def verify_files(version_dir: Path, manifest: Manifest) -> list[str]:
    """Problems with the files a manifest lists (missing, size or sha256 mismatch); empty when all is well."""
    problems = []
    for name, entry in manifest.files.items():
        path = version_dir / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
            problems.append(f"{name}: sha256 mismatch (file changed since export)")
    for role, graph in manifest.graphs.items():
        if graph.file not in manifest.files:
            problems.append(f"graph {role}: {graph.file} is not listed in files")
    for precision, variant in manifest.variants.items():
        for role, graph in variant.graphs.items():
            if role not in manifest.graphs:
                problems.append(f"{precision} graph {role}: no such role among the float32 graphs")
            if graph.file not in manifest.files:
                problems.append(f"{precision} graph {role}: {graph.file} is not listed in files")
    if manifest.default_precision != "fp32" and manifest.default_precision not in manifest.variants:
        problems.append(f"default_precision {manifest.default_precision} has no variant")
    return problems


def next_version(family_dir: Path) -> int:
    versions = (
        [int(p.name) for p in family_dir.iterdir() if p.is_dir() and p.name.isdigit()] if family_dir.is_dir() else []
    )
    return max(versions, default=0) + 1
