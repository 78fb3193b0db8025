"""The word-LM family's serving layer: what a generation request turns into, and back.

    route ──body──> GenerationService.start ──> Generation (a job in the batcher, with its session leased)
                                                  │ pieces()   text as it is decoded (a typed async stream)
                                                  │ result()   waits for the end, saves the session, releases it
    route <──GenerateResponse / SSE events──────────┘

The session format lives here once (`GenerationState`): the LSTM state, the token sampled last (never fed yet),
the sampler's RNG position and the detokenizer's state, so that one call of 50 tokens equals five of 10.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from starlette.concurrency import run_in_threadpool

from ...batching import GenerationJob, run_alone
from ...config import Settings
from ...errors import FeatureUnavailable, NotFound, Overloaded, RequestError
from ...family import State
from ...observability import GENERATIONS_WITHDRAWN, TOKENS_GENERATED
from ...runtime import Runtime
from ...sampling import Sampler, SamplingParams
from ...schemas import ModelRef
from ...sessions import SessionRecord
from ...tokenizer import EOS, Detokenizer, tokenize_line
from .engine import NAME, EncodedText, WordLMEngine
from .inspect import GATES, Inspection, InspectionUnavailable, Inspector, UnknownWord
from .schemas import (
    DEFAULT_TOP_K,
    MAX_INSPECT_TOKENS,
    MAX_NEIGHBORS,
    MAX_NEURONS,
    MAX_NEW_TOKENS,
    GateValues,
    GenerateResponse,
    GenerateStreamRequest,
    InspectRequest,
    InspectResponse,
    LayerSummary,
    Neighbor,
    NeighborsResponse,
    NeuronSummary,
    NeuronValue,
    NextWordRequest,
    NextWordResponse,
    TokenActivations,
    TokenLayer,
    Usage,
    WordProbability,
)

log = logging.getLogger(__name__)
DECIMALS = 6  # activations are float32: more digits would be noise


def limits(engine: WordLMEngine, settings: Settings) -> dict[str, Any]:
    return {"max_prompt_tokens": settings.max_prompt_tokens, "max_new_tokens": MAX_NEW_TOKENS,
            "vocab_size": len(engine.vocab.itos), "max_inspect_tokens": MAX_INSPECT_TOKENS,
            "max_neurons": MAX_NEURONS, "max_neighbors": MAX_NEIGHBORS, "layers": engine.layers,
            "hidden": engine.hidden}  # fmt: skip


def encode(engine: WordLMEngine, text: str, field: str, max_tokens: int) -> EncodedText:
    encoded = engine.encode(text)
    if len(encoded.ids) > max_tokens:
        raise RequestError(f"{field} is {len(encoded.ids)} tokens long; the limit is {max_tokens}", field=field)
    return encoded


# ---- session state --------------------------------------------------------------------------------------------
@dataclass
class GenerationState:
    """What a generation session carries between calls."""

    lstm: State | None  # (h, c) after the last token fed; None before the first call
    pending_token: int | None  # sampled last and not fed yet: it goes first next time
    rng: dict[str, Any]  # the sampler's exact position
    detokenizer: dict[str, Any]
    tokens_seen: int = 0

    @classmethod
    def initial(cls, engine: WordLMEngine, seed: int | None) -> GenerationState:
        return cls(None, None, Sampler(SamplingParams(), seed).rng_state(), Detokenizer(engine.eos_mode).state())

    @classmethod
    def from_record(cls, record: SessionRecord) -> GenerationState:
        d = record.data
        return cls(record.state, d["pending_token"], d["rng"], d["detokenizer"], d.get("tokens_seen", 0))

    def data(self) -> dict[str, Any]:
        """The JSON-able part (the LSTM state travels as the record's float32 bytes)."""
        return {"pending_token": self.pending_token, "rng": self.rng, "detokenizer": self.detokenizer,
                "tokens_seen": self.tokens_seen}  # fmt: skip

    def store_in(self, record: SessionRecord) -> None:
        record.state, record.data = self.lstm, self.data()


class GenerationSessions:
    """The family's `SessionCodec`."""

    def initial_data(self, engine: Any, seed: int | None) -> dict[str, Any]:
        return GenerationState.initial(engine, seed).data()


# ---- one generation -------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Generation:
    """A started generation: its job in the decoder, the prompt read, and the session it continues (leased)."""

    runtime: Runtime
    engine: WordLMEngine
    job: GenerationJob
    prompt: EncodedText | None
    session: SessionRecord | None
    previous: GenerationState | None
    queue_wait_s: float = float("inf")  # longest wait for a slot in the batch (CELLSTATE_BATCH_MAX_QUEUE_WAIT_S)
    _pieces: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    _released: bool = False
    _deadline: float = float("inf")  # event-loop time by which the job must have been admitted

    @property
    def finish_reason(self) -> Literal["length", "stop", "eos"]:
        reason = self.job.generation.finish_reason
        assert reason in ("length", "stop", "eos")
        return reason  # type: ignore[return-value]

    def usage(self) -> Usage:
        prompt = self.prompt
        return Usage(prompt_tokens=len(prompt.ids) if prompt else 0,
                     completion_tokens=self.job.generation.completion_tokens,
                     unknown_tokens=prompt.unknown if prompt else 0)  # fmt: skip

    def response(self) -> GenerateResponse:
        text: str = self.job.generation.text  # type: ignore[attr-defined]
        session_id = self.session.id if self.session else None
        return GenerateResponse(text=text, finish_reason=self.finish_reason, usage=self.usage(),
                                model=ModelRef.of(self.engine.model), session_id=session_id)  # fmt: skip

    async def pieces(self) -> AsyncIterator[list[str]]:
        """The text as it is decoded, in pieces; ends when the generation does (or never got a slot). Each item
        holds every piece that has arrived since the last: one when the reader keeps up, several when it is
        behind the decoder (a busy event loop then writes a stream once for several tokens)."""
        while (piece := await self._next()) is not None:
            group = [piece]
            while not self._pieces.empty():
                if (more := self._pieces.get_nowait()) is None:
                    yield group
                    return
                group.append(more)
            yield group

    async def result(self) -> None:
        """Wait for the end, then count tokens and save the session's new state (raises what decoding raised)."""
        while await self._next() is not None:
            pass
        await self.finish()

    async def _next(self) -> str | None:
        """The next piece (None at the end). A job still queued at its deadline is withdrawn: it ends with an
        Overloaded error (503 with Retry-After, or an in-band `error` event), never waits on unbounded."""
        job = self.job
        if job.admitted:
            return await self._pieces.get()
        remaining = self._deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(self._pieces.get(), timeout=max(remaining, 0.0))
        except TimeoutError:
            if job.admitted:  # it got its slot meanwhile: the deadline no longer applies
                return await self._pieces.get()
            job.cancelled = True  # when the decoder reaches it, it is dropped unread
            job.error = Overloaded(
                f"no slot in the generation batch within {self.queue_wait_s:g} s (CELLSTATE_BATCH_MAX_QUEUE_WAIT_S): "
                "the server is saturated; retry shortly",
                retry_after=max(1, round(self.queue_wait_s / 10)),
            )
            GENERATIONS_WITHDRAWN.labels(family=NAME).inc()
            return None

    def cancel(self) -> None:
        """The client went away: the sequence leaves the batch at the next step; the session keeps its state."""
        if not self.job.done.is_set():
            self.job.cancelled = True
        self.release()

    def release(self) -> None:
        """Give the session back (synchronous: may run while a cancelled request unwinds). Idempotent."""
        if self.session is not None and not self._released:
            self._released = True
            self.runtime.sessions.checkin(self.session.id)

    async def finish(self) -> None:
        """After the last piece: count tokens and save the session's new state (raises what decoding raised)."""
        job = self.job
        if job.error is not None:
            raise job.error
        TOKENS_GENERATED.labels(family=NAME).inc(job.generation.completion_tokens)
        if self.session is not None:
            gen: Any = job.generation
            previous = self.previous
            assert previous is not None
            state = GenerationState(job.final_state, gen.last_id, gen.sampler.rng_state(), gen.detokenizer.state(),
                                    previous.tokens_seen + len(job.feed_ids) + gen.completion_tokens - 1)  # fmt: skip
            state.store_in(self.session)
            await run_in_threadpool(self.runtime.sessions.save, self.session)


class GenerationService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def start(self, body: GenerateStreamRequest, request_id: str | None, stream: bool) -> Generation:
        """Check out the session (if any), build the job and hand it to the decoder. The caller must end the
        returned generation with `result()`/`pieces()` and `release()` (or `cancel()`). Without `stream` the
        pieces are not handed over one by one (one thread hop per token saved): `result()` waits for the end."""
        runtime = self.runtime
        if body.session_id is None:
            if body.prompt is None:
                raise RequestError("prompt: field required (unless session_id is given)", field="prompt")
            engine: WordLMEngine = runtime.engine(NAME)  # type: ignore[assignment]
            return self._submit(self._prepare(body, engine, None, None, request_id), stream)
        session = await run_in_threadpool(runtime.sessions.checkout, body.session_id)
        try:
            engine = runtime.session_engine(session, NAME)  # type: ignore[assignment]
            state = GenerationState.from_record(session)
            return self._submit(self._prepare(body, engine, session, state, request_id), stream)
        except BaseException:
            runtime.sessions.checkin(session.id)
            raise

    def _prepare(self, body: GenerateStreamRequest, engine: WordLMEngine, session: SessionRecord | None,
                 state: GenerationState | None, request_id: str | None) -> Generation:  # fmt: skip
        """What to feed first, from which state, with which sampler and detokenizer."""
        params = SamplingParams(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p)
        max_tokens = self.runtime.settings.max_prompt_tokens
        prompt = encode(engine, body.prompt, "prompt", max_tokens) if body.prompt is not None else None
        prompt_ids = prompt.ids if prompt else []
        if state is None:
            detokenizer, sampler, feed, lstm = (
                Detokenizer(engine.eos_mode),
                Sampler(params, body.seed),
                prompt_ids,
                None,
            )
        else:
            detokenizer = Detokenizer.from_state(state.detokenizer)
            sampler = Sampler(params, body.seed) if body.seed is not None else Sampler.resume(params, state.rng)
            # The token sampled last in the previous call was never fed to the model: it goes first now.
            pending = [state.pending_token] if state.pending_token is not None else []
            feed, lstm = pending + prompt_ids, state.lstm
        if not feed:
            raise RequestError("prompt: required on a session's first call (there is no text to continue yet)",
                               "prompt")  # fmt: skip
        # The session's last call ended its text with <eos> (sampled, never shown): this call starts after it, on a
        # new line or paragraph, unless a prompt comes first.
        lead = detokenizer.feed(EOS) if state and state.pending_token == engine.eos_id and not prompt else ""
        if prompt:
            detokenizer.prime(prompt.tokens)  # quotes and capitalisation continue from the prompt
        generation = engine.new_generation(params, body.max_new_tokens, tuple(body.stop), body.ignore_eos,
                                           sampler=sampler, detokenizer=detokenizer)  # fmt: skip
        generation.text = lead
        job = GenerationJob(generation, feed, lstm, request_id=request_id)
        return Generation(self.runtime, engine, job, prompt, session, state,
                          queue_wait_s=self.runtime.settings.batch_max_queue_wait_s)  # fmt: skip

    def _submit(self, gen: Generation, stream: bool) -> Generation:
        loop = asyncio.get_running_loop()
        gen._deadline = loop.time() + gen.queue_wait_s
        put = gen._pieces.put_nowait
        if stream:
            gen.job.on_piece = lambda piece: loop.call_soon_threadsafe(put, piece)
        gen.job.on_done = lambda _: loop.call_soon_threadsafe(put, None)
        batcher = self.runtime.batchers.get((NAME, gen.engine.model.version))
        if batcher is None:
            loop.run_in_executor(None, run_alone, gen.engine, gen.job)  # batching off: this request runs alone
        else:
            batcher.submit(gen.job)  # QueueFullError: 503 with Retry-After
        return gen


# ---- next word ----------------------------------------------------------------------------------------------
def next_words(engine: WordLMEngine, body: NextWordRequest, max_tokens: int) -> NextWordResponse:
    text = encode(engine, body.text, "text", max_tokens)
    words = engine.next_words(text, body.k)
    return NextWordResponse(words=[WordProbability(word=w, probability=p) for w, p in words],
                            unknown_tokens=text.unknown, model=ModelRef.of(engine.model))  # fmt: skip


# ---- inspection ---------------------------------------------------------------------------------------------
def _values(neurons: list[int], values: list[float]) -> dict[int, float]:
    return {n: round(v, DECIMALS) for n, v in zip(neurons, values, strict=True)}


def inspect(inspector: Inspector, body: InspectRequest) -> InspectResponse:
    """Validate against the model's size, walk the text token by token and summarise each layer."""
    text = inspector.engine.encode(body.text)
    if len(text.ids) > MAX_INSPECT_TOKENS:
        raise RequestError(f"text is {len(text.ids)} tokens long; the limit is {MAX_INSPECT_TOKENS}", field="text")
    if body.layer is not None and body.layer >= inspector.layers:
        raise RequestError(
            f"layer: {body.layer} is out of range; this model's layers are 0..{inspector.layers - 1}", field="layer"
        )
    for i, neuron in enumerate(body.neurons or []):
        if neuron >= inspector.hidden:
            raise RequestError(
                f"neurons.{i}: {neuron} is out of range; each layer has neurons 0..{inspector.hidden - 1}",
                field=f"neurons.{i}",
            )
    layers = list(range(inspector.layers)) if body.layer is None else [body.layer]
    top_k = min(body.top_k_neurons or DEFAULT_TOP_K, inspector.hidden)
    try:
        inspection = inspector.inspect(text, layers, body.neurons, top_k, body.gates)
    except InspectionUnavailable as exc:
        raise FeatureUnavailable(str(exc)) from exc
    mode: Literal["neurons", "top_k"] = "neurons" if body.neurons else "top_k"
    return inspect_response(inspection, mode, inspector.engine.vocab.unk_id, ModelRef.of(inspector.engine.model))


def inspect_response(
    inspection: Inspection, mode: Literal["neurons", "top_k"], unk_id: int, model: ModelRef
) -> InspectResponse:
    text = inspection.text
    summaries = []
    per_token: list[list[TokenLayer]] = [[] for _ in text.ids]
    for report in inspection.layers:
        neurons = report.neurons.tolist()
        magnitude = np.abs(report.hidden)  # (T, K)
        peaks = magnitude.argmax(axis=0).tolist()
        summaries.append(
            LayerSummary(
                layer=report.layer,
                neurons=[
                    NeuronSummary(
                        neuron=n,
                        mean_abs_hidden=round(float(magnitude[:, j].mean()), DECIMALS),
                        peak_hidden=round(float(report.hidden[peaks[j], j]), DECIMALS),
                        peak_position=peaks[j],
                        peak_token=text.tokens[peaks[j]],
                    )
                    for j, n in enumerate(neurons)
                ],
            )
        )
        hidden, cell = report.hidden.tolist(), report.cell.tolist()
        gates = report.gates.tolist() if report.gates is not None else None
        for t, layers in enumerate(per_token):
            entry = TokenLayer(layer=report.layer, hidden=_values(neurons, hidden[t]), cell=_values(neurons, cell[t]))
            if gates is not None:
                entry.gates = GateValues(**{name: _values(neurons, gates[t][g]) for g, name in enumerate(GATES)})
            if report.top_neurons is not None and report.top_hidden is not None:
                entry.top = [
                    NeuronValue(neuron=n, hidden=round(v, DECIMALS))
                    for n, v in zip(report.top_neurons[t].tolist(), report.top_hidden[t].tolist(), strict=True)
                ]
            layers.append(entry)
    tokens = [
        TokenActivations(position=t, token=token, unknown=token_id == unk_id, layers=layers)
        for t, (token, token_id, layers) in enumerate(zip(text.tokens, text.ids, per_token, strict=True))
    ]
    return InspectResponse(mode=mode, layers=summaries, tokens=tokens, unknown_tokens=text.unknown, model=model)


def neighbors(inspector: Inspector, word: str, k: int) -> NeighborsResponse:
    tokens = tokenize_line(word)
    if len(tokens) != 1:
        raise RequestError(
            f"word: {word!r} is {len(tokens)} tokens for the model's tokenizer; give one word", field="word"
        )
    try:
        found = inspector.neighbors(tokens[0], word, k)
    except InspectionUnavailable as exc:
        raise FeatureUnavailable(str(exc)) from exc
    except UnknownWord as exc:
        raise NotFound(str(exc)) from exc
    near = [Neighbor(word=w, similarity=round(s, DECIMALS)) for w, s in found]
    return NeighborsResponse(word=tokens[0], neighbors=near, model=ModelRef.of(inspector.engine.model))
