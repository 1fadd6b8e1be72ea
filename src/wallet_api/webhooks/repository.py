"""The SQL of webhooks: endpoints, the fan-out of events into deliveries, the senders'
claims on deliveries, and the record of each attempt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from wallet_api.core.database import Connection


@dataclass(frozen=True, slots=True)
class EndpointRow:
    id: UUID
    owner: str | None
    url: str
    types: list[str] | None
    description: str | None
    secret: str
    status: str
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime


_ENDPOINT_COLUMNS = (
    "id, owner, url, types, description, secret, status, failing_since, created_at, updated_at"
)
# The new endpoint, written only while its owner has fewer than $7: the caller's
# transaction holds the owner's advisory lock (_OWNER_LOCK), so two creations at once
# cannot both pass the count.
_OWNER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('webhooks:' || coalesce($1, ''), 0))"
_CREATE = f"""
    INSERT INTO webhook_endpoints (id, owner, url, types, description, secret)
    SELECT $1::uuid, $2::text, $3::text, $4::text[], $5::text, $6::text
    WHERE (SELECT count(*) FROM webhook_endpoints WHERE owner IS NOT DISTINCT FROM $2::text) < $7
    RETURNING {_ENDPOINT_COLUMNS}
"""
_ONE = f"""
    SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints
    WHERE id = $1 AND owner IS NOT DISTINCT FROM $2::text
"""
_ALL = f"""
    SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints
    WHERE ($1::boolean OR owner IS NOT DISTINCT FROM $2::text)
    ORDER BY created_at, id
"""
# A field left NULL keeps its value, but for `types`, which $4 (whether it was given)
# sets, NULL included (all types).
_UPDATE = f"""
    UPDATE webhook_endpoints SET
        url = coalesce($3::text, url),
        types = CASE WHEN $4::boolean THEN $5::text[] ELSE types END,
        description = CASE WHEN $6::boolean THEN $7::text ELSE description END,
        status = coalesce($8::text, status),
        failing_since = CASE WHEN $8::text = 'enabled' THEN NULL ELSE failing_since END,
        updated_at = now()
    WHERE id = $1 AND owner IS NOT DISTINCT FROM $2::text
    RETURNING {_ENDPOINT_COLUMNS}
"""
_DELETE = """
    DELETE FROM webhook_endpoints WHERE id = $1 AND owner IS NOT DISTINCT FROM $2::text
    RETURNING id
"""


async def create_endpoint(
    connection: Connection,
    endpoint_id: UUID,
    *,
    owner: str | None,
    url: str,
    types: list[str] | None,
    description: str | None,
    secret: str,
    limit: int,
) -> EndpointRow | None:
    """The new endpoint, or None when its owner has `limit` already (in the caller's
    transaction)."""
    await connection.execute(_OWNER_LOCK, owner)
    row = await connection.fetchrow(
        _CREATE, endpoint_id, owner, url, types, description, secret, limit
    )
    return None if row is None else EndpointRow(*row)


async def endpoint(
    connection: Connection, endpoint_id: UUID, *, owner: str | None
) -> EndpointRow | None:
    row = await connection.fetchrow(_ONE, endpoint_id, owner)
    return None if row is None else EndpointRow(*row)


async def endpoints(
    connection: Connection, *, owner: str | None, everyone: bool
) -> list[EndpointRow]:
    """`owner`'s endpoints (or every one, `everyone`), oldest first."""
    return [EndpointRow(*row) for row in await connection.fetch(_ALL, everyone, owner)]


async def update_endpoint(
    connection: Connection,
    endpoint_id: UUID,
    *,
    owner: str | None,
    url: str | None,
    types: tuple[bool, list[str] | None],
    description: tuple[bool, str | None],
    status: str | None,
) -> EndpointRow | None:
    row = await connection.fetchrow(_UPDATE, endpoint_id, owner, url, *types, *description, status)
    return None if row is None else EndpointRow(*row)


async def delete_endpoint(connection: Connection, endpoint_id: UUID, *, owner: str | None) -> bool:
    return await connection.fetchval(_DELETE, endpoint_id, owner) is not None


