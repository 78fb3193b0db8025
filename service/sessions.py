"""Stateful sessions: a server-made id, the model version it is pinned to, the LSTM state and a little
family-specific data (a generation's pending token, sampler and detokenizer state; a forecast's scale).

Two real backends behind one interface:
- `MemorySessionStore`: in-process (the default, for one process), LRU order + TTL.
- `RedisSessionStore`: shared by any number of replicas; state as compact float32 bytes; expiry by Redis TTL. Any
  replica can continue any session and sessions survive a restart.

Rules: an idle TTL and a maximum lifetime; a capacity cap that refuses new sessions (503 + Retry-After) rather
than growing; unknown and expired ids are told apart (a tombstone outlives the session); one request at a time
per session (a lease; a second concurrent request gets 409). A lease is short (`lease_timeout`, seconds) and
renewed by this process while its request runs, so a request that dies, or a store that stalls, cannot keep a
session locked for longer than that. A save never brings back a session that was deleted (or expired) while a
request was using it. A store that does not answer within its timeout raises `SessionStoreUnavailable` (503).
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

State = tuple[np.ndarray, np.ndarray]
ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"


class SessionNotFoundError(Exception):
    def __init__(self, session_id: str, reason: str) -> None:
        super().__init__(f"session {session_id} {reason}")
        self.session_id = session_id
        self.reason = reason  # "is unknown" | "has expired"


class SessionBusyError(Exception):
    pass


class SessionStoreUnavailable(Exception):
    """The store did not answer (Redis down, stalled or unreachable): 503 naming the session store."""

    retry_after = 2

    def __init__(self, cause: BaseException | str) -> None:
        super().__init__(f"the session store is unavailable ({cause or type(cause).__name__}); retry shortly")


class SessionCapacityError(Exception):
    def __init__(self, capacity: int, retry_after: int) -> None:
        super().__init__(f"the session store is full ({capacity} sessions); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class SessionRecord:
    id: str
    family: str
    model_version: int
    created_at: float
    expires_at: float  # hard end: created_at + max lifetime
    last_used: float
    state: State | None = None  # (h, c), each float32 (layers, 1, hidden); None before anything was fed
    data: dict[str, Any] = field(default_factory=dict)  # JSON-able family-specific data

    def deadline(self, idle_ttl: float) -> float:
        return min(self.last_used + idle_ttl, self.expires_at)

    # Compact encoding: JSON metadata + raw float32 bytes of h then c.
    def meta_json(self) -> str:
        shape = list(self.state[0].shape) if self.state is not None else None
        return json.dumps({
            "id": self.id, "family": self.family, "model_version": self.model_version,
            "created_at": self.created_at, "expires_at": self.expires_at, "last_used": self.last_used,
            "state_shape": shape, "data": self.data,
        })  # fmt: skip

    def state_bytes(self) -> bytes:
        if self.state is None:
            return b""
        h, c = self.state
        return np.ascontiguousarray(h, dtype=np.float32).tobytes() + np.ascontiguousarray(c, dtype=np.float32).tobytes()

    @classmethod
    def decode(cls, meta_json: str | bytes, state: bytes) -> SessionRecord:
        meta = json.loads(meta_json)
        shape = meta.pop("state_shape")
        record = cls(**meta)
        if shape is not None:
            flat = np.frombuffer(state, dtype=np.float32)
            half = flat.size // 2
            record.state = (flat[:half].reshape(shape).copy(), flat[half:].reshape(shape).copy())
        return record


class SessionStore(ABC):
    def __init__(self, idle_ttl: float, max_lifetime: float, capacity: int, lease_timeout: float = 10.0) -> None:
        self.idle_ttl = idle_ttl
        self.max_lifetime = max_lifetime
        self.capacity = capacity
        self.lease_timeout = lease_timeout  # a lease not renewed for this long lapses
        self._held: dict[str, str] = {}  # session id -> token of the lease this process holds
        self._held_lock = threading.Lock()
        self._closing = threading.Event()
        self._keeper = threading.Thread(target=self._renew_loop, name="session-leases", daemon=True)
        self._keeper.start()

    def _renew_loop(self) -> None:
        """Renew this process's leases every third of their timeout, while their requests run."""
        while not self._closing.wait(self.lease_timeout / 3):
            with self._held_lock:
                held = list(self._held.items())
            for session_id, token in held:
                try:
                    self._renew(session_id, token)
                except Exception as exc:  # the store is down: the lease lapses by itself, which is the point
                    log.warning("could not renew the lease of session %s: %s", session_id, exc)

    def new_record(self, family: str, model_version: int, data: dict[str, Any] | None = None) -> SessionRecord:
        now = time.time()
        return SessionRecord(
            id=secrets.token_urlsafe(18), family=family, model_version=model_version, created_at=now,
            expires_at=now + self.max_lifetime, last_used=now, data=data or {},
        )  # fmt: skip

    @abstractmethod
    def create(self, record: SessionRecord) -> None:
        """Store a new session; SessionCapacityError when full."""

    @abstractmethod
    def get(self, session_id: str) -> SessionRecord:
        """SessionNotFoundError when unknown or expired."""

    @abstractmethod
    def save(self, record: SessionRecord) -> None:
        """Store a session's new state; refreshes its idle TTL."""

    @abstractmethod
    def delete(self, session_id: str) -> bool:
        """True when it existed."""

    @abstractmethod
    def count(self) -> int: ...

    def ping(self) -> None:  # noqa: B027 - in-process memory always answers
        """Raises SessionStoreUnavailable when the store does not answer."""

    @abstractmethod
    def _acquire(self, session_id: str, token: str) -> bool: ...

    @abstractmethod
    def _renew(self, session_id: str, token: str) -> None: ...

    @abstractmethod
    def _release(self, session_id: str, token: str) -> None: ...

    def checkout(self, session_id: str) -> SessionRecord:
        """Exclusive use of a session for one request (SessionBusyError if another request holds it); the
        caller must `checkin` it when done."""
        token = secrets.token_hex(8)
        if not self._acquire(session_id, token):
            self.get(session_id)  # an unknown/expired id is a 404, not a 409
            raise SessionBusyError(f"session {session_id} is busy with another request")
        with self._held_lock:
            self._held[session_id] = token
        try:
            return self.get(session_id)
        except BaseException:
            self.checkin(session_id)
            raise

    def checkin(self, session_id: str) -> None:
        """Give the lease back. Never raises: when the store is down the lease lapses within `lease_timeout`."""
        with self._held_lock:
            token = self._held.pop(session_id, None)
        if token is None:
            return
        try:
            self._release(session_id, token)
        except Exception as exc:
            log.warning("could not release the lease of session %s (it lapses by itself): %s", session_id, exc)

    @contextmanager
    def lease(self, session_id: str) -> Iterator[SessionRecord]:
        record = self.checkout(session_id)
        try:
            yield record
        finally:
            self.checkin(session_id)

    def close(self) -> None:
        self._closing.set()


