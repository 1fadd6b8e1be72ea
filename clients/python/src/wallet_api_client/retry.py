"""When a call is sent again, and after how long: the client's own rules (tested in the
service's suite, tests/unit/test_client_retry.py).

A call is retried when it may succeed on a later try and a retry cannot apply it twice:
every POST carries an Idempotency-Key that all its tries reuse, so a try whose answer was
lost is replayed, not applied again. Retried: no answer (a refused or dropped connection, a
time-out); 429 (over the rate limit); 502, 503 and 504 (not applied: the service or a proxy
in front of it was busy or away); 500 `outcome_unknown` (the retry settles it) and 500
`internal_error` (not applied, the service promises). Never: any other 4xx (the same
request would be refused again), nor any other 500.

The waits grow exponentially with jitter (a random half to whole of `initial_delay *
2**retry`, at most `max_delay`), and are never shorter than a `Retry-After` the service
sent. Retries stop after `max_attempts` tries, or when the next one would start more than
`max_elapsed` seconds after the first (a try itself is bounded by the client's timeout,
per phase: connecting, writing, each read).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

#: Statuses retried whatever their code.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
#: The 500s the service says are safe to retry.
RETRIED_500_CODES = frozenset({"outcome_unknown", "internal_error"})
#: No answer: the request may or may not have reached the service.
RETRIED_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.DecodingError,  # an answer came, unreadable: its retry reads the replay
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many tries, over how long, with what waits between them. The defaults ride out
    a database restart or a failover (tens of seconds: even the shortest waits the jitter
    can draw add up to more than 30 s, the service's failover target) at a few tries a
    minute."""

    max_attempts: int = 12
    max_elapsed: float = 60.0
    initial_delay: float = 0.25
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("delays must satisfy 0 <= initial_delay <= max_delay")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number `retry` (1 for the first), without Retry-After."""
        ceiling = min(self.max_delay, self.initial_delay * 2 ** (retry - 1))
        return rng.uniform(ceiling / 2, ceiling)

    def next_delay(
        self,
        attempts: int,
        elapsed: float,
        retry_after: float | None,
        rng: random.Random,
    ) -> float | None:
        """The wait before another try after `attempts` tries and `elapsed` seconds, or
        None when no more tries are allowed."""
        if attempts >= self.max_attempts:
            return None
        delay = self.backoff(attempts, rng)
        if retry_after is not None:
            delay = max(delay, retry_after)
        if elapsed + delay > self.max_elapsed:
            return None
        return delay


#: No retries at all.
NO_RETRIES = RetryPolicy(max_attempts=1)


def is_retried(status: int, code: str | None) -> bool:
    """Whether a problem answer is retried."""
    return status in RETRIED_STATUSES or (status == 500 and code in RETRIED_500_CODES)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """A `Retry-After` header's wait in seconds (a number of seconds or an HTTP date), or
    None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