# The fan-out: the next events after the position the deliveries were made up to (in the
# feed's order, which never skips one: events/repository.py), a delivery for each enabled
# endpoint of the event's owner that takes its type (an endpoint gets the events fanned out
# after it was made: those committed after it, and any the sender had not reached), and
# the position moved past them; all in one statement, with the position's row locked
# (another sender's fan-out skips its turn meanwhile).
_FAN_OUT = """
    WITH position AS (
        SELECT xid, event_id FROM webhook_feed WHERE id = 1 FOR UPDATE SKIP LOCKED
    ), page AS (
        -- The position as two scalars (values known when the scan starts): the bound of
        -- the index scan. As a join, the scan read the whole feed and filtered it.
        SELECT e.id, e.xid, e.type, e.owner, e.created_at FROM events e
        WHERE (e.xid, e.id) > ((SELECT xid FROM position), (SELECT event_id FROM position))
          AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY e.xid, e.id
        LIMIT $1
    ), made AS (
        INSERT INTO webhook_deliveries (endpoint_id, event_id)
        SELECT w.id, e.id FROM page e JOIN webhook_endpoints w
            ON w.status = 'enabled' AND w.owner IS NOT DISTINCT FROM e.owner
           AND (w.types IS NULL OR e.type = ANY(w.types))
        ORDER BY e.xid, e.id
        RETURNING 1
    ), moved AS (
        UPDATE webhook_feed f SET xid = last.xid, event_id = last.id
        FROM (SELECT xid, id FROM page ORDER BY xid DESC, id DESC LIMIT 1) last
        WHERE f.id = 1
    )
    SELECT (SELECT count(*) FROM page) AS events, (SELECT count(*) FROM made) AS deliveries
"""
# Up to $1 deliveries that are due, each leased to the caller for $2 seconds: not due
# again until then (if its sender dies, it goes again after), skipping those another
# sender is claiming at this moment.
_CLAIM = """
    UPDATE webhook_deliveries d
    SET next_attempt_at = now() + make_interval(secs => $2::float8), attempts = d.attempts + 1
    FROM webhook_endpoints w
    WHERE d.id IN (
        SELECT id FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= now()
        ORDER BY next_attempt_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    ) AND w.id = d.endpoint_id
    RETURNING d.id, d.event_id, d.attempts, d.created_at, w.id AS endpoint_id, w.url, w.secret,
              w.status
"""
# An attempt's record; its delivery's new state, if the caller's claim still holds it
# (its lease may have ended, and another sender claimed it since: the later claim decides,
# and this one changes neither the delivery nor its endpoint); its endpoint's: failing
# since its first failure after a success, disabled once that is older than $8 seconds.
# Each success makes up to $13 more of its endpoint's deliveries that wait out a backoff
# due now, the longest-waiting first: a receiver back from an outage gets its backlog as
# fast as it answers (each answered one brings the next), not over the next hour of
# backoffs, and a few at a time, due beside other endpoints' deliveries rather than all
# ahead of them. Not those leased to a sender (their next attempt is at most a lease, $11
# seconds, away: a leased one is never claimed twice; against the clock as the statement
# runs, not its transaction's start, which a claim that committed just before the
# statement's snapshot may follow), nor those whose receiver asked to wait (`not_before`,
# from its `Retry-After`: $12 seconds, None without one).
#: Deliveries of its endpoint a success makes due now, at most (see `_RECORD`).
RECOVERED_PER_SUCCESS = 16
_RECORD = """
    WITH attempt AS (
        INSERT INTO webhook_attempts (delivery_id, status_code, duration_ms, error)
        VALUES ($1::bigint, $2::smallint, $3::int, $4::text)
    ), recovered AS (
        UPDATE webhook_deliveries SET next_attempt_at = now()
        WHERE id IN (
            SELECT d.id FROM webhook_deliveries d
            WHERE $7::boolean AND d.endpoint_id = $9::uuid AND d.status = 'pending'
              AND d.next_attempt_at > clock_timestamp() + make_interval(secs => $11::float8)
              AND (d.not_before IS NULL OR d.not_before <= now()) AND d.id <> $1::bigint
            ORDER BY d.next_attempt_at
            LIMIT $13
            FOR UPDATE SKIP LOCKED
        )
    ), delivery AS (
        UPDATE webhook_deliveries SET
            status = $5::text,
            next_attempt_at = now() + make_interval(secs => $6::float8),
            not_before = now() + make_interval(secs => $12::float8),
            finished_at = CASE WHEN $5::text = 'pending' THEN NULL ELSE now() END
        WHERE id = $1::bigint AND attempts = $10::int AND status = 'pending'
        RETURNING id
    )
    UPDATE webhook_endpoints w SET
        failing_since = CASE WHEN $7::boolean THEN NULL ELSE coalesce(w.failing_since, now()) END,
        status = CASE
            WHEN NOT $7::boolean
                 AND w.failing_since < now() - make_interval(secs => $8::float8)
            THEN 'disabled'
            ELSE w.status END
    FROM webhook_endpoints before, delivery
    WHERE w.id = $9::uuid AND before.id = w.id
    RETURNING before.status = 'enabled' AND w.status = 'disabled' AS disabled
"""
_REDELIVER = """
    INSERT INTO webhook_deliveries (endpoint_id, event_id)
    SELECT w.id, e.id FROM events e JOIN webhook_endpoints w
        ON w.owner IS NOT DISTINCT FROM e.owner AND w.status = 'enabled'
       AND (w.types IS NULL OR e.type = ANY(w.types))
    WHERE e.id = $1::bigint AND ($2::uuid IS NULL OR w.id = $2::uuid)
      AND NOT EXISTS (
          SELECT FROM webhook_deliveries d
          WHERE d.event_id = e.id AND d.endpoint_id = w.id AND d.status = 'pending'
      )
    RETURNING id
"""
_DELIVERIES = """
    SELECT d.id, d.endpoint_id, d.status, d.attempts, d.next_attempt_at, d.created_at,
           d.finished_at,
           coalesce(
               (SELECT json_agg(json_build_object(
                    'attempted_at', a.attempted_at, 'status_code', a.status_code,
                    'duration_ms', a.duration_ms, 'error', a.error) ORDER BY a.id)
                FROM webhook_attempts a WHERE a.delivery_id = d.id),
               '[]'
           )::text AS tries
    FROM webhook_deliveries d
    WHERE d.event_id = $1
    ORDER BY d.id
"""


