"""`python -m service`: serve the models on $HOST:$PORT (defaults 127.0.0.1:8000)."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .config import Settings
from .observability import configure_logging


def main() -> None:
    settings = Settings()
    configure_logging(settings)  # text or JSON, with request ids; uvicorn's loggers go through it too
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # keep the logging configured above
        access_log=False,  # the app writes its own access log, with the request id (service/observability.py)
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,  # SIGTERM: finish in-flight requests
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


if __name__ == "__main__":
    main()
