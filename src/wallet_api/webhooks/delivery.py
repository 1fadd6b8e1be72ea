"""The sender (`wallet-api deliver`): a process of its own, never a request worker.

Its loop: fan the feed's new events out into deliveries (one per endpoint that takes the
event), claim the deliveries that are due, send each, record each attempt. Several
senders may run at once: the fan-out takes turns on one locked row, and a claim leases
each delivery to one sender (`FOR UPDATE SKIP LOCKED`, then not due again until the lease
ends), so no attempt is sent by two at once. A sender killed mid-send loses nothing: its
leased deliveries come due again when their leases end, and are sent again. So a receiver
gets every event at least once, and drops duplicates by the event's `id`.

An attempt succeeds on a 2xx answer. Anything else (another status, a time-out, a refused
connection, a redirect, which is never followed) is retried with exponential backoff and
jitter, never sooner than a `Retry-After` the receiver sent, until WEBHOOK_RETRY_HOURS
have passed since the delivery was made or WEBHOOK_MAX_ATTEMPTS were made; the delivery is then
failed. Each success makes a few more of its endpoint's waiting deliveries due at once: a
receiver back from an outage gets its backlog as fast as it answers, not as each backoff
ends (never one leased to a sender, nor one whose receiver asked to wait). An endpoint
whose attempts have failed, without a success between, for WEBHOOK_DISABLE_AFTER_SECONDS
is disabled: a warning in the log and the `wallet_webhook_endpoints_disabled_total`
counter (webhooks/metrics.py: served by the
sender itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from wallet_api import __version__
from wallet_api.core.config import Settings
from wallet_api.core.database import Database
from wallet_api.events.service import EventFeed
from wallet_api.webhooks import metrics, repository
from wallet_api.webhooks.repository import Claimed
from wallet_api.webhooks.signing import (
    DELIVERY_ID_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    signature,
)
from wallet_api.webhooks.targets import address_problem

logger = logging.getLogger(__name__)

#: Events fanned out by one statement.
FAN_OUT_BATCH = 1_000
#: Seconds a claim's lease lasts beyond the longest an attempt can take (its record's).
LEASE_MARGIN_SECONDS = 5.0
#: Seconds between looks while there is nothing to do.
IDLE_SECONDS = 0.05
#: Bytes of an answer read (the rest is not waited for).
ANSWER_BYTES = 64 * 1024
#: Characters of an error kept with its attempt.
ERROR_LENGTH = 500
#: Seconds between samples of the backlog gauges.
BACKLOG_SAMPLE_SECONDS = 5.0
#: The longest wait between two attempts (a Retry-After included).
BACKOFF_CAP_SECONDS = 3600.0


def backoff(attempt: int, *, first: float, retry_after: float | None = None) -> float:
    """Seconds before the attempt after `attempt` (1 for the first): `first`, doubling,
    at most an hour, each drawn between half and all of it (jitter: retries of many
    deliveries do not come back at once), and never less than a `Retry-After`."""
    ceiling = min(BACKOFF_CAP_SECONDS, first * 2 ** min(attempt - 1, 40))
    wait = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        wait = max(wait, min(retry_after, BACKOFF_CAP_SECONDS))
    return wait


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A `Retry-After` header in seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class Sender:
    def __init__(
        self, database: Database, settings: Settings, client: httpx.AsyncClient | None = None
    ) -> None:
        self._database = database
        self._settings = settings
        #: A claim's lease: the longest an attempt can take, and a margin.
        self._lease_seconds = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        self._feed = EventFeed(database)
        self._client = client or httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(settings.webhook_timeout_seconds),
            headers={"User-Agent": f"wallet-api-webhooks/{__version__}"},
            trust_env=False,
        )
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Fan out, claim and send until `stop` is set; then finish the sends under way."""
        while not stop.is_set():
            try:
                busy = await self.step()
            except Exception:
                logger.warning("webhook sender: a step failed; trying again", exc_info=True)
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_SECONDS)
        if self._sending:
            await asyncio.wait(self._sending)
        await self._client.aclose()

    async def sample_backlog(self, every: float = BACKLOG_SAMPLE_SECONDS) -> None:
        """Keep the backlog gauges current, forever."""
        while True:
            try:
                async with self._database.autocommit() as connection:
                    pending, age, unfanned = await repository.backlog(connection)
            except Exception:
                logger.warning("webhook sender: the backlog could not be read", exc_info=True)
            else:
                metrics.BACKLOG.set(pending)
                metrics.BACKLOG_AGE.set(age)
                metrics.FEED_LAG.set(unfanned)
            await asyncio.sleep(every)

    async def step(self) -> bool:
        """One turn: fan out, claim as many due deliveries as there are free slots, start
        sending them. Whether it found anything to do."""
        async with self._database.autocommit() as connection:
            events, _ = await repository.fan_out(connection, FAN_OUT_BATCH)
        free = self._settings.webhook_concurrency - len(self._sending)
        if free <= 0:
            await asyncio.sleep(IDLE_SECONDS)
            return True
        async with self._database.autocommit() as connection:
            claimed = await repository.claim(
                connection,
                free,
                lease_seconds=self._lease_seconds,
            )
        if claimed:
            documents = await self._feed.documents(sorted({c.event_id for c in claimed}))
            for each in claimed:
                task = asyncio.create_task(self._send(each, documents.get(each.event_id)))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
        return bool(events or claimed)

    async def _send(self, claimed: Claimed, document: dict[str, Any] | None) -> None:
        async with self._slots:
            started = time.monotonic()
            status_code: int | None = None
            retry_after: float | None = None
            error: str | None = None
            if document is None:
                error = "the event is no longer kept"
            elif claimed.endpoint_status != "enabled":
                error = "the endpoint is disabled"
            else:
                body = orjson.dumps(document)
                status_code, retry_after, error = await self._post(claimed, body)
            duration = time.monotonic() - started
            event_at = None if document is None else document["created_at"].timestamp()
            await self._record(claimed, status_code, duration, error, retry_after, event_at)

    async def _post(
        self, claimed: Claimed, body: bytes
    ) -> tuple[int | None, float | None, str | None]:
        """POST the event: (status, Retry-After in seconds, error). Within the attempt's
        time-out from its start (the address check included), whatever the receiver does;
        anything unexpected is the attempt's failure, recorded like the others."""
        try:
            async with asyncio.timeout(self._settings.webhook_timeout_seconds):
                return await self._attempt(claimed, body)
        except TimeoutError:
            return None, None, "timed out"
        except Exception as exc:
            logger.warning("webhook delivery %d: the attempt failed", claimed.id, exc_info=True)
            return None, None, f"failed: {type(exc).__name__}"

    async def _attempt(
        self, claimed: Claimed, body: bytes
    ) -> tuple[int | None, float | None, str | None]:
        problem = await address_problem(
            claimed.url, allow_private=self._settings.webhook_allow_private_addresses
        )
        if problem is not None:
            return None, None, problem
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(claimed.secret, int(time.time()), body),
            EVENT_ID_HEADER: str(claimed.event_id),
            DELIVERY_ID_HEADER: str(claimed.id),
        }
        try:
            # The caller's deadline bounds the whole attempt: httpx's time-outs bound each
            # step (connect, each read), not a receiver that drips its answer.
            async with self._client.stream(
                "POST", claimed.url, content=body, headers=headers
            ) as answer:
                read = 0
                async for chunk in answer.aiter_raw():
                    read += len(chunk)
                    if read >= ANSWER_BYTES:
                        break
                status = answer.status_code
                retry_after = retry_after_seconds(answer.headers.get("Retry-After"), time.time())
        except httpx.TimeoutException:
            return None, None, "timed out"
        except httpx.HTTPError as exc:
            return None, None, f"{type(exc).__name__}: {exc}"[:ERROR_LENGTH]
        if 200 <= status < 300:
            return status, None, None
        if 300 <= status < 400:
            return status, retry_after, "a redirect (never followed)"
        return status, retry_after, f"answered {status}"

    async def _record(  # noqa: PLR0917 (one call, in _send)
        self,
        claimed: Claimed,
        status_code: int | None,
        duration: float,
        error: str | None,
        retry_after: float | None,
        event_at: float | None,
    ) -> None:
        settings = self._settings
        succeeded = error is None
        if succeeded:
            outcome, retry_in = "succeeded", 0.0
        else:
            retry_in = backoff(
                claimed.attempt, first=settings.webhook_backoff_seconds, retry_after=retry_after
            )
            deadline = claimed.created_at.timestamp() + settings.webhook_retry_hours * 3600
            final = (
                claimed.attempt >= settings.webhook_max_attempts
                or time.time() + retry_in > deadline
                or claimed.endpoint_status != "enabled"
            )
            outcome = "failed" if final else "pending"
        try:
            async with self._database.autocommit() as connection:
                disabled = await repository.record(
                    connection,
                    claimed,
                    status_code=status_code,
                    duration_ms=round(duration * 1000),
                    error=error,
                    outcome=outcome,
                    retry_in=retry_in,
                    succeeded=succeeded,
                    disable_after_seconds=settings.webhook_disable_after_seconds,
                    lease_seconds=self._lease_seconds,
                    retry_after=retry_after,
                )
        except Exception:
            # Not recorded: its lease ends, and it is sent again (at least once).
            logger.warning(
                "webhook delivery %d: its attempt could not be recorded", claimed.id, exc_info=True
            )
            return
        metrics.ATTEMPTS.labels("succeeded" if succeeded else "failed").inc()
        if succeeded and event_at is not None:
            metrics.DELIVERY_SECONDS.observe(max(0.0, time.time() - event_at))
        if disabled:
            metrics.ENDPOINTS_DISABLED.inc()
            logger.warning(
                "webhook endpoint %s disabled: its deliveries have failed for over %g s",
                claimed.endpoint_id,
                settings.webhook_disable_after_seconds,
            )
