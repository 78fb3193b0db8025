"""Service configuration: one pydantic-settings class, built by the app factory (never at import)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting reads `CELLSTATE_<NAME>` from the environment (or a `.env` file)."""

    model_config = SettingsConfigDict(env_prefix="CELLSTATE_", env_file=".env", extra="ignore")

    models_dir: Path = Field(Path("models"), description="root of models/<family>/<version>/")
    pinned_versions: dict[str, int] = Field(
        default_factory=dict, description='serve these versions instead of the highest, e.g. {"wordlm": 1}'
    )
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("CELLSTATE_HOST", "HOST"))
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("CELLSTATE_PORT", "PORT"))
    intra_op_threads: int = Field(
        default_factory=lambda: len(os.sched_getaffinity(0)),
        ge=1,
        description="onnxruntime threads per inference call (default: the cores)",
    )
    allow_spinning: bool = Field(
        False, description="let idle onnxruntime threads spin (off: the web server shares the cores)"
    )
    max_prompt_tokens: int = Field(2048, ge=1, description="longest prompt after tokenization")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
