"""The word-LM family: next-word language model served by stateful, continuously batched generation."""

from __future__ import annotations

from ...family import Continuous, Family
from .engine import NAME, WordLMEngine
from .routes import router
from .schemas import DoneEvent, ErrorEvent, TokenEvent
from .service import GenerationSessions, limits

FAMILY = Family(name=NAME, engine=WordLMEngine, router=router, batching=Continuous(), session=GenerationSessions(),
                limits=limits, stream_models=(TokenEvent, DoneEvent, ErrorEvent))  # fmt: skip
