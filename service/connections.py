"""Connection hygiene for uvicorn's HTTP/1.1 server (httptools on uvloop): deadlines, limits, a connection cap.

uvicorn 0.54 times out only an *idle keep-alive* connection (`timeout_keep_alive`, armed after a response). A
connection that never sends its headers, or sends a body shorter than its Content-Length, is held forever, and its
httptools protocol sets no limit on the size of a request's headers. `GuardedHttpToolsProtocol` adds what is missing:

* a header deadline: the request line and headers must arrive within `header_timeout_s` of the connection being
  made (or of the previous response): else `408` (if some bytes came) and the connection is closed;
* a head limit: a request line and headers over 16 KiB get `400` (h11's limit, which the service had before);
* a body deadline: the whole body must arrive within `body_timeout_s` after the headers: else `408`, the app's
  `receive()` gets `http.disconnect`, and the connection is closed;
* a connection cap: past `max_connections` open connections, a new one is answered `503` with `Retry-After` as soon
  as its request line arrives (at most 1 s later) and closed, unless it is a probe (`GET /health`, `GET /ready`),
  which is served: a connection flood must not get the pod restarted or taken out of rotation;
* malformed requests get the service's JSON error (`400`), not uvicorn's plain text;

and `install_log_guards` turns the per-event warnings that a flood produces (invalid requests, the deadlines
above) into one line per kind every 10 s, with the count. Out of file descriptors, libuv (under uvloop) accepts and
closes the connections it has no descriptor for, without a word; the cap is lowered to fit the open-file limit so
that it, not EMFILE, refuses first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .config import Settings

log = logging.getLogger("service.connections")

FD_RESERVE = 64  # descriptors kept for model files, the log, Redis and the listening socket
ACCEPT_IN_FLIGHT = 64  # sockets accepted but not yet seen by the protocol, or refused and still closing
MAX_HEAD_BYTES = 16 * 1024  # request line + headers (h11's default limit, which uvicorn used before)
REFUSE_LINGER_MAX = 64  # over-cap connections kept open (up to 1 s) for their request line: probes pass, others 503
# Served even past the connection cap: the orchestrator's probes (Kubernetes, Docker HEALTHCHECK).
PROBE_REQUESTS = tuple(f"GET {path}{end}".encode() for path in ("/health", "/ready") for end in " ?")


class RateLimitedLog:
    """At most one line per `every` seconds for one kind of event; the lines in between are counted."""

    def __init__(self, logger: logging.Logger, message: str, every: float = 10.0) -> None:
        self.logger = logger
        self.message = message
        self.every = every
        self.last = -float("inf")
        self.suppressed = 0

    def __call__(self, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.suppressed += 1
            return
        more = f" (and {self.suppressed} more in the last {now - self.last:.0f} s)" if self.suppressed else ""
        self.suppressed = 0
        self.last = now
        self.logger.log(level, "%s%s", self.message, more)


class _FloodFilter(logging.Filter):
    """Drop repeats (and tracebacks) of the given messages: one line per `every` seconds with the count."""

    def __init__(self, prefixes: tuple[str, ...], every: float = 10.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.every = every
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        prefix = next((p for p in self.prefixes if text.startswith(p)), None)
        if prefix is None:
            return True
        now = time.monotonic()
        if now - self.last.get(prefix, -float("inf")) < self.every:
            self.suppressed[prefix] = self.suppressed.get(prefix, 0) + 1
            return False
        count = self.suppressed.pop(prefix, 0)
        self.last[prefix] = now
        # A repeated traceback says nothing new; keep the line short.
        record.exc_info = None
        record.exc_text = None
        if count:
            record.msg = f"{text} (and {count} more in the last {self.every:.0f} s or longer)"
        return True


def install_log_guards() -> None:
    """Rate-limit the messages a connection flood repeats (uvicorn's bad requests)."""
    logging.getLogger("uvicorn.error").addFilter(
        _FloodFilter(("Invalid HTTP request received.", "Exceeded concurrency limit.", "Unsupported upgrade request."))
    )


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one (a container often starts low); return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # pragma: no cover - platform refuses; keep the soft limit
            pass
    return soft


def effective_max_connections(settings: Settings, fd_limit: int) -> int:
    """The configured cap, lowered to fit the open-file limit (so that the cap, not EMFILE, refuses first).

    Besides the open connections, a burst of accepted sockets not yet seen by the protocol and the refused ones
    still lingering need descriptors too."""
    cap = settings.max_connections
    room = max(1, fd_limit - FD_RESERVE - ACCEPT_IN_FLIGHT - REFUSE_LINGER_MAX)
    if cap > room:
        log.warning("CELLSTATE_MAX_CONNECTIONS=%d does not fit the open-file limit %d; using %d", cap, fd_limit, room)
        return room
    return cap


def _raw_response(status: int, reason: str, error: str, message: str, extra: dict[str, str] | None = None) -> bytes:
    body = json.dumps({"error": error, "message": message, "request_id": None}).encode()
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        "connection": "close",
        **(extra or {}),
    }
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header/body deadlines, a header size limit and a connection cap
    (configured by `configure`). httptools (llhttp) parses in C: about 0.5 ms less CPU per request than h11."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 2048
    refuse_linger_s: float = 1.0

    _log_header = RateLimitedLog(log, "closed connections whose request headers did not arrive in time")
    _log_body = RateLimitedLog(log, "closed connections whose request body did not arrive in time")
    _log_refused = RateLimitedLog(log, "refused connections over the connection cap (CELLSTATE_MAX_CONNECTIONS)")

    @classmethod
    def configure(cls, settings: Settings, max_connections: int) -> type[GuardedHttpToolsProtocol]:
        """A subclass bound to these settings (uvicorn instantiates the protocol class once per connection)."""
        attrs: dict[str, Any] = {
            "header_timeout_s": settings.header_timeout_s,
            "body_timeout_s": settings.body_timeout_s,
            "max_connections": max_connections,
        }
        return type("ConfiguredGuardedHttpToolsProtocol", (cls,), attrs)

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._refusing = False
        self._counted = False
        # Where the parser is: between messages or inside a request line + headers (`_in_head`), how many bytes
        # of that head have come, whether a new request has begun, how many messages are complete.
        self._in_head = True
        self._head_bytes = 0
        self._begun = False
        self._completed = 0

    # ---- connection cap ----
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        over_cap = len(self.connections) >= self.max_connections
        super().connection_made(transport)
        if over_cap:
            self._over_cap()
            return
        self._arm_header_timer()

    _lingering = 0  # over-cap connections still open, in this process

    def _over_cap(self) -> None:
        """Past the cap: wait up to a second for the request line. A probe (GET /health, GET /ready) is served, so
        that a connection flood does not make the orchestrator restart the pod or take it out of rotation; anything
        else gets 503 with Retry-After once its request is read (closing then sends FIN, not an RST that could eat
        the answer). Past REFUSE_LINGER_MAX such connections, 503 and close at once: descriptors come first."""
        self._log_refused()
        if GuardedHttpToolsProtocol._lingering >= REFUSE_LINGER_MAX:
            self._refuse()
            return
        GuardedHttpToolsProtocol._lingering += 1
        self._counted = True
        self._refusing = True
        self.loop.call_later(self.refuse_linger_s, self._refuse)

    def _uncount(self) -> None:
        if self._counted:
            GuardedHttpToolsProtocol._lingering -= 1
            self._counted = False

    def _refuse(self) -> None:
        if self.transport.is_closing():
            return
        message = f"the server has {self.max_connections} open connections, its limit; retry shortly"
        self.transport.write(_raw_response(503, "Service Unavailable", "unavailable", message, {"retry-after": "1"}))
        self._close()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refusing:
            self._refusing = False
            self._uncount()
            if data.startswith(PROBE_REQUESTS):
                self._arm_header_timer()  # served as usual
            else:
                self._refuse()
                return
        in_head, completed = self._in_head, self._completed
        super().data_received(data)
        # The head limit: bytes that arrived while one request's head was still unfinished. (A chunk that also
        # ended the message before is not counted: the limit then allows at most one read more.)
        if self._in_head and in_head and completed == self._completed and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.send_400_response("request line and headers over the limit")

    def eof_received(self) -> bool | None:  # type: ignore[override]
        if self._refusing:
            self._close()
        return super().eof_received()

    # ---- malformed requests ----
    def send_400_response(self, msg: str) -> None:
        """uvicorn answers a request httptools cannot parse (`Content-Length: abc`, a bad request line or header)
        in plain text; answer with the usual JSON error instead, and close."""
        self._cancel_header_timer()
        self._cancel_body_timer()
        if self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
            self._close()  # mid-response (a malformed chunk while streaming): nothing more can be said
            return
        message = (
            "invalid HTTP/1.1 request: malformed request line, header or Content-Length/Transfer-Encoding, "
            f"or request line and headers larger than {MAX_HEAD_BYTES // 1024} KiB"
        )
        self.transport.write(_raw_response(400, "Bad Request", "bad_request", message))
        self.transport.close()

    # ---- deadlines (the parser's callbacks say where a request is) ----
    def on_message_begin(self) -> None:
        self._begun = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        # The head is in: the header deadline is met; the body's starts (if one is announced).
        self._in_head = False
        self._head_bytes = 0
        self._cancel_header_timer()
        super().on_headers_complete()
        if any(name in (b"content-length", b"transfer-encoding") for name, _ in self.headers):
            self._cancel_body_timer()
            self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_expired)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        self._in_head, self._begun = True, False
        self._completed += 1
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_expired)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _header_expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served (its headers arrived): not ours to cut
        if self._begun and self._in_head:
            self._log_header()
            message = (
                f"the request headers did not arrive within {self.header_timeout_s:g} s (CELLSTATE_HEADER_TIMEOUT_S)"
            )
            self.transport.write(_raw_response(408, "Request Timeout", "request_timeout", message))
        self._close()

    def _body_expired(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or self._in_head:
            return
        if cycle.response_started:
            return  # the app answered without waiting for the body; the header deadline covers the rest
        self._log_body()
        message = f"the request body did not arrive within {self.body_timeout_s:g} s (CELLSTATE_BODY_TIMEOUT_S)"
        self.transport.write(_raw_response(408, "Request Timeout", "request_timeout", message))
        # The app is waiting in receive(): it gets http.disconnect, and whatever it sends afterwards is dropped.
        cycle.response_started = cycle.response_complete = True
        cycle.disconnected = True
        cycle.message_event.set()
        self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._uncount()
        self._cancel_header_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)
