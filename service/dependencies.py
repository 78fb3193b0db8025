"""Dependencies shared by the routers: settings, registry, the runtime and the engines loaded in the lifespan.

All `async def`: FastAPI runs a plain `def` dependency in the thread pool, a thread hop per dependency per request
(measured by benchmarks/profile.py) for what is a dictionary lookup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from .config import Settings
from .registry import Registry
from .runtime import Runtime


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def engine_for(family: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning the engine serving `family` (ModelUnavailable, a 503, when none is loaded). Each
    family types it once: `WordLMDep = Annotated[WordLMEngine, Depends(engine_for(NAME))]`."""

    async def dependency(request: Request) -> Any:
        runtime: Runtime = request.app.state.runtime
        return runtime.engine(family)

    return dependency


async def request_id(request: Request) -> str | None:
    rid: str | None = getattr(request.state, "request_id", None)
    return rid


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RequestIdDep = Annotated[str | None, Depends(request_id)]
