"""What a model family is to the service: one `Family` description per family, read by the app factory, the
runtime (engines and batching), the session routes, the model catalogue, the OpenAPI export and the tests.

    Family(name, engine, router, batching, session, limits)
      engine   LoadedModel -> the object that runs the ONNX graphs (loaded once per version)
      router   the family's thin routes (parse -> family service -> response)
      batching OneShot(run) : requests arriving together share one call of run(engine, items)
               Continuous() : sequences join and leave a step loop (the engine is a `StepEngine`)
               None         : every request runs alone
      session  a `SessionCodec` for stateful families (the state object itself is the family's own type)
      limits   (engine, settings) -> the limits a client must respect, as GET /models/{family} states them

Adding a family = its package under service/families/ (engine, schemas, service, routes, `FAMILY`) and one line
in service/families/registry.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel

from .config import Settings
from .registry import LoadedModel

State = tuple[np.ndarray, np.ndarray]  # (h, c), each float32 (layers, B, hidden)


class Engine(Protocol):
    """Runs one model version's graphs. Made once per version in the lifespan; `run` is thread-safe."""

    model: LoadedModel


class StepEngine(Engine, Protocol):
    """A token-stepping model for continuous batching: read a prefix once, then one call per step for a batch."""

    def zero_state(self, batch: int = 1) -> State: ...

    def prefill(self, ids: list[int], state: State | None = None) -> tuple[np.ndarray, State]: ...

    def run(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]: ...


@dataclass(frozen=True)
class OneShot:
    """Micro-batched: `run(engine, items)` takes a flat list of items from many requests, one result per item."""

    run: Callable[[Any, list[Any]], list[Any]]


@dataclass(frozen=True)
class Continuous:
    """Continuous batching of token-by-token generation (see batching.GenerationBatcher)."""


class SessionCodec(Protocol):
    def initial_data(self, engine: Any, seed: int | None) -> dict[str, Any]:
        """What a new session of this family holds before its first call (JSON-able)."""
        ...


@dataclass(frozen=True)
class Family:
    name: str  # the directory under models/
    engine: Callable[[LoadedModel], Engine]
    router: APIRouter
    batching: OneShot | Continuous | None = None
    session: SessionCodec | None = None
    limits: Callable[[Any, Settings], dict[str, Any]] | None = None
    stream_models: tuple[type[BaseModel], ...] = ()  # bodies that appear only inside a stream (OpenAPI components)

    @property
    def stateful(self) -> bool:
        return self.session is not None
