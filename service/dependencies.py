"""Dependencies shared by the routers: settings, registry, the runtime and the engines loaded in the lifespan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from .config import Settings
from .registry import Registry
from .runtime import Runtime


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def engine_for(family: str) -> Callable[[Request], Any]:
    """A dependency returning the engine serving `family` (ModelUnavailable, a 503, when none is loaded). Each
    family types it once: `WordLMDep = Annotated[WordLMEngine, Depends(engine_for(NAME))]`."""

    def dependency(request: Request) -> Any:
        return get_runtime(request).engine(family)

    return dependency


def request_id(request: Request) -> str | None:
    rid: str | None = getattr(request.state, "request_id", None)
    return rid


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RequestIdDep = Annotated[str | None, Depends(request_id)]
