"""The sentiment family: a BiLSTM classifier of short texts, micro-batched."""

from __future__ import annotations

from typing import Any

from ...config import Settings
from ...family import Family, OneShot
from .engine import NAME, SentimentEngine
from .routes import router
from .schemas import MAX_TEXT_CHARS, MAX_TEXTS


def limits(engine: SentimentEngine, settings: Settings) -> dict[str, Any]:
    return {"max_texts": MAX_TEXTS, "max_text_chars": MAX_TEXT_CHARS, "max_tokens_read": engine.max_tokens,
            "labels": list(engine.labels)}  # fmt: skip


def classify(engine: Any, texts: list[str]) -> list[Any]:
    return list(engine.classify(texts))


FAMILY = Family(name=NAME, engine=SentimentEngine, router=router, batching=OneShot(classify), limits=limits)
