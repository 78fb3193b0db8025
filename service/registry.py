"""Model registry: finds every `models/<family>/<version>/manifest.json`, verifies files, opens ORT sessions.

One InferenceSession per served model version, made once at start-up and shared by all requests
(`InferenceSession.run` is thread-safe).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime as ort
from pydantic import ValidationError

from .config import Settings
from .manifest import MANIFEST_NAME, Manifest, read_manifest, verify_files

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    manifest: Manifest
    directory: Path
    sessions: dict[str, ort.InferenceSession]  # by graph role
    precision: str = "fp32"  # which of the manifest's precisions the sessions run

    @property
    def family(self) -> str:
        return self.manifest.family

    @property
    def version(self) -> int:
        return self.manifest.version


@dataclass
class Registry:
    models: dict[str, LoadedModel] = field(default_factory=dict)  # by family: the version being served
    failures: dict[str, str] = field(default_factory=dict)  # "family/version" -> why it is not served


def session_options(settings: Settings) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = settings.intra_op_threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0")
    return opts


def discover(models_dir: Path) -> dict[str, list[Path]]:
    """Version directories per family, highest version first."""
    found: dict[str, list[Path]] = {}
    if not models_dir.is_dir():
        return found
    for family_dir in sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = [
            p for p in family_dir.iterdir() if p.is_dir() and p.name.isdigit() and (p / MANIFEST_NAME).is_file()
        ]
        if versions:
            found[family_dir.name] = sorted(versions, key=lambda p: int(p.name), reverse=True)
    return found


def load_model(version_dir: Path, settings: Settings) -> LoadedModel:
    """Read, verify and open one version; raises ValueError saying what is wrong."""
    try:
        manifest = read_manifest(version_dir)
    except (ValidationError, ValueError) as exc:
        raise ValueError(f"invalid manifest: {exc}") from exc
    if str(manifest.version) != version_dir.name or manifest.family != version_dir.parent.name:
        raise ValueError(
            f"manifest says {manifest.family}/{manifest.version}, directory is "
            f"{version_dir.parent.name}/{version_dir.name}"
        )
    problems = verify_files(version_dir, manifest)
    if problems:
        raise ValueError("; ".join(problems))
    # `auto` is the manifest's default (the fastest precision within its tolerance, measured at export); an explicit
    # fp32 or int8 is served as asked, or the version is not served when it has no such variant (ValueError).
    asked = settings.precision_for(manifest.family)
    precision = manifest.default_precision if asked == "auto" else asked
    files = manifest.graph_files(precision)
    opts = session_options(settings)
    sessions = {
        role: ort.InferenceSession(str(version_dir / file), opts, providers=["CPUExecutionProvider"])
        for role, file in files.items()
    }
    return LoadedModel(manifest=manifest, directory=version_dir, sessions=sessions, precision=precision)


def load_registry(settings: Settings, loaded: dict[tuple[str, int], LoadedModel] | None = None) -> Registry:
    """Choose and load each family's version. Versions in `loaded` are reused as they are (versions are
    immutable), so a reload only reads and verifies what is new."""
    registry = Registry()
    loaded = loaded or {}
    for family, versions in discover(settings.models_dir).items():
        pinned = settings.pinned_versions.get(family)
        chosen = next((v for v in versions if int(v.name) == pinned), None) if pinned else versions[0]
        key = f"{family}/{pinned if chosen is None else chosen.name}"
        if chosen is None:
            registry.failures[key] = f"pinned version {pinned} not found"
            log.error("model %s not served: pinned version not found", key)
            continue
        try:
            reuse = loaded.get((family, int(chosen.name)))
            registry.models[family] = reuse if reuse is not None else load_model(chosen, settings)
            log.info("loaded model %s from %s", key, chosen)
        except Exception as exc:  # any broken model is reported, never takes the service down
            registry.failures[key] = str(exc)
            log.error("model %s not served: %s", key, exc)
    for family in settings.pinned_versions.keys() - discover(settings.models_dir).keys():
        registry.failures[f"{family}/{settings.pinned_versions[family]}"] = "no such model family"
    return registry
