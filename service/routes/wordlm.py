"""Text generation (stateless or on a session, whole or streamed) and next-word suggestions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..batching import GenerationJob, QueueFullError, run_alone
from ..dependencies import SettingsDep, engine_for
from ..errors import RequestError
from ..families.wordlm.engine import EncodedText, WordLMEngine
from ..observability import TOKENS_GENERATED
from ..runtime import Runtime
from ..sampling import Sampler, SamplingParams
from ..schemas import (
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    ModelRef,
    NextWordRequest,
    NextWordResponse,
    Usage,
    ValidationErrorResponse,
    WordProbability,
)
from ..sessions import SessionRecord
from ..tokenizer import Detokenizer

FAMILY = "wordlm"

router = APIRouter(
    tags=["text"],
    responses={
        422: {"model": ValidationErrorResponse, "description": "invalid request; `detail` names each field"},
        503: {"model": ErrorResponse, "description": "no word model loaded, or the generation queue is full"},
    },
)
WordLMDep = Annotated[WordLMEngine, Depends(engine_for(FAMILY))]

SSE_EXAMPLE = (
    'event: token\ndata: {"text": " sitting"}\n\n'
    'event: token\ndata: {"text": " by"}\n\n'
    'event: done\ndata: {"finish_reason": "length", "usage": {"prompt_tokens": 8, "completion_tokens": 2, '
    '"unknown_tokens": 0}, "model": {"name": "wordlm-2x400", "version": 1}, "session_id": null}\n\n'
)


def model_ref(engine: WordLMEngine) -> ModelRef:
    return ModelRef(name=engine.model.manifest.name, version=engine.model.version)


def encode(engine: WordLMEngine, text: str, field: str, max_tokens: int) -> EncodedText:
    encoded = engine.encode(text)
    if len(encoded.ids) > max_tokens:
        raise RequestError(f"{field} is {len(encoded.ids)} tokens long; the limit is {max_tokens}", field=field)
    return encoded


@dataclass
class PreparedGeneration:
    engine: WordLMEngine
    job: GenerationJob
    prompt: EncodedText | None
    session: SessionRecord | None = None


def prepare(body: GenerateRequest, engine: WordLMEngine, session: SessionRecord | None, max_tokens: int
            ) -> PreparedGeneration:  # fmt: skip
    """Build the job: what to feed first, from which state, with which sampler and detokenizer."""
    params = SamplingParams(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p)
    prompt = encode(engine, body.prompt, "prompt", max_tokens) if body.prompt is not None else None
    prompt_ids = prompt.ids if prompt else []
    if session is None:
        detokenizer, sampler, feed, state = Detokenizer(), Sampler(params, body.seed), prompt_ids, None
    else:
        data = session.data
        detokenizer = Detokenizer.from_state(data["detokenizer"])
        sampler = Sampler(params, body.seed) if body.seed is not None else Sampler.resume(params, data["rng"])
        # The token sampled last in the previous call was never fed to the model: it goes first now.
        pending = data.get("pending_token")
        feed, state = ([pending] if pending is not None else []) + prompt_ids, session.state
    if not feed:
        raise RequestError("prompt: required on a session's first call (there is no text to continue yet)", "prompt")
    if prompt:
        detokenizer.prime(prompt.tokens)  # quotes and capitalisation continue from the prompt
    generation = engine.new_generation(params, body.max_new_tokens, tuple(body.stop), body.ignore_eos,
                                       sampler=sampler, detokenizer=detokenizer)  # fmt: skip
    return PreparedGeneration(engine, GenerationJob(generation, feed, state), prompt, session)


def session_data(prepared: PreparedGeneration) -> dict[str, Any]:
    generation = prepared.job.generation
    return {
        "pending_token": generation.last_id,
        "rng": generation.sampler.rng_state(),
        "detokenizer": generation.detokenizer.state(),
        "tokens_seen": (prepared.session.data.get("tokens_seen", 0) if prepared.session else 0)
        + len(prepared.job.feed_ids)
        + generation.completion_tokens
        - 1,
    }


def usage(prepared: PreparedGeneration) -> Usage:
    prompt = prepared.prompt
    return Usage(prompt_tokens=len(prompt.ids) if prompt else 0,
                 completion_tokens=prepared.job.generation.completion_tokens,
                 unknown_tokens=prompt.unknown if prompt else 0)  # fmt: skip


async def run_job(runtime: Runtime, prepared: PreparedGeneration, stream: bool) -> asyncio.Queue[tuple[str, Any]]:
    """Start decoding; events ("token", text) and finally ("done", job) arrive on the returned queue."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    job = prepared.job
    if stream:
        job.on_piece = lambda piece: loop.call_soon_threadsafe(events.put_nowait, ("token", piece))
    job.on_done = lambda done: loop.call_soon_threadsafe(events.put_nowait, ("done", done))
    batcher = runtime.batchers.get((FAMILY, prepared.engine.model.version))
    if batcher is None:
        loop.run_in_executor(None, run_alone, prepared.engine, job)  # batching off: this request runs alone
    else:
        try:
            batcher.submit(job)
        except QueueFullError as exc:
            raise HTTPException(503, f"{exc}; retry shortly", headers={"Retry-After": "1"}) from exc
    return events


