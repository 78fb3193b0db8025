"""Service configuration: one pydantic-settings class, built by the app factory (never at import)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PRECISION_CHOICES = ("auto", "fp32", "int8")


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
    precision: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: {"*": "auto"},
        description="fp32, int8 or auto (each model version's own choice: the fastest within its quality tolerance), "
        'for every family, with per-family overrides: "int8", "fp32,forecast=int8", "auto,wordlm=fp32"',
    )
    max_prompt_tokens: int = Field(2048, ge=1, description="longest prompt after tokenization")
    # Batching
    batching: bool = Field(
        True,
        description="continuous batching of generation and micro-batching of one-shot "
        "models (off: every request runs alone in the thread pool)",
    )
    batch_max_size: int = Field(64, ge=1, le=1024, description="sequences stepped together in one call")
    batch_max_queue: int = Field(1024, ge=1, description="generation requests waiting for a slot before 503")
    batch_max_queue_wait_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="a generation request still waiting for a slot in the batch after this long is answered 503 "
        "with Retry-After (an `error` event, `overloaded`, when streamed) and leaves the queue",
    )
    batch_ride_along: bool = Field(
        True,
        description="let a new prompt be read in the busy batch, one token per step, when that delays everybody "
        "less than a prefill call (more tokens/s, a later first token for that prompt); off: always prefill",
    )
    # 0: a call takes every request already waiting and never waits for more. Under load requests pile up while
    # the previous call runs, so batches form anyway; alone, a request pays no wait (BENCHMARKS.md: 2 ms halved
    # single-client /sentiment throughput and gained nothing at 32 clients).
    microbatch_max_wait_ms: float = Field(
        0.0, ge=0, le=1000, description="how long a /sentiment or /forecast request waits for others to share its call"
    )
    microbatch_max_items: int = Field(256, ge=1, description="items (texts, series) per micro-batched call")
    microbatch_max_queue_items: int = Field(
        2048, ge=1, description="items (texts, series) waiting for a /sentiment or /forecast call before 503"
    )
    # Sessions
    session_store: Literal["memory", "redis"] = Field("memory", description="where session state lives")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="used when session_store=redis")
    session_idle_ttl_s: float = Field(900, gt=0, description="a session unused this long expires")
    session_max_lifetime_s: float = Field(86_400, gt=0, description="a session expires this long after creation")
    session_capacity: int = Field(10_000, ge=1, description="most live sessions; more -> 503 with Retry-After")
    session_store_timeout_s: float = Field(
        1.0, gt=0, le=60, description="a session-store (Redis) call that takes longer fails: 503 naming the store"
    )
    session_lease_s: float = Field(
        10.0, gt=0, le=600, description="a request's hold on its session lapses this long after its last renewal"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # ---- packaging: HTTP edge, security and observability (list settings take JSON or comma-separated values) ----
    log_format: Literal["text", "json"] = Field(
        "text", description="text: readable lines for development; json: one JSON object per line (containers)"
    )
    access_log: bool = Field(True, description="log one line per request (method, path, status, ms, request id)")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description='origins allowed by CORS, e.g. "https://app.example" or "*" (empty: none)'
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="when set, every route but /health, /ready, /metrics and the docs needs "
        "`Authorization: Bearer <key>` or `X-API-Key: <key>`",
    )
    admin_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="keys for the /admin/ routes (`X-Admin-Key: <key>`); API keys do not open them, and with none "
        "set they answer 403",
    )
    max_request_bytes: int = Field(1_048_576, ge=1, description="largest request body; larger bodies get 413")
    # Connection hygiene (service/connections.py): deadlines for slow or stalled clients and a connection cap.
    header_timeout_s: float = Field(
        10.0, gt=0, le=600, description="request line and headers must arrive within this long, else 408 and close"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="a request body must arrive within this long after its headers, else 408"
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, le=600, description="an idle keep-alive connection is closed after this long"
    )
    max_connections: int = Field(
        2048, ge=1, description="open connections; more are answered 503 with Retry-After at once and closed"
    )
    graceful_shutdown_seconds: int = Field(
        20, ge=0, description="after SIGTERM, how long in-flight requests may take before the server stops"
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="proxies trusted for X-Forwarded-For/-Proto (comma-separated IPs/networks, or * behind a "
        "private load balancer)",
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _parse_precision(cls, value: Any) -> dict[str, str]:
        # "int8" | "fp32,forecast=int8" | {"*": "int8", "forecast": "fp32"}: "*" is every family not named.
        items = value.items() if isinstance(value, dict) else (
            (k.strip(), v.strip()) if "=" in part else ("*", part.strip())
            for part in str(value).split(",") if part.strip()
            for k, _, v in [part.partition("=")]
        )  # fmt: skip
        policy = {"*": "auto"}
        for family, choice in items:
            if choice not in PRECISION_CHOICES:
                where = "" if family == "*" else f" for {family}"
                raise ValueError(f"unknown precision {choice!r}{where}: use one of {', '.join(PRECISION_CHOICES)}")
            if not family:
                raise ValueError(f"precision override {value!r} names no family")
            policy[family] = choice
        return policy

    def precision_for(self, family: str) -> str:
        """fp32, int8 or auto for this family."""
        return self.precision.get(family, self.precision["*"])

    @field_validator("cors_origins", "api_keys", "admin_keys", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        # Environment values: a JSON list, or comma-separated ("a,b"); blank items are dropped.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value