class MemorySessionStore(SessionStore):
    """Sessions in this process: an OrderedDict in least-recently-used order, swept lazily."""

    TOMBSTONES = 100_000

    def __init__(self, idle_ttl: float, max_lifetime: float, capacity: int, lease_timeout: float = 10.0) -> None:
        super().__init__(idle_ttl, max_lifetime, capacity, lease_timeout)
        self._lock = threading.Lock()
        self._records: OrderedDict[str, SessionRecord] = OrderedDict()
        self._tombstones: OrderedDict[str, None] = OrderedDict()
        self._busy: dict[str, tuple[str, float]] = {}  # session id -> (lease token, lapses at)

    def _expire(self, session_id: str) -> None:
        self._records.pop(session_id, None)
        self._tombstones[session_id] = None
        if len(self._tombstones) > self.TOMBSTONES:
            self._tombstones.popitem(last=False)

    def _sweep(self, now: float, full: bool) -> None:
        # LRU order: the idle-expired are at the front. Max-lifetime expiry can be anywhere (full scan).
        for sid, record in list(self._records.items()):
            if record.deadline(self.idle_ttl) <= now:
                self._expire(sid)
            elif not full:
                break

    def create(self, record: SessionRecord) -> None:
        with self._lock:
            now = time.time()
            self._sweep(now, full=False)
            if len(self._records) >= self.capacity:
                self._sweep(now, full=True)
            if len(self._records) >= self.capacity:
                soonest = min(r.deadline(self.idle_ttl) for r in self._records.values())
                raise SessionCapacityError(self.capacity, max(1, math.ceil(soonest - now)))
            self._records[record.id] = record

    def get(self, session_id: str) -> SessionRecord:
        with self._lock:
            record = self._records.get(session_id)
            if record is not None and record.deadline(self.idle_ttl) <= time.time():
                self._expire(session_id)
                record = None
            if record is None:
                reason = "has expired" if session_id in self._tombstones else "is unknown"
                raise SessionNotFoundError(session_id, reason)
            return record

    def save(self, record: SessionRecord) -> None:
        with self._lock:
            if record.id not in self._records:  # deleted or expired meanwhile: never bring it back
                reason = "has expired" if record.id in self._tombstones else "was deleted"
                raise SessionNotFoundError(record.id, reason)
            record.last_used = time.time()
            self._records[record.id] = record
            self._records.move_to_end(record.id)

    def delete(self, session_id: str) -> bool:
        with self._lock:
            self._tombstones.pop(session_id, None)
            return self._records.pop(session_id, None) is not None

    def count(self) -> int:
        with self._lock:
            self._sweep(time.time(), full=False)
            return len(self._records)

    def _acquire(self, session_id: str, token: str) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._busy.get(session_id, ("", 0.0))[1] > now:
                return False
            self._busy[session_id] = (token, now + self.lease_timeout)
            return True

    def _renew(self, session_id: str, token: str) -> None:
        with self._lock:
            if self._busy.get(session_id, ("", 0.0))[0] == token:
                self._busy[session_id] = (token, time.monotonic() + self.lease_timeout)

    def _release(self, session_id: str, token: str) -> None:
        with self._lock:
            if self._busy.get(session_id, ("", 0.0))[0] == token:
                del self._busy[session_id]


