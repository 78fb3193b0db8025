"""Text generation and next-word suggestions from the word language model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ..dependencies import SettingsDep, engine_for
from ..engines.wordlm import EncodedText, WordLMEngine
from ..errors import RequestError
from ..sampling import SamplingParams
from ..schemas import (
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    ModelRef,
    NextWordRequest,
    NextWordResponse,
    Usage,
    WordProbability,
)

router = APIRouter(tags=["text"], responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
WordLMDep = Annotated[WordLMEngine, Depends(engine_for("wordlm"))]


def _model_ref(engine: WordLMEngine) -> ModelRef:
    return ModelRef(name=engine.model.manifest.name, version=engine.model.version)


def _encode(engine: WordLMEngine, text: str, field: str, max_tokens: int) -> EncodedText:
    encoded = engine.encode(text)
    if len(encoded.ids) > max_tokens:
        raise RequestError(f"{field} is {len(encoded.ids)} tokens long; the limit is {max_tokens}", field=field)
    return encoded


# Plain `def` routes run in the thread pool: inference never blocks the event loop.
@router.post("/generate", response_model=GenerateResponse)
def generate(body: GenerateRequest, engine: WordLMDep, settings: SettingsDep) -> GenerateResponse:
    """Continue a prompt with the word language model."""
    prompt = _encode(engine, body.prompt, "prompt", settings.max_prompt_tokens)
    params = SamplingParams(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p)
    result = engine.generate(prompt, params, body.seed, body.max_new_tokens, tuple(body.stop), body.ignore_eos)
    return GenerateResponse(
        text=result.text,
        finish_reason=result.finish_reason,
        usage=Usage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            unknown_tokens=result.unknown_tokens,
        ),
        model=_model_ref(engine),
    )


@router.post("/next-word", response_model=NextWordResponse)
def next_word(body: NextWordRequest, engine: WordLMDep, settings: SettingsDep) -> NextWordResponse:
    """The k most likely next words after a text, with their probabilities."""
    text = _encode(engine, body.text, "text", settings.max_prompt_tokens)
    words = engine.next_words(text, body.k)
    return NextWordResponse(
        words=[WordProbability(word=w, probability=p) for w, p in words],
        unknown_tokens=text.unknown,
        model=_model_ref(engine),
    )
