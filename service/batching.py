"""Continuous batching for generation, micro-batching for one-shot models.

Generation (continuous batching, as in text-generation-inference/vLLM, for an LSTM):

    queue ──admit──> prefill(prompt) (one call per new sequence, at a step boundary) ─┐
            └──────> or ride along: join at once, read the prompt one token per step ──┤
                                                                                       v
    active batch  [seq0 seq1 seq2 ...]   h, c: (layers, B, hidden) stacked
        step: tokens (B, 1) ──one ONNX call──> logits (B, 1, V), new h, c
              each sequence samples its next token (or, riding along, is fed its next prompt token);
              finished or cancelled ones leave (their rows are dropped)

A sequence's result does not depend on its neighbours: every row of the LSTM is computed independently (with the
float32 graphs bit for bit: a prompt read in one call or one token per step, alone or among 63 others, gives the
same state; the int8 graphs quantize activations per call, so there a row's figures move in the last digits).

Why ride along: a prefill call reads a prompt of T tokens at batch 1 (2.5 ms + 0.37 ms a token on the 2-core test
machine for the word LM) while the B decoding sequences wait; in the batch the same prompt adds about 0.2 ms a token
to the step time, spread over T steps, and nobody stops. Riding along costs the newcomer its first token later
(T steps instead of one call). The batch takes whichever delays everybody less in total:

    prefill:     (B + 1) × prefill(T)          everyone waits for the call
    ride along:  T × step  +  B × T × (extra step time per row)  ≤  2 × T × step

with prefill(T) and the step time measured as the batch runs. So an idle or small batch prefills (fast first
token), and a busy one lets all but long prompts ride along (more tokens/s; at batch 64 on the test machine,
prompts of up to about 100 tokens, whose first token then comes 100 steps later).

Micro-batching (`MicroBatcher`): requests that arrive within `max_wait` of each other are run in one call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from .errors import Overloaded
from .family import State, StepEngine
from .sampling import Sampler, sample_rows

log = logging.getLogger(__name__)


class QueueFullError(Overloaded):
    """More requests (or items) are waiting than the configured queue allows: 503 with Retry-After."""


class Decoding(Protocol):
    """One sequence being decoded, as the step loop sees it (the word LM's `Generation` is one)."""

    sampler: Sampler
    last_id: int
    finish_reason: str | None
    completion_tokens: int

    def advance(self, logits: np.ndarray) -> str: ...

    def mask(self, logits: np.ndarray) -> None: ...

    def accept(self, token_id: int) -> str: ...


@dataclass(eq=False)
class GenerationJob:
    generation: Decoding
    feed_ids: list[int]  # tokens to read before sampling: the prompt (after a session's pending token)
    state: State | None = None  # incoming (h, c), each (layers, 1, hidden); None = zeros
    on_piece: Callable[[str], object] | None = None  # streaming: called from the decoding thread
    on_done: Callable[[GenerationJob], object] | None = None  # called once, from the decoding thread
    cancelled: bool = False  # set by the request when its client goes away
    final_state: State | None = None  # state after the last token fed (the last sampled token is not fed)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    request_id: str | None = None  # for log lines written by the decoding thread
    admitted: bool = False  # taken from the queue into the batch (set by the decoding thread)
    fed: int = 0  # tokens of feed_ids read so far (all of them once prefilled; one per step while riding along)

    @property
    def reading(self) -> bool:
        """Still riding along through its prompt (its next input is a prompt token, not a sampled one)."""
        return self.fed < len(self.feed_ids)


class DecodeBatch:
    """The sequences being decoded together, with their stacked LSTM state."""

    def __init__(
        self, engine: StepEngine, ride_along: bool = True, on_prompt: Callable[[str], None] | None = None
    ) -> None:
        self.engine = engine
        self.ride_along = ride_along  # may new prompts ride along at all (CELLSTATE_BATCH_RIDE_ALONG)
        self.on_prompt = on_prompt  # called with "prefill" or "in_batch" for every prompt read, for metrics
        self.jobs: list[GenerationJob] = []
        self.h: np.ndarray | None = None  # (layers, B, hidden)
        self.c: np.ndarray | None = None
        self._tokens = np.empty((0, 1), dtype=np.int64)
        # Measured costs, for choosing between a prefill call and riding along.
        self.step_s: float | None = None  # one step of the batch as it is now (moving average)
        self.prefill_cost = PrefillCost()

    def __len__(self) -> int:
        return len(self.jobs)

    def rides_along(self, prompt_tokens: int) -> bool:
        """Should a new sequence read its prompt in the batch, one token per step? Yes when that delays everybody
        less, in total, than a prefill call would (see the module's docstring)."""
        prefill = self.prefill_cost.estimate(prompt_tokens)
        if not self.ride_along or not self.jobs or self.step_s is None or prefill is None:
            return False  # nobody would wait (or nothing is measured yet): prefill, for the fastest first token
        return 2 * prompt_tokens * self.step_s < (len(self.jobs) + 1) * prefill

    def admit(self, job: GenerationJob, ride_along: bool | None = None) -> None:
        """Add a new sequence: prefill its prompt in one call and sample its first token (unless that token already
        ends it, it joins the batch), or let it ride along. `ride_along=None`: as `rides_along()` says."""
        job.admitted = True
        if job.cancelled:
            self._finish(job, job.state)
            return
        rides = ride_along if ride_along is not None else self.rides_along(len(job.feed_ids))
        if self.on_prompt is not None:
            self.on_prompt("in_batch" if rides else "prefill")
        if rides:
            h, c = job.state if job.state is not None else self.engine.zero_state()
            self._join(job, h, c)  # fed 0: its prompt goes in with the next steps
            return
        try:
            started = time.perf_counter()
            logits, (h, c) = self.engine.prefill(job.feed_ids, job.state)
            self.prefill_cost.observe(len(job.feed_ids), time.perf_counter() - started)
            job.fed = len(job.feed_ids)
            self._emit(job, job.generation.advance(logits))
        except Exception as exc:  # a broken request must not take the batch down
            log.exception("prefill failed (request %s)", job.request_id)
            job.error = exc
            self._finish(job, None)
            return
        if job.generation.finish_reason is not None:
            self._finish(job, (h, c))
            return
        self._join(job, h, c)

    def _join(self, job: GenerationJob, h: np.ndarray, c: np.ndarray) -> None:
        self.jobs.append(job)
        self.h = h if self.h is None else np.concatenate([self.h, h], axis=1)
        self.c = c if self.c is None else np.concatenate([self.c, c], axis=1)

    def step(self) -> None:
        """One ONNX call advances every active sequence by one token: the token it sampled last, or, riding along,
        the next token of its prompt (after the prompt's last token it samples, as after a prefill)."""
        self._drop([i for i, job in enumerate(self.jobs) if job.cancelled])
        if not self.jobs:
            return
        assert self.h is not None and self.c is not None
        if self._tokens.shape[0] != len(self.jobs):
            self._tokens = np.empty((len(self.jobs), 1), dtype=np.int64)
        for i, job in enumerate(self.jobs):
            self._tokens[i, 0] = job.feed_ids[job.fed] if job.reading else job.generation.last_id
        started = time.perf_counter()
        logits, (self.h, self.c) = self.engine.run(self._tokens, (self.h, self.c))
        self.step_s = _ewma(self.step_s, time.perf_counter() - started)
        sampling = []  # rows that sample now: decoding, or just fed the last token of their prompt
        for i, job in enumerate(self.jobs):
            if job.reading:
                job.fed += 1
                if job.reading:
                    continue
            sampling.append(i)
        if not sampling:
            return
        rows = logits[sampling, 0] if len(sampling) < len(self.jobs) else logits[:, 0]  # (S, V), masked in place
        jobs = [self.jobs[i] for i in sampling]
        for row, job in zip(rows, jobs, strict=True):
            job.generation.mask(row)
        token_ids = sample_rows([job.generation.sampler for job in jobs], rows)
        finished = []
        for i, job, token_id in zip(sampling, jobs, token_ids, strict=True):
            self._emit(job, job.generation.accept(int(token_id)))
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
            job = self.jobs[i]
            # Cancelled while still reading its prompt: no state after a part of it is anyone's; the one it came with.
            state = job.state if job.reading else (self.h[:, i : i + 1].copy(), self.c[:, i : i + 1].copy())
            self._finish(job, state)
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


class PrefillCost:
    """Seconds a prefill call takes for T tokens, a + b·T, fitted to the calls seen (recent ones weigh most)."""

    def __init__(self, weight: float = 0.05) -> None:
        self.weight = weight
        self.n = 0
        self.mean_t = self.mean_s = self.mean_tt = self.mean_ts = 0.0

    def observe(self, tokens: int, seconds: float) -> None:
        w = 1.0 / (self.n + 1) if self.n < 1 / self.weight else self.weight  # plain means until the window fills
        self.n += 1
        self.mean_t += w * (tokens - self.mean_t)
        self.mean_s += w * (seconds - self.mean_s)
        self.mean_tt += w * (tokens * tokens - self.mean_tt)
        self.mean_ts += w * (tokens * seconds - self.mean_ts)

    def estimate(self, tokens: int) -> float | None:
        if self.n == 0:
            return None
        var = self.mean_tt - self.mean_t**2
        if var < 1.0:  # every prompt about as long: proportional to the length
            return self.mean_s * tokens / max(self.mean_t, 1.0)
        b = max((self.mean_ts - self.mean_t * self.mean_s) / var, 0.0)
        return max(self.mean_s + b * (tokens - self.mean_t), 0.0)


def _ewma(average: float | None, value: float, weight: float = 0.1) -> float:
    return value if average is None else average + weight * (value - average)


def run_alone(engine: StepEngine, job: GenerationJob) -> GenerationJob:
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
        engine: StepEngine,
        max_batch: int,
        max_queue: int,
        on_step: Callable[[int, int], None] | None = None,
        ride_along: bool = True,
        on_prompt: Callable[[str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.ride_along = ride_along
        self.on_prompt = on_prompt
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
            raise QueueFullError(f"{self._queue.qsize()} generation requests are already waiting; retry shortly")
        self._queue.put(job)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        batch = DecodeBatch(self.engine, self.ride_along, self.on_prompt)
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
                log.exception("decode step failed; failing the %d sequences in the batch (requests %s)", len(batch),
                              [job.request_id for job in batch.jobs])  # fmt: skip
                batch.fail_all(exc)
            self.active = len(batch)
            if self.on_step is not None:
                self.on_step(len(batch), self._queue.qsize())


In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(eq=False)
class _Pending(Generic[In, Out]):
    items: list[In]
    future: Future[list[Out]] = field(default_factory=Future)


class MicroBatcher(Generic[In, Out]):
    """Runs `fn(items)` for several requests at once: a request waits at most `max_wait` seconds for company.

    `fn` takes a flat list of items (from all requests, in order) and returns one result per item. At most
    `max_queue_items` items wait (not counting the call running now); more are refused with `QueueFullError`,
    so a flood is answered 503 at once instead of waiting tens of seconds.
    """

    def __init__(self, name: str, fn: Callable[[list[In]], list[Out]], max_items: int, max_wait: float,
                 max_queue_items: int = 1_000_000) -> None:  # fmt: skip
        self.fn = fn
        self.max_items = max_items
        self.max_wait = max_wait
        self.max_queue_items = max_queue_items
        self._waiting = 0  # items queued, not yet taken by the loop
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Pending[In, Out] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"microbatch-{name}", daemon=True)
        self._thread.start()

    @property
    def waiting_items(self) -> int:
        return self._waiting

    def submit(self, items: list[In]) -> Future[list[Out]]:
        """Queue the items; the future holds one result per item. Raises QueueFullError when the queue is full."""
        pending: _Pending[In, Out] = _Pending(items)
        with self._lock:
            if self._waiting and self._waiting + len(items) > self.max_queue_items:
                raise QueueFullError(f"{self._waiting} items are already waiting (limit {self.max_queue_items})")
            self._waiting += len(items)
        self._queue.put(pending)
        return pending.future

    def run(self, items: list[In], timeout: float | None = None) -> list[Out]:
        """Blocking: call from a worker thread, never from the event loop."""
        return self.submit(items).result(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _take(self, block: bool, timeout: float | None = None) -> _Pending[In, Out] | None:
        pending = self._queue.get(block, timeout)
        if pending is not None:
            with self._lock:
                self._waiting -= len(pending.items)
        return pending

    def _loop(self) -> None:
        while True:
            first = self._take(block=True)
            if first is None:
                return
            group, count = [first], len(first.items)
            deadline = time.monotonic() + self.max_wait
            stop = False
            while count < self.max_items:
                remaining = deadline - time.monotonic()
                try:
                    nxt = self._take(block=remaining > 0, timeout=remaining if remaining > 0 else None)
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
        group = [p for p in group if p.future.set_running_or_notify_cancel()]  # the waiter may have gone
        items: list[Any] = [item for p in group for item in p.items]
        if not items:
            return
        try:
            results = self.fn(items)
            assert len(results) == len(items)
        except Exception as exc:
            for p in group:
                p.future.set_exception(exc)
            return
        offset = 0
        for p in group:
            p.future.set_result(results[offset : offset + len(p.items)])
            offset += len(p.items)