class RedisSessionStore(SessionStore):
    """Sessions in Redis, shared by every replica.

    Keys (prefix `cellstate`):
      {p}:s:{id}  hash {meta: JSON, state: float32 bytes}   expires by PEXPIREAT at the session's deadline
      {p}:t:{id}  tombstone, outlives the session by a day  (tells "expired" from "unknown")
      {p}:l:{id}  lease token (SET NX PX), renewed while held  one request at a time
      {p}:index   sorted set id -> deadline                 capacity accounting

    Every call has a short socket timeout and no retries: a dead or stalled Redis is a 503 within
    `timeout` seconds (SessionStoreUnavailable), and the client reconnects by itself when Redis is back.
    """

    # Save only a session that still exists: a DELETE (or expiry) during a request is final.
    _SAVE = """
    if redis.call('exists', KEYS[1]) == 0 then return 0 end
    redis.call('hset', KEYS[1], 'meta', ARGV[1], 'state', ARGV[2])
    redis.call('pexpireat', KEYS[1], ARGV[3])
    redis.call('zadd', KEYS[2], ARGV[4], ARGV[5])
    return 1
    """
    _RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

    def __init__(self, url: str, idle_ttl: float, max_lifetime: float, capacity: int, lease_timeout: float = 10.0,
                 prefix: str = "cellstate", timeout: float = 1.0) -> None:  # fmt: skip
        import redis  # the Redis client is only needed when this backend is configured

        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self.redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=None,
                                          health_check_interval=0)  # fmt: skip
        self.prefix = prefix
        super().__init__(idle_ttl, max_lifetime, capacity, lease_timeout)
        self._save = self.redis.register_script(self._SAVE)
        self._renew_script = self.redis.register_script(self._RENEW)
        self._release_script = self.redis.register_script(self._RELEASE)
        try:
            self.redis.ping()
        except self._errors as exc:  # serve stateless traffic anyway; /ready reports the store's condition
            log.warning("the session store at %s does not answer yet: %s", url, exc)

    @contextmanager
    def _call(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise SessionStoreUnavailable(exc) from exc

    def ping(self) -> None:
        with self._call():
            self.redis.ping()

    def _key(self, kind: str, session_id: str) -> str:
        return f"{self.prefix}:{kind}:{session_id}"

    def create(self, record: SessionRecord) -> None:
        index = f"{self.prefix}:index"
        now = time.time()
        with self._call():
            self.redis.zremrangebyscore(index, "-inf", now)
            if self.redis.zcard(index) >= self.capacity:
                soonest: list[tuple[bytes, float]] = self.redis.zrange(index, 0, 0, withscores=True)  # type: ignore[assignment]
                retry = max(1, math.ceil(float(soonest[0][1]) - now)) if soonest else 1
                raise SessionCapacityError(self.capacity, retry)
            deadline = record.deadline(self.idle_ttl)
            pipe = self.redis.pipeline(transaction=True)
            key = self._key("s", record.id)
            pipe.hset(key, mapping={"meta": record.meta_json(), "state": record.state_bytes()})
            pipe.pexpireat(key, int(deadline * 1000))
            pipe.zadd(index, {record.id: deadline})
            pipe.set(self._key("t", record.id), b"1", exat=int(record.expires_at + 86_400))
            pipe.execute()

    def get(self, session_id: str) -> SessionRecord:
        with self._call():
            fields: dict[bytes, bytes] = self.redis.hgetall(self._key("s", session_id))  # type: ignore[assignment]
            if not fields:
                reason = "has expired" if self.redis.exists(self._key("t", session_id)) else "is unknown"
                raise SessionNotFoundError(session_id, reason)
        return SessionRecord.decode(fields[b"meta"], fields[b"state"])

    def save(self, record: SessionRecord) -> None:
        record.last_used = time.time()
        deadline = record.deadline(self.idle_ttl)
        with self._call():
            saved = self._save(
                keys=[self._key("s", record.id), f"{self.prefix}:index"],
                args=[record.meta_json(), record.state_bytes(), int(deadline * 1000), deadline, record.id],
            )
            if not saved:
                reason = "has expired" if self.redis.exists(self._key("t", record.id)) else "was deleted"
                raise SessionNotFoundError(record.id, reason)

    def delete(self, session_id: str) -> bool:
        with self._call():
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(self._key("s", session_id))
            pipe.delete(self._key("t", session_id))
            pipe.zrem(f"{self.prefix}:index", session_id)
            return bool(pipe.execute()[0])

    def count(self) -> int:
        index = f"{self.prefix}:index"
        with self._call():
            self.redis.zremrangebyscore(index, "-inf", time.time())
            return int(self.redis.zcard(index))

    def _acquire(self, session_id: str, token: str) -> bool:
        with self._call():
            ms = int(self.lease_timeout * 1000)
            return bool(self.redis.set(self._key("l", session_id), token, nx=True, px=ms))

    def _renew(self, session_id: str, token: str) -> None:
        with self._call():
            self._renew_script(keys=[self._key("l", session_id)], args=[token, int(self.lease_timeout * 1000)])

    def _release(self, session_id: str, token: str) -> None:
        with self._call():
            self._release_script(keys=[self._key("l", session_id)], args=[token])

    def close(self) -> None:
        super().close()
        self.redis.close()
