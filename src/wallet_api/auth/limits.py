"""Per-API-key rate limits: GCRA, the token bucket kept as one number per key.

A key may send `burst` requests at once from idle, then `rate` requests a second. GCRA (the
generic cell rate algorithm) keeps, for each key, its theoretical arrival time (TAT): the
moment its bucket is full again. With the emission interval T = 1/rate, a request at `now`
moves the TAT to max(TAT, now) + T, and passes if that lands no further than burst * T
ahead of now; a refused request changes nothing.

Times are whole microseconds (integers), not float seconds. A TAT of about 1.7e9 s carries
only about 0.24 us of float precision, so adding T to it again and again drifts: at a few
thousand requests a second a burst came out one request short. With integers the
arithmetic is exact, no epsilon needed, in Python and in Redis's Lua alike (Lua's doubles
hold whole microseconds exactly until the year 2255). T is rounded to a whole microsecond,
which matters only above some 10,000 requests a second.

Two limiters share that arithmetic (`_gcra`):

- `LocalLimiter` limits a key across the worker processes of one instance, through a table
  in a file that every worker maps into memory; `create_table` makes that file.
- `RedisLimiter` limits a key across every instance that uses one Redis server, and falls
  back to a `LocalLimiter` while Redis fails.

`rate_limit_headers` tells the client where it stands.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import hashlib
import logging
import math
import mmap
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

logger = logging.getLogger(__name__)

MICROS = 1_000_000
#: Slots in a table; each holds one key: an 8-byte hash of its id (0: empty) and its TAT.
SLOTS = 4096
#: How many slots from a key's home slot on it may land in (open addressing).
PROBE = 8
_SLOT = struct.Struct("<Qq")
#: The size of a table file: 64 KiB.
TABLE_BYTES = SLOTS * _SLOT.size
#: The environment variable through which Gunicorn's master hands the table's path to the
#: workers it forks (set in on_starting; unset: each worker has a private table).
RATE_TABLE_VARIABLE = "WALLET_API_RATE_TABLE"
#: Where `create_table` prefers to put tables: memory. Safe although shared by everyone:
#: mkstemp creates the file exclusively, under a name nobody can guess.
SHM_DIRECTORY = "/dev/shm"  # noqa: S108

#: At most one warning about a failing Redis in this many seconds.
WARN_EVERY_SECONDS = 30.0
#: After Redis fails, this long without trying it: a Redis that times out would otherwise
#: add its whole timeout to every request.
REDIS_PAUSE_SECONDS = 1.0

# POSIX record locks belong to a process, not to a thread: two threads of one process would
# both "hold" the file lock at once. This lock keeps them apart; it is per module, not per
# limiter, because closing any descriptor of a file drops every lock the process holds on it.
_THREADS = threading.Lock()


@dataclass(frozen=True, slots=True)
class Decision:
    """One request's verdict, and where its key stands after it."""

    allowed: bool
    #: Requests that could still pass right now (after this one, if it was allowed).
    remaining: int
    #: Seconds until the key's bucket is full again.
    reset: float
    #: Seconds until a request may pass (0.0 when this one was allowed).
    retry_after: float


class Limiter(Protocol):
    """What the middleware uses: one decision per request, `aclose` when the worker stops."""

    async def acquire(self, key_id: str, rate: float, burst: int, cost: int = 1) -> Decision:
        """Count `cost` requests of `key_id` (all or none) against `burst` at once, then
        `rate` a second."""
        ...

    async def aclose(self) -> None:
        """Release what the limiter holds; it is not used again."""
        ...


def _interval(rate: float, burst: int) -> int:
    """The emission interval 1/rate in whole microseconds (at least 1), once the limits
    are checked: a limit that is not positive is a configuration error, not a refusal."""
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number of requests a second, not {rate!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst!r}")
    return max(1, round(MICROS / rate))


