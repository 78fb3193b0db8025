"""Continuous batching for generation, micro-batching for one-shot models.

Generation (continuous batching, as in text-generation-inference/vLLM, for an LSTM):

    queue ──admit──> prefill(prompt) (one call per new sequence, at a step boundary)
                        │
                        v
    active batch  [seq0 seq1 seq2 ...]   h, c: (layers, B, hidden) stacked
        step: tokens (B, 1) ──one ONNX call──> logits (B, 1, V), new h, c
              each sequence samples its next token; finished or cancelled ones leave (their rows are dropped)

A sequence's result does not depend on its neighbours: every row of the LSTM is computed independently.

Micro-batching (`MicroBatcher`): requests that arrive within `max_wait` of each other are run in one call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from .families.wordlm.engine import Generation, State, WordLMEngine
from .sampling import sample_rows

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """More requests are waiting than the configured queue allows; the caller answers 503."""


@dataclass(eq=False)
class GenerationJob:
    generation: Generation
    feed_ids: list[int]  # tokens to read before sampling: the prompt (after a session's pending token)
    state: State | None = None  # incoming (h, c), each (layers, 1, hidden); None = zeros
    on_piece: Callable[[str], object] | None = None  # streaming: called from the decoding thread
    on_done: Callable[[GenerationJob], object] | None = None  # called once, from the decoding thread
    cancelled: bool = False  # set by the request when its client goes away
    final_state: State | None = None  # state after the last token fed (the last sampled token is not fed)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class DecodeBatch:
    """The sequences being decoded together, with their stacked LSTM state."""

    def __init__(self, engine: WordLMEngine) -> None:
        self.engine = engine
        self.jobs: list[GenerationJob] = []
        self.h: np.ndarray | None = None  # (layers, B, hidden)
        self.c: np.ndarray | None = None
        self._tokens = np.empty((0, 1), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.jobs)

    def admit(self, job: GenerationJob) -> None:
        """Prefill a new sequence and, unless its first token already ends it, add it to the batch."""
        if job.cancelled:
            self._finish(job, job.state)
            return
        try:
            logits, (h, c) = self.engine.prefill(job.feed_ids, job.state)
            self._emit(job, job.generation.advance(logits))
        except Exception as exc:  # a broken request must not take the batch down
            log.exception("prefill failed")
            job.error = exc
            self._finish(job, None)
            return
        if job.generation.finish_reason is not None:
            self._finish(job, (h, c))
            return
        self.jobs.append(job)
        self.h = h if self.h is None else np.concatenate([self.h, h], axis=1)
        self.c = c if self.c is None else np.concatenate([self.c, c], axis=1)

    def step(self) -> None:
        """One ONNX call advances every active sequence by one token."""
        self._drop([i for i, job in enumerate(self.jobs) if job.cancelled])
        if not self.jobs:
            return
        assert self.h is not None and self.c is not None
        if self._tokens.shape[0] != len(self.jobs):
            self._tokens = np.empty((len(self.jobs), 1), dtype=np.int64)
        for i, job in enumerate(self.jobs):
            self._tokens[i, 0] = job.generation.last_id
        logits, (self.h, self.c) = self.engine.run(self._tokens, (self.h, self.c))
        rows = logits[:, 0]  # (B, V), a fresh array: masked in place
        for i, job in enumerate(self.jobs):
            job.generation.mask(rows[i])
        token_ids = sample_rows([job.generation.sampler for job in self.jobs], rows)
        finished = []
        for i, job in enumerate(self.jobs):
            self._emit(job, job.generation.accept(int(token_ids[i])))
            if job.generation.finish_reason is not None:
                finished.append(i)
        self._drop(finished)

    def fail_all(self, exc: BaseException) -> None:
        for job in self.jobs:
            job.error = exc
            self._finish(job, None)
        self.jobs, self.h, self.c = [], None, None

    def _drop(self, rows: Sequence[int]) -> None:
        if not rows:
            return
        assert self.h is not None and self.c is not None
        for i in rows:
            self._finish(self.jobs[i], (self.h[:, i : i + 1].copy(), self.c[:, i : i + 1].copy()))
        keep = [i for i in range(len(self.jobs)) if i not in set(rows)]
        self.jobs = [self.jobs[i] for i in keep]
        self.h, self.c = (self.h[:, keep], self.c[:, keep]) if keep else (None, None)

    @staticmethod
    def _emit(job: GenerationJob, piece: str) -> None:
        if piece and job.on_piece is not None and not job.cancelled:
            job.on_piece(piece)

    @staticmethod
    def _finish(job: GenerationJob, state: State | None) -> None:
        job.final_state = state
        job.done.set()
        if job.on_done is not None:
            job.on_done(job)


def run_alone(engine: WordLMEngine, job: GenerationJob) -> GenerationJob:
    """Decode one sequence in the calling thread (batching disabled)."""
    batch = DecodeBatch(engine)
    batch.admit(job)
    while batch:
        batch.step()
    return job


class GenerationBatcher:
    """A thread that owns a DecodeBatch: sequences join at step boundaries and leave when they finish."""

    def __init__(
        self,
        engine: WordLMEngine,
        max_batch: int,
        max_queue: int,
        on_step: Callable[[int, int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.on_step = on_step  # (batch size, queue depth) after every step, for metrics
        self._queue: queue.Queue[GenerationJob | None] = queue.Queue()
        self.active = 0  # sequences in the batch now
        self.max_active = 0  # most sequences ever stepped together
        self._thread = threading.Thread(
            target=self._loop, name=f"batcher-{engine.model.family}-{engine.model.version}", daemon=True
        )
        self._thread.start()

    def submit(self, job: GenerationJob) -> None:
        if self._queue.qsize() >= self.max_queue:
            raise QueueFullError(f"{self._queue.qsize()} generation requests are already waiting")
        self._queue.put(job)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        batch = DecodeBatch(self.engine)
        while True:
            # Idle: block for work. Busy: admit what is waiting, up to the batch limit, between two steps.
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get(block=not batch)
                except queue.Empty:
                    break
                if job is None:
                    batch.fail_all(RuntimeError("server shutting down"))
                    return
                batch.admit(job)
            self.active = len(batch)
            self.max_active = max(self.max_active, self.active)
            try:
                batch.step()
            except Exception as exc:
                log.exception("decode step failed; failing the %d sequences in the batch", len(batch))
                batch.fail_all(exc)
            self.active = len(batch)
            if self.on_step is not None:
                self.on_step(len(batch), self._queue.qsize())


In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(eq=False)
class _Pending(Generic[In, Out]):
    items: list[In]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Out] | None = None
    error: BaseException | None = None


class MicroBatcher(Generic[In, Out]):
    """Runs `fn(items)` for several requests at once: a request waits at most `max_wait` seconds for company.

    `fn` takes a flat list of items (from all requests, in order) and returns one result per item.
    """

    def __init__(self, name: str, fn: Callable[[list[In]], list[Out]], max_items: int, max_wait: float) -> None:
        self.fn = fn
        self.max_items = max_items
        self.max_wait = max_wait
        self._queue: queue.Queue[_Pending[In, Out] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"microbatch-{name}", daemon=True)
        self._thread.start()

    def run(self, items: list[In], timeout: float | None = None) -> list[Out]:
        """Blocking: call from a worker thread, never from the event loop."""
        pending: _Pending[In, Out] = _Pending(items)
        self._queue.put(pending)
        if not pending.done.wait(timeout):
            raise TimeoutError("micro-batch did not finish in time")
        if pending.error is not None:
            raise pending.error
        assert pending.results is not None
        return pending.results

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, count = [first], len(first.items)
            deadline = time.monotonic() + self.max_wait
            stop = False
            while count < self.max_items:
                remaining = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
                count += len(nxt.items)
            self._run_group(group)
            if stop:
                return

    def _run_group(self, group: list[_Pending[In, Out]]) -> None:
        items: list[Any] = [item for p in group for item in p.items]
        try:
            results = self.fn(items)
            assert len(results) == len(items)
        except Exception as exc:
            for p in group:
                p.error = exc
                p.done.set()
            return
        offset = 0
        for p in group:
            p.results = results[offset : offset + len(p.items)]
            offset += len(p.items)
            p.done.set()
