"""What the lifespan builds and the routes use: engines by version, batchers and the session store."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException

from .batching import GenerationBatcher, MicroBatcher
from .config import Settings
from .families.wordlm.engine import WordLMEngine
from .families_list import ENGINES
from .observability import BATCH_SIZE, QUEUE_DEPTH
from .registry import Registry, load_registry
from .sessions import MemorySessionStore, RedisSessionStore, SessionRecord, SessionStore

log = logging.getLogger(__name__)

# One-shot families and the engine method that takes a flat list of items (from many requests) at once.
MICROBATCHED = {"sentiment": "classify", "forecast": "forecast_many"}


def make_session_store(settings: Settings) -> SessionStore:
    args = (settings.session_idle_ttl_s, settings.session_max_lifetime_s, settings.session_capacity)
    if settings.session_store == "redis":
        return RedisSessionStore(settings.redis_url, *args)
    return MemorySessionStore(*args)


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    sessions: SessionStore
    current: dict[str, Any] = field(default_factory=dict)  # family -> engine of the version being served
    versions: dict[tuple[str, int], Any] = field(default_factory=dict)  # (family, version) -> engine
    batchers: dict[tuple[str, int], GenerationBatcher] = field(default_factory=dict)
    microbatchers: dict[tuple[str, int], MicroBatcher[Any, Any]] = field(default_factory=dict)

    _reload_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, settings: Settings, registry: Registry) -> Runtime:
        runtime = cls(settings=settings, registry=registry, sessions=make_session_store(settings))
        runtime._serve(registry)
        return runtime

    def _serve(self, registry: Registry) -> None:
        """Make engines for the registry's models (reusing those already running) and point each family at its
        chosen version. One dict assignment per family: a request sees the old engine or the new, never neither."""
        current: dict[str, Any] = {}
        for family, model in registry.models.items():
            if family not in ENGINES:
                registry.failures[f"{family}/{model.version}"] = "no engine serves this family"
                continue
            key = (family, model.version)
            if key not in self.versions:
                self.versions[key] = ENGINES[family](model)
                self._start_batching(family, self.versions[key])
            current[family] = self.versions[key]
        for family in list(self.current):
            if family not in current:
                del self.current[family]
        self.current.update(current)
        self.registry = registry

    def reload(self) -> Registry:
        """Re-read the models directory and serve what it now says. Versions already loaded stay loaded, so
        requests in flight finish on the engine they started with and sessions keep their pinned version."""
        with self._reload_lock:
            loaded = {key: engine.model for key, engine in self.versions.items()}
            self._serve(load_registry(self.settings, loaded))
            log.info("reloaded: serving %s", {f: e.model.version for f, e in self.current.items()})
            return self.registry

    def _start_batching(self, family: str, engine: Any) -> None:
        s = self.settings
        if not s.batching:
            return
        key = (family, engine.model.version)
        if isinstance(engine, WordLMEngine):

            def on_step(size: int, depth: int) -> None:
                BATCH_SIZE.labels(family=family).observe(size)
                QUEUE_DEPTH.labels(family=family).set(depth)

            self.batchers[key] = GenerationBatcher(engine, s.batch_max_size, s.batch_max_queue, on_step)
        elif family in MICROBATCHED:  # one-shot families: requests arriving together share their model calls
            self.microbatchers[key] = MicroBatcher(
                f"{family}-{engine.model.version}", getattr(engine, MICROBATCHED[family]), s.microbatch_max_items,
                s.microbatch_max_wait_ms / 1000.0,
            )  # fmt: skip

    def run_batched(self, family: str, engine: Any, items: list[Any]) -> list[Any]:
        """Run a one-shot family's batch function through its micro-batcher (or directly when batching is off).
        Call from a worker thread: it blocks."""
        micro = self.microbatchers.get((family, engine.model.version))
        if micro is None:
            return list(getattr(engine, MICROBATCHED[family])(items))
        return micro.run(items)

    def engine(self, family: str) -> Any:
        engine = self.current.get(family)
        if engine is None:
            raise HTTPException(503, f"no {family} model is loaded (see GET /ready)")
        return engine

    def session_engine(self, session: SessionRecord, family: str) -> Any:
        """The engine of the version a session started on (a session never changes model version)."""
        if session.family != family:
            raise HTTPException(409, f"session {session.id} is a {session.family} session, not {family}")
        engine = self.versions.get((family, session.model_version))
        if engine is None:
            raise HTTPException(410, f"session {session.id} is pinned to {family} version {session.model_version}, "
                                "which is no longer served")  # fmt: skip
        return engine

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        for micro in self.microbatchers.values():
            micro.close()
        self.sessions.close()