def _gcra(
    tat: int, now: int, interval: int, burst: int, cost: int = 1
) -> tuple[Decision, int | None]:
    """The decision on `cost` requests at `now` (all pass or none) for a key whose TAT is
    `tat` (microseconds; 0 or any past time for an idle key), and the TAT to store (None:
    store nothing)."""
    limit = burst * interval
    # A TAT further ahead than a whole burst cannot come from this arithmetic: the clock
    # stepped back, or the key's burst was lowered. Capped (and the cap stored, even on a
    # refusal), the key waits at most one refill of its bucket, not as long as the jump.
    capped = min(max(tat, now), now + limit)
    new_tat = capped + cost * interval
    ahead = new_tat - now
    if ahead <= limit:
        return Decision(True, (limit - ahead) // interval, ahead / MICROS, 0.0), new_tat
    # Refused: the request is not counted, so the bucket is full at the old TAT.
    refusal = Decision(False, 0, (capped - now) / MICROS, (ahead - limit) / MICROS)
    return refusal, (capped if capped < tat else None)


@functools.lru_cache(maxsize=4096)
def _key_hash(key_id: str) -> int:
    """A key id's 64-bit hash, never 0 (0 marks an empty slot). That any two of a million
    ids share a hash, and so a limit, has a probability of about 3e-8: negligible."""
    digest = hashlib.blake2b(key_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def create_table(directory: str | None = None) -> str:
    """Create an empty table file (for Gunicorn's master, before it forks workers); return
    its path. Prefer /dev/shm when it exists (memory, never written to disk), else
    tempfile.gettempdir().

    The file is the caller's to remove (Gunicorn's on_exit) and is readable by its owner
    only: when Gunicorn switches the workers to another user, chown it to that user."""
    if directory is None:
        writable = os.path.isdir(SHM_DIRECTORY) and os.access(SHM_DIRECTORY, os.W_OK)
        directory = SHM_DIRECTORY if writable else tempfile.gettempdir()
    descriptor, path = tempfile.mkstemp(prefix="wallet-api-ratelimit-", dir=directory)
    try:
        os.ftruncate(descriptor, TABLE_BYTES)
    finally:
        os.close(descriptor)
    return path


class LocalLimiter:
    """The limit across the worker processes of one instance: GCRA state (one number per
    key: the theoretical arrival time) in a table of fixed slots in a file mapped into
    memory (mmap, MAP_SHARED) that every worker opens by path; a POSIX record lock
    (fcntl.lockf) around each read-modify-write, which the kernel releases if a worker dies
    holding it (a killed worker must never wedge the others -- this is why not a
    multiprocessing.Lock). path None: an anonymous private mapping (one process, no lock
    needed).

    A path that does not exist yet, or an empty file, becomes a zeroed table; a file of
    another size is refused (ValueError). The table holds SLOTS keys; a key lands in one of
    PROBE slots from its hash's home slot. When those are all taken by other keys, it takes
    over the one with the oldest TAT: the key idle the longest, whose bucket is full anyway
    unless more than PROBE keys of that neighbourhood are all busy at once (then the evicted
    key gets a fresh burst: a leak of one burst, rare below a few hundred busy keys).

    `acquire` runs the synchronous `acquire_now` on the event loop: a few microseconds,
    waiting for the lock only as long as another worker's read-modify-write takes. `close`
    (or `aclose`) unmaps the table; it is idempotent."""

    def __init__(self, path: str | None, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._descriptor: int | None = None
        if path is None:
            # Private: a worker forked after this gets its own copy, not a table shared
            # without a lock.
            self._table = mmap.mmap(-1, TABLE_BYTES, flags=mmap.MAP_PRIVATE)
            return
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _size_table(descriptor, path)
            self._table = mmap.mmap(descriptor, TABLE_BYTES, flags=mmap.MAP_SHARED)
        except BaseException:
            os.close(descriptor)
            raise
        self._descriptor = descriptor

    def acquire_now(self, key_id: str, rate: float, burst: int, cost: int = 1) -> Decision:
        """Count `cost` requests of `key_id` (all or none): `burst` at once from idle, then
        `rate` a second."""
        interval = _interval(rate, burst)
        key = _key_hash(key_id)
        with _THREADS:
            descriptor = self._descriptor
            if descriptor is not None:
                fcntl.lockf(descriptor, fcntl.LOCK_EX)
            try:
                # Read inside the lock, so that TATs are written in the order of their `now`.
                now = round(self._clock() * MICROS)
                offset, tat = self._slot(key)
                decision, new_tat = _gcra(tat, now, interval, burst, cost)
                if new_tat is not None:
                    _SLOT.pack_into(self._table, offset, key, new_tat)
            finally:
                if descriptor is not None:
                    fcntl.lockf(descriptor, fcntl.LOCK_UN)
        return decision

    async def acquire(self, key_id: str, rate: float, burst: int, cost: int = 1) -> Decision:
        """`acquire_now`, for the `Limiter` protocol."""
        return self.acquire_now(key_id, rate, burst, cost)

    def _slot(self, key: int) -> tuple[int, int]:
        """The offset of the slot for `key`, and its TAT (0 for a slot it takes over)."""
        home = key % SLOTS
        oldest_offset, oldest_tat = -1, 0
        for step in range(PROBE):
            offset = (home + step) % SLOTS * _SLOT.size
            slot_key, tat = _SLOT.unpack_from(self._table, offset)
            if slot_key == key:
                return offset, tat
            # Slots are never emptied, so a key is never stored past an empty slot.
            if slot_key == 0:
                return offset, 0
            if oldest_offset < 0 or tat < oldest_tat:
                oldest_offset, oldest_tat = offset, tat
        return oldest_offset, 0

    def close(self) -> None:
        """Unmap the table and close its file; idempotent."""
        with _THREADS:
            if not self._table.closed:
                self._table.close()
            if self._descriptor is not None:
                os.close(self._descriptor)
                self._descriptor = None

    async def aclose(self) -> None:
        """`close`, for the `Limiter` protocol."""
        self.close()


def _size_table(descriptor: int, path: str) -> None:
    """Make an empty file a zeroed table (under the lock: workers may race to do it);
    refuse a file of another size, which would be another program's or version's."""
    fcntl.lockf(descriptor, fcntl.LOCK_EX)
    try:
        size = os.fstat(descriptor).st_size
        if size == 0:
            os.ftruncate(descriptor, TABLE_BYTES)
        elif size != TABLE_BYTES:
            raise ValueError(f"{path} is not a rate-limit table: {size} bytes, not {TABLE_BYTES}")
    finally:
        fcntl.lockf(descriptor, fcntl.LOCK_UN)


# KEYS[1] holds a key's TAT in microseconds of Redis's clock; ARGV: the emission interval in
# microseconds, the burst, the requests counted (all or none). The script decides and
# stores atomically, as `_gcra` does, and returns the time and the TAT it found (0: none):
# the caller derives the decision from them with `_gcra` itself. string.format("%d")
# because Lua writes large numbers as 1.7e+15.
_GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2]) * interval
local step = tonumber(ARGV[3]) * interval
local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local stored = tonumber(redis.call("GET", KEYS[1]))
local tat = math.min(math.max(stored or now, now), now + limit)
local function store(value)
    redis.call("SET", KEYS[1], string.format("%d", value),
               "PX", string.format("%d", math.ceil((value - now) / 1000)))
end
if tat + step - now <= limit then
    store(tat + step)
elseif stored and tat < stored then
    store(tat)
end
return {now, stored or 0}
"""


class RedisLimiter:
    """The limit across every instance that shares the Redis server: the same GCRA in one
    Lua script (atomic; it uses Redis's own TIME so instances' clocks do not matter; sets an
    expiry on the key so idle keys vanish: it expires when the bucket is full again). If
    Redis fails (connection refused, timeout), falls back to the given LocalLimiter for that
    request and logs a warning at most once every 30 s (logger 'wallet_api.auth.limits'),
    never raises to the caller.

    While it falls back, each instance limits a key on its own: a key may get its limit once
    per instance. After a failure Redis is left alone for REDIS_PAUSE_SECONDS. `timeout`
    bounds the whole exchange with Redis, connecting included; there are no retries (the
    fallback is the retry). Create it in the worker, inside its event loop's lifetime, not
    in Gunicorn's master; `aclose` closes the connections, not the fallback, which stays
    the caller's. Keys are stored as `prefix` + key id."""

    def __init__(
        self,
        url: str,
        fallback: LocalLimiter,
        *,
        timeout: float = 0.25,
        prefix: str = "wallet-api:ratelimit:",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # No retries: the fallback is the retry. (from_url's connections make none
            # today, but Redis() itself retries 3 times with backoff since redis-py 6.)
            retry=Retry(NoBackoff(), 0),
        )
        self._script = self._client.register_script(_GCRA_SCRIPT)
        self._fallback = fallback
        self._timeout = timeout
        self._prefix = prefix
        self._monotonic = monotonic
        self._paused_until = -math.inf
        self._next_warning = -math.inf
        self._unreported = 0

    async def acquire(self, key_id: str, rate: float, burst: int, cost: int = 1) -> Decision:
        """Count `cost` requests of `key_id` in Redis; in the fallback while Redis fails."""
        interval = _interval(rate, burst)
        if self._monotonic() >= self._paused_until:
            try:
                async with asyncio.timeout(self._timeout):
                    reply = await self._script(
                        keys=[self._prefix + key_id], args=[interval, burst, cost]
                    )
                now, tat = (int(value) for value in reply)
                return _gcra(tat, now, interval, burst, cost)[0]
            # Anything: a rate limiter that fails requests would be an outage of its own.
            except Exception as error:
                self._failed(error)
        return self._fallback.acquire_now(key_id, rate, burst, cost)

    def _failed(self, error: Exception) -> None:
        now = self._monotonic()
        self._paused_until = now + REDIS_PAUSE_SECONDS
        self._unreported += 1
        if now < self._next_warning:
            return
        logger.warning(
            "Redis failed for rate limits (%s); each instance limits keys on its own "
            "meanwhile (%d failure(s) since the last warning)",
            repr(error) if str(error) else type(error).__name__,
            self._unreported,
        )
        self._next_warning = now + WARN_EVERY_SECONDS
        self._unreported = 0

    async def aclose(self) -> None:
        """Close the connections to Redis (not the fallback)."""
        await self._client.aclose()


def _whole_seconds(seconds: float) -> int:
    """Seconds rounded up; the 1e-9 keeps float noise (1 / (1 / 49) == 49.00000000000001)
    from costing a whole second."""
    return max(0, math.ceil(seconds - 1e-9))


@functools.lru_cache(maxsize=1024)
def _policy(rate: float, burst: int) -> bytes:
    window = max(1, _whole_seconds(burst / rate))
    return f'"burst";q={burst};w={window}'.encode()


def rate_limit_headers(decision: Decision, rate: float, burst: int) -> list[tuple[bytes, bytes]]:
    """The headers of the IETF httpapi RateLimit draft (draft-ietf-httpapi-ratelimit-
    headers-10 structured-field form): `RateLimit-Policy: "burst";q=<burst>;w=<seconds to
    refill the whole burst, rounded up, at least 1>` and `RateLimit: "burst";r=<remaining>;
    t=<seconds until full, rounded up>`; plus `Retry-After: <whole seconds, rounded up, at
    least 1>` when not allowed. Header names lowercase bytes (ASGI)."""
    reset = _whole_seconds(decision.reset)
    headers = [
        (b"ratelimit-policy", _policy(rate, burst)),
        (b"ratelimit", f'"burst";r={decision.remaining};t={reset}'.encode()),
    ]
    if not decision.allowed:
        retry_after = max(1, _whole_seconds(decision.retry_after))
        headers.append((b"retry-after", str(retry_after).encode()))
    return headers
