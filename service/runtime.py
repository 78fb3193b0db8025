"""What the lifespan builds and the routes use: engines by version, batchers and the session store.

Nothing here names a family: every family is described once (service/families/registry.py) and the runtime
iterates those descriptions.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from .batching import GenerationBatcher, MicroBatcher
from .config import Settings
from .errors import ModelUnavailable, SessionFamilyMismatch, VersionRetired
from .family import Continuous, Engine, Family, OneShot, StepEngine
from .observability import BATCH_SIZE, PROMPTS_READ, QUEUE_DEPTH
from .registry import Registry, load_registry
from .sessions import MemorySessionStore, RedisSessionStore, SessionRecord, SessionStore

log = logging.getLogger(__name__)


def make_session_store(settings: Settings) -> SessionStore:
    args = (settings.session_idle_ttl_s, settings.session_max_lifetime_s, settings.session_capacity)
    if settings.session_store == "redis":
        return RedisSessionStore(settings.redis_url, *args, lease_timeout=settings.session_lease_s,
                                 timeout=settings.session_store_timeout_s)  # fmt: skip
    return MemorySessionStore(*args, lease_timeout=settings.session_lease_s)


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    sessions: SessionStore
    families: Mapping[str, Family]
    current: dict[str, Engine] = field(default_factory=dict)  # family -> engine of the version being served
    versions: dict[tuple[str, int], Engine] = field(default_factory=dict)  # (family, version) -> engine
    batchers: dict[tuple[str, int], GenerationBatcher] = field(default_factory=dict)
    microbatchers: dict[tuple[str, int], MicroBatcher[Any, Any]] = field(default_factory=dict)

    _reload_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, settings: Settings, registry: Registry, families: Mapping[str, Family]) -> Runtime:
        runtime = cls(settings=settings, registry=registry, sessions=make_session_store(settings), families=families)
        runtime._serve(registry)
        return runtime

    def _serve(self, registry: Registry) -> None:
        """Make engines for the registry's models (reusing those already running) and point each family at its
        chosen version. One dict assignment per family: a request sees the old engine or the new, never neither."""
        current: dict[str, Engine] = {}
        for name, model in registry.models.items():
            family = self.families.get(name)
            if family is None:
                registry.failures[f"{name}/{model.version}"] = "no engine serves this family"
                continue
            key = (name, model.version)
            if key not in self.versions:
                self.versions[key] = family.engine(model)
                self._start_batching(family, self.versions[key])
            current[name] = self.versions[key]
        for name in list(self.current):
            if name not in current:
                del self.current[name]
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

    def _start_batching(self, family: Family, engine: Engine) -> None:
        s = self.settings
        if not s.batching:
            return
        key = (family.name, engine.model.version)
        if isinstance(family.batching, Continuous):

            def on_step(size: int, depth: int) -> None:
                BATCH_SIZE.labels(family=family.name).observe(size)
                QUEUE_DEPTH.labels(family=family.name).set(depth)

            step_engine: StepEngine = engine  # type: ignore[assignment]  # Continuous families step

            def on_prompt(how: str) -> None:
                PROMPTS_READ.labels(family=family.name, how=how).inc()

            self.batchers[key] = GenerationBatcher(step_engine, s.batch_max_size, s.batch_max_queue, on_step,
                                                   s.batch_ride_along, on_prompt)  # fmt: skip
        elif isinstance(family.batching, OneShot):  # requests arriving together share their model calls
            run = family.batching.run
            self.microbatchers[key] = MicroBatcher(
                f"{family.name}-{engine.model.version}", lambda items: run(engine, items), s.microbatch_max_items,
                s.microbatch_max_wait_ms / 1000.0, s.microbatch_max_queue_items,
            )  # fmt: skip

    async def run_batched(self, family: str, engine: Engine, items: list[Any]) -> list[Any]:
        """Run a one-shot family's batch function on `items` through its micro-batcher (or alone in the thread
        pool when batching is off). Raises QueueFullError (503) when too many items are waiting."""
        micro = self.microbatchers.get((family, engine.model.version))
        if micro is None:
            batching = self.families[family].batching
            assert isinstance(batching, OneShot)
            return list(await run_in_threadpool(batching.run, engine, items))
        return await asyncio.wrap_future(micro.submit(items))

    def queue_full(self, family: str) -> int | None:
        """The items waiting for `family`'s micro-batcher when they fill its queue, else None."""
        engine = self.current.get(family)
        micro = self.microbatchers.get((family, engine.model.version)) if engine is not None else None
        if micro is None or micro.waiting_items < micro.max_queue_items:
            return None
        return micro.waiting_items

    def engine(self, family: str) -> Engine:
        engine = self.current.get(family)
        if engine is None:
            raise ModelUnavailable(family)
        return engine

    def session_engine(self, session: SessionRecord, family: str) -> Engine:
        """The engine of the version a session started on (a session never changes model version)."""
        if session.family != family:
            raise SessionFamilyMismatch(session.id, session.family, family)
        engine = self.versions.get((family, session.model_version))
        if engine is None:
            raise VersionRetired(session.id, family, session.model_version)
        return engine

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        for micro in self.microbatchers.values():
            micro.close()
        self.sessions.close()
