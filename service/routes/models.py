"""Model versions on disk, and reloading them without a restart."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..dependencies import RuntimeDep
from ..errors import NotFound, documented
from ..manifest import read_manifest
from ..registry import discover
from ..runtime import Runtime

router = APIRouter(tags=["models"])


class VersionInfo(BaseModel):
    version: int
    name: str | None = None
    created_at: str | None = None
    metrics: dict[str, object] = Field(default_factory=dict)
    served: bool = Field(description="new requests go to this version")
    loaded: bool = Field(description="in memory (served, or kept for sessions pinned to it)")
    problem: str | None = Field(None, description="why it is not served, if it failed to load")
    precisions: list[str] = Field(default_factory=list, description="the precisions this version can be served in")
    precision: str | None = Field(None, description="the precision it is loaded in, when loaded")


class FamilyVersions(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "family": "wordlm",
                    "versions": [
                        {"version": 2, "name": "wordlm-2x400", "created_at": "2026-02-01T00:00:00+00:00",
                         "metrics": {"model": {"test_perplexity": 51.9}}, "served": True, "loaded": True},
                        {"version": 1, "name": "wordlm-2x400", "created_at": "2026-01-01T00:00:00+00:00",
                         "metrics": {"model": {"test_perplexity": 53.9}}, "served": False, "loaded": True},
                    ],
                }
            ]
        }
    )  # fmt: skip

    family: str
    versions: list[VersionInfo]
    limits: dict[str, object] = Field(
        default_factory=dict,
        description="the served version's limits a request must respect (the same values the 422s enforce)",
    )


class ReloadResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"serving": {"wordlm": 2, "sentiment": 1}, "loaded": {"wordlm": [1, 2], "sentiment": [1]},
                          "failures": {}}]
        }
    )  # fmt: skip

    serving: dict[str, int]
    loaded: dict[str, list[int]]
    failures: dict[str, str]


@router.get("/models/{family}", response_model=FamilyVersions, responses=documented(s404="no such model family"))
def family_versions(family: str, runtime: RuntimeDep) -> FamilyVersions:
    """Every version of a model family found on disk, newest first, which one is served, and its limits."""
    found = discover(runtime.settings.models_dir).get(family)
    if not found:
        raise NotFound(f"no model family {family!r} under the models directory")
    served = runtime.current.get(family)
    versions = []
    for version_dir in found:
        version = int(version_dir.name)
        problem = runtime.registry.failures.get(f"{family}/{version}")
        try:
            manifest = read_manifest(version_dir)
            name, created, metrics = manifest.name, manifest.created_at, manifest.metrics
            precisions = ["fp32", *manifest.variants]
        except Exception as exc:  # a broken manifest is listed with its problem, not hidden
            name, created, metrics, precisions = None, None, {}, []
            problem = problem or f"invalid manifest: {exc}"
        engine = runtime.versions.get((family, version))
        versions.append(VersionInfo(version=version, name=name, created_at=created, metrics=metrics,
                                    served=served is not None and served.model.version == version,
                                    loaded=engine is not None, problem=problem, precisions=precisions,
                                    precision=engine.model.precision if engine is not None else None))  # fmt: skip
    spec = runtime.families.get(family)
    limits = spec.limits(served, runtime.settings) if spec and spec.limits and served else {}
    return FamilyVersions(family=family, versions=versions, limits=limits)


@router.post("/admin/reload", response_model=ReloadResponse)
async def reload_models(request: Request) -> ReloadResponse:
    """Re-read the models directory and swap to the versions it selects, atomically per family."""
    runtime: Runtime = request.app.state.runtime
    registry = await run_in_threadpool(runtime.reload)
    request.app.state.registry = registry
    loaded: dict[str, list[int]] = {}
    for family, version in sorted(runtime.versions):
        loaded.setdefault(family, []).append(version)
    return ReloadResponse(serving={f: e.model.version for f, e in runtime.current.items()}, loaded=loaded,
                          failures=registry.failures)  # fmt: skip