# What the sender's gauges show: deliveries pending and the age of the oldest one's event;
# events not yet fanned out (counted up to a bound: the figure is an alarm, not a report).
_BACKLOG = """
    SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS pending,
           coalesce((
               SELECT extract(epoch FROM now() - min(e.created_at))
               FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
               WHERE d.status = 'pending'
           ), 0)::float8 AS age,
           (SELECT count(*) FROM (
               SELECT 1 FROM events e
               WHERE (e.xid, e.id) > (
                   (SELECT xid FROM webhook_feed WHERE id = 1),
                   (SELECT event_id FROM webhook_feed WHERE id = 1)
               )
               LIMIT 100000
           ) unfanned) AS unfanned
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a sender holds: its event, its attempt's number, when it was made, and
    its endpoint."""

    id: int
    event_id: int
    attempt: int
    created_at: datetime
    endpoint_id: UUID
    url: str
    secret: str
    endpoint_status: str


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    endpoint_id: UUID
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    finished_at: datetime | None
    tries: str  # JSON


async def fan_out(connection: Connection, limit: int) -> tuple[int, int]:
    """Deliveries for the next `limit` events at most: (events passed, deliveries made)."""
    row = await connection.fetchrow(_FAN_OUT, limit)
    assert row is not None
    return int(row["events"]), int(row["deliveries"])


async def claim(connection: Connection, limit: int, *, lease_seconds: float) -> list[Claimed]:
    return [Claimed(*row) for row in await connection.fetch(_CLAIM, limit, lease_seconds)]


async def record(
    connection: Connection,
    claimed: Claimed,
    *,
    status_code: int | None,
    duration_ms: int,
    error: str | None,
    outcome: str,
    retry_in: float,
    succeeded: bool,
    disable_after_seconds: float,
    lease_seconds: float,
    retry_after: float | None,
) -> bool:
    """Record an attempt and its outcome; true when it disabled its endpoint."""
    disabled = await connection.fetchval(
        _RECORD,
        claimed.id,
        status_code,
        duration_ms,
        error,
        outcome,
        retry_in,
        succeeded,
        disable_after_seconds,
        claimed.endpoint_id,
        claimed.attempt,
        lease_seconds,
        retry_after,
        RECOVERED_PER_SUCCESS,
    )
    return bool(disabled)


async def redeliver(connection: Connection, event_id: int, endpoint_id: UUID | None) -> list[int]:
    return [row[0] for row in await connection.fetch(_REDELIVER, event_id, endpoint_id)]


async def deliveries(connection: Connection, event_id: int) -> list[DeliveryRow]:
    return [DeliveryRow(*row) for row in await connection.fetch(_DELIVERIES, event_id)]


async def backlog(connection: Connection) -> tuple[int, float, int]:
    """(deliveries pending, age in seconds of the oldest one's event, events not yet fanned
    out)."""
    row = await connection.fetchrow(_BACKLOG)
    assert row is not None
    return int(row["pending"]), float(row["age"]), int(row["unfanned"])