async def finish(runtime: Runtime, prepared: PreparedGeneration) -> None:
    """After a completed generation: count tokens and store the session's new state."""
    job = prepared.job
    if job.error is not None:
        raise job.error
    TOKENS_GENERATED.labels(family=FAMILY).inc(job.generation.completion_tokens)
    if prepared.session is not None:
        prepared.session.state = job.final_state
        prepared.session.data = session_data(prepared)
        await run_in_threadpool(runtime.sessions.save, prepared.session)


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={
        200: {"content": {"text/event-stream": {"example": SSE_EXAMPLE}},
              "description": "the continuation; with `stream: true`, Server-Sent Events"},
        404: {"model": ErrorResponse, "description": "unknown or expired session_id"},
        409: {"model": ErrorResponse, "description": "the session is busy with another request"},
    },
)  # fmt: skip
async def generate(body: GenerateRequest, request: Request, settings: SettingsDep) -> Any:
    """Continue a prompt or a session with the word language model, whole or streamed."""
    runtime: Runtime = request.app.state.runtime
    session: SessionRecord | None = None
    if body.session_id is None:
        if body.prompt is None:
            raise RequestError("prompt: field required (unless session_id is given)", field="prompt")
        engine = runtime.engine(FAMILY)
    else:
        session = await run_in_threadpool(runtime.sessions.checkout, body.session_id)
    try:
        if session is not None:
            engine = runtime.session_engine(session, FAMILY)
        prepared = prepare(body, engine, session, settings.max_prompt_tokens)
        events = await run_job(runtime, prepared, body.stream)
    except BaseException:
        if session is not None:
            runtime.sessions.checkin(session.id)
        raise
    if body.stream:
        return StreamingResponse(stream_events(runtime, prepared, events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
    try:
        await wait_done(events, prepared.job)
        await finish(runtime, prepared)
    finally:
        if session is not None:
            runtime.sessions.checkin(session.id)  # synchronous: an await here could be cancelled again
    generation = prepared.job.generation
    return GenerateResponse(text=generation.text, finish_reason=generation.finish_reason,
                            usage=usage(prepared), model=model_ref(prepared.engine),
                            session_id=session.id if session else None)  # fmt: skip


async def wait_done(events: asyncio.Queue[tuple[str, Any]], job: GenerationJob) -> None:
    try:
        while (await events.get())[0] != "done":
            pass
    except asyncio.CancelledError:
        job.cancelled = True  # the request went away: free the batch slot at the next step
        raise


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def stream_events(runtime: Runtime, prepared: PreparedGeneration, events: asyncio.Queue[tuple[str, Any]]
                        ) -> AsyncIterator[str]:  # fmt: skip
    """SSE: `token` events, then `done` (or `error`). A client that disconnects cancels this generator: its
    sequence leaves the batch at the next step and a session keeps the state it had before this call."""
    job = prepared.job
    session = prepared.session
    try:
        while True:
            kind, payload = await events.get()
            if kind == "token":
                yield sse("token", {"text": payload})
                continue
            try:
                await finish(runtime, prepared)
            except Exception as exc:  # the stream has started: report in-band
                yield sse("error", {"error": "internal_error", "message": str(exc) or type(exc).__name__})
                return
            yield sse("done", {"finish_reason": job.generation.finish_reason, "usage": usage(prepared).model_dump(),
                               "model": model_ref(prepared.engine).model_dump(),
                               "session_id": session.id if session else None})  # fmt: skip
            return
    finally:
        if not job.done.is_set():
            job.cancelled = True
        if session is not None:
            runtime.sessions.checkin(session.id)  # synchronous: this generator may be closing after a cancel


# Plain `def` route: runs in the thread pool, so inference never blocks the event loop.
@router.post("/next-word", response_model=NextWordResponse)
def next_word(body: NextWordRequest, engine: WordLMDep, settings: SettingsDep) -> NextWordResponse:
    """The k most likely next words after a text, with their probabilities."""
    text = encode(engine, body.text, "text", settings.max_prompt_tokens)
    words = engine.next_words(text, body.k)
    return NextWordResponse(
        words=[WordProbability(word=w, probability=p) for w, p in words],
        unknown_tokens=text.unknown,
        model=model_ref(engine),
    )
