"""Word-LM routes: generation (JSON or streamed), next-word suggestions, and a look inside the LSTM."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from ...batching import QueueFullError
from ...dependencies import RequestIdDep, RuntimeDep, SettingsDep, engine_for
from ...errors import FeatureUnavailable, ModelUnavailable, Overloaded, documented
from ...schemas import ModelRef
from ...sessions import SessionBusyError, SessionNotFoundError, SessionStoreUnavailable
from . import service
from .engine import NAME, WordLMEngine
from .inspect import Inspector, InspectorCache
from .schemas import (
    MAX_NEIGHBORS,
    DoneEvent,
    ErrorEvent,
    GenerateRequest,
    GenerateResponse,
    GenerateStreamRequest,
    InspectRequest,
    InspectResponse,
    NeighborsResponse,
    NextWordRequest,
    NextWordResponse,
    TokenEvent,
)

log = logging.getLogger(__name__)
WordLMDep = Annotated[WordLMEngine, Depends(engine_for(NAME))]
GENERATION_ERRORS = documented(ModelUnavailable, QueueFullError, SessionNotFoundError, SessionBusyError,
                               SessionStoreUnavailable)  # fmt: skip

SSE_EXAMPLE = (
    'event: token\ndata: {"text": " sitting"}\n\n'
    'event: token\ndata: {"text": " by"}\n\n'
    'event: done\ndata: {"finish_reason": "length", "usage": {"prompt_tokens": 8, "completion_tokens": 2, '
    '"unknown_tokens": 0}, "model": {"name": "wordlm-2x400", "version": 1}, "session_id": null}\n\n'
)


def _event(name: str, model: str) -> dict[str, object]:
    """One Server-Sent Event: its `event` name and its `data`, a JSON document of the given schema."""
    data = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": f"#/components/schemas/{model}"},
    }
    return {"type": "object", "title": model, "required": ["event", "data"],
            "properties": {"event": {"const": name}, "data": data}}  # fmt: skip


# OpenAPI 3.1 cannot tell a stream's events from its body (3.2's `itemSchema` is refused by 3.1 validators), so the
# schema takes both readings: a client that reads the whole body gets text (the first branch), and SSE-aware tools
# (schemathesis) check each event, an object, against the others, in JSON Schema 2020-12: an event name and a text
# field holding JSON of the named schema.
SSE_SCHEMA = {
    "description": "one Server-Sent Event: `token` (data: TokenEvent) for each piece of text, then one `done` "
    "(data: DoneEvent), or `error` (data: ErrorEvent) if generation fails after it started",
    "anyOf": [
        {"type": "string", "title": "EventStreamText", "description": "the whole stream, as text"},
        _event("token", "TokenEvent"),
        _event("done", "DoneEvent"),
        _event("error", "ErrorEvent"),
    ],
}


# Errors that can end a stream after it started (the session was deleted or the store failed while decoding).
STREAM_ERRORS: dict[type[Exception], str] = {
    SessionNotFoundError: "session_not_found",
    SessionStoreUnavailable: "session_store_unavailable",
    Overloaded: "overloaded",  # no slot in the batch within CELLSTATE_BATCH_MAX_QUEUE_WAIT_S
}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Runs inside the app's lifespan (after the models are loaded): one Inspector per served version, made on use.
    app.state.inspectors = InspectorCache()
    yield


router = APIRouter(lifespan=lifespan)


@router.post("/generate", response_model=GenerateResponse, tags=["text"], responses=GENERATION_ERRORS)
async def generate(
    body: GenerateRequest, request: Request, runtime: RuntimeDep, rid: RequestIdDep
) -> GenerateResponse | Response:
    """Continue a prompt or a session with the word language model (JSON; see /generate/stream for SSE)."""
    gen = await service.GenerationService(runtime).start(body, rid, stream=False)
    watch = asyncio.ensure_future(_disconnected(request))
    done = asyncio.ensure_future(gen.result())
    try:
        await asyncio.wait({watch, done}, return_when=asyncio.FIRST_COMPLETED)
        if not done.done():  # the client has gone: stop decoding at the next step; the session is unchanged
            gen.cancel()
            done.cancel()
            return Response(status_code=499)  # nobody reads it: the access log's "client closed the request"
        done.result()
    finally:
        watch.cancel()
        gen.release()  # synchronous: an await here could be cancelled again
    return gen.response()


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read, so only `http.disconnect` comes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def sse(event: str, data: BaseModel) -> str:
    return f"event: {event}\ndata: {json.dumps(data.model_dump())}\n\n"


@router.post(
    "/generate/stream",
    tags=["text"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": SSE_SCHEMA,
                                                        "example": SSE_EXAMPLE}},
                     "description": "Server-Sent Events: `token` events, then `done` (or `error`)"},
               **GENERATION_ERRORS},
)  # fmt: skip
async def generate_stream(body: GenerateStreamRequest, runtime: RuntimeDep, rid: RequestIdDep) -> StreamingResponse:
    """Continue a prompt or a session, streamed as Server-Sent Events: one `token` event per piece, then `done`."""
    gen = await service.GenerationService(runtime).start(body, rid, stream=True)
    return StreamingResponse(_events(gen, rid), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip


async def _events(gen: service.Generation, rid: str | None) -> AsyncIterator[str]:
    """A client that disconnects cancels this generator: its sequence leaves the batch at the next step and a
    session keeps the state it had before this call."""
    try:
        async for pieces in gen.pieces():
            yield "".join(sse("token", TokenEvent(text=piece)) for piece in pieces)
        try:
            await gen.finish()
        except Exception as exc:  # the stream has started: report in-band, log the cause with the request id
            kind = STREAM_ERRORS.get(type(exc))
            if kind is None:
                log.exception("generation failed after its stream started (request %s)", rid)
            yield sse("error", ErrorEvent(error=kind or "internal_error", message=str(exc) if kind else
                                          "generation failed (see the server log for this request id)"))  # fmt: skip
            return
        yield sse("done", DoneEvent(finish_reason=gen.finish_reason, usage=gen.usage(),
                                    model=ModelRef.of(gen.engine.model),
                                    session_id=gen.session.id if gen.session else None))  # fmt: skip
    finally:
        gen.cancel()  # no-op when it finished; releases the session either way


@router.post("/next-word", response_model=NextWordResponse, tags=["text"], responses=documented(ModelUnavailable))
def next_word(body: NextWordRequest, engine: WordLMDep, settings: SettingsDep) -> NextWordResponse:
    """The k most likely next words after a text, with their probabilities."""
    return service.next_words(engine, body, settings.max_prompt_tokens)


def inspector_for(request: Request, engine: WordLMDep) -> Inspector:
    cache: InspectorCache = request.app.state.inspectors
    return cache.get(engine)


InspectorDep = Annotated[Inspector, Depends(inspector_for)]
INSPECTION_ERRORS = documented(ModelUnavailable, FeatureUnavailable)


# Plain `def` routes: they run in the thread pool, so the token-by-token walk never blocks the event loop.
@router.post("/inspect", response_model=InspectResponse, tags=["inspection"], responses=INSPECTION_ERRORS)
def inspect_activations(body: InspectRequest, inspector: InspectorDep) -> InspectResponse:
    """Per-token hidden and cell activations (and gates) of the word language model's LSTM layers."""
    return service.inspect(inspector, body)


@router.get(
    "/embeddings/neighbors",
    response_model=NeighborsResponse,
    tags=["inspection"],
    responses={**INSPECTION_ERRORS, **documented(s404="the word is not in the model's vocabulary")},
)
def embedding_neighbors(
    inspector: InspectorDep,
    word: Annotated[str, Query(min_length=1, max_length=64, description="one word, e.g. `queen`")],
    k: Annotated[int, Query(ge=1, le=MAX_NEIGHBORS, description="how many neighbours")] = 10,
) -> NeighborsResponse:
    """The words nearest to a word by cosine similarity of the word model's input embeddings."""
    return service.neighbors(inspector, word, k)
