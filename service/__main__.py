"""`python -m service`: serve the models on $HOST:$PORT (defaults 127.0.0.1:8000)."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .config import Settings
from .connections import GuardedHttpToolsProtocol, effective_max_connections, install_log_guards, raise_fd_limit
from .observability import configure_logging


def main() -> None:
    settings = Settings()
    configure_logging(settings)  # text or JSON, with request ids; uvicorn's loggers go through it too
    install_log_guards()  # a connection flood logs one line per 10 s, not one per bad request
    max_connections = effective_max_connections(settings, raise_fd_limit())
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
        # Connection hygiene (service/connections.py): httptools with header/body deadlines, a header size limit
        # and a connection cap that answers 503 itself; uvicorn's own limit_concurrency is not used (it counts idle
        # connections as requests and answers in plain text).
        http=GuardedHttpToolsProtocol.configure(settings, max_connections),
        timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type]  # uvicorn's hint says int
        loop="uvloop",
    )


if __name__ == "__main__":
    main()
