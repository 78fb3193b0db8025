"""One engine per model family: preprocess -> run (onnxruntime) -> postprocess.

`ENGINES` maps a family name (the directory under models/) to the class that serves it; adding a family means
adding an engine module and a router, and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .families.forecast.engine import ForecastEngine
from .families.sentiment.engine import SentimentEngine
from .families.wordlm.engine import WordLMEngine
from .registry import LoadedModel

ENGINES: dict[str, Callable[[LoadedModel], Any]] = {
    "wordlm": WordLMEngine,
    "sentiment": SentimentEngine,
    "forecast": ForecastEngine,
}
