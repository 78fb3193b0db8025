"""Dependencies shared by the routers: settings, registry and the engines loaded in the lifespan."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from .config import Settings
from .registry import Registry


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def engine_for(family: str) -> Any:
    """A dependency returning the engine serving `family`, or 503 when that family is not loaded."""

    def dependency(request: Request) -> Any:
        return request.app.state.runtime.engine(family)

    return dependency


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
