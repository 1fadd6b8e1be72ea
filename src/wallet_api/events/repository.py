"""The SQL of the feed: a page of events in the order of the transactions that wrote
them, and the ledger rows and holds they name.

Why the order never skips an event: an event's id comes from a sequence, drawn before its
transaction commits, so ids commit out of order (a transaction that drew 7 may commit
after one that drew 8): a reader that went on from "after 8" would never see 7. Each
event also carries the id of the transaction that wrote it (`xid`, assigned increasing),
and a page holds only events whose transaction is older than every transaction still
running (`xid < pg_snapshot_xmin(pg_current_snapshot())`, read in the page's own
snapshot): such a transaction has committed (its events are all visible) or aborted (it
has none), and a transaction not yet begun gets a larger xid. So the events at or below
any position a page reached are all there is to see there, now and later, and the feed in
(xid, id) order only ever grows at its end. The cost: an event waits for the oldest write
transaction running when it is read (a writer's transaction lasts milliseconds; a long one
holds the feed back for as long as it runs: docs/EVENTS.md).

A wallet's events are in its order (`seq`) in the feed: a transaction that locked one
wallet, then waited for a second, got its id before the transaction it waited for, so its
`xid` is placed at the latest `xid` of its wallets' events if that is later
(`wallets.last_event_xid`, read under their locks: posting/repository.py). A placed `xid`
is never below its writer's own, so the rule above still holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from wallet_api.core.database import Connection

# A page, and the position of the last event the page's snapshot shows at all (`last`,
# whatever its type): in the same statement, hence the same snapshot. A page of filtered
# events that is not full examined every event up to there, so its reader goes on from
# there instead of examining them again (a long-poll looks many times).
_PAGE = """
    WITH last AS (
        SELECT e.xid, e.id FROM events e
        WHERE {owner} AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY e.xid DESC, e.id DESC
        LIMIT 1
    )
    SELECT p.*, last.xid::text AS last_xid, last.id AS last_id
    FROM last LEFT JOIN LATERAL (
        SELECT e.id, e.xid::text AS xid, e.type, e.owner, e.wallet_id, e.ledger_ids,
               e.created_at, e.detail::text AS detail,
               (SELECT w.currency FROM wallets w WHERE w.id = e.wallet_id) AS currency,
               (SELECT w.currency_exponent FROM wallets w WHERE w.id = e.wallet_id)
                   AS currency_exponent
        FROM events e
        WHERE {owner} AND (e.xid, e.id) > ($1::text::xid8, $2::bigint)
          AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
          AND ($4::text[] IS NULL OR e.type = ANY($4::text[]))
        ORDER BY e.xid, e.id
        LIMIT $5
    ) p ON true
"""
#: An owner's events (ix_events_owner_xid_id), or every event (without keys: ix_events_xid_id).
_OWNER_PAGE = _PAGE.format(owner="e.owner = $3::text")
_ALL_PAGE = _PAGE.format(owner="$3::text IS NULL")
_ONE = """
    SELECT e.id, e.xid::text AS xid, e.type, e.owner, e.wallet_id, e.ledger_ids, e.created_at,
           e.detail::text AS detail,
           (SELECT w.currency FROM wallets w WHERE w.id = e.wallet_id) AS currency,
               (SELECT w.currency_exponent FROM wallets w WHERE w.id = e.wallet_id)
                   AS currency_exponent
    FROM events e WHERE e.id = $1 AND ($2::text IS NULL OR e.owner = $2::text)
"""
_BY_IDS = """
    SELECT e.id, e.xid::text AS xid, e.type, e.owner, e.wallet_id, e.ledger_ids, e.created_at,
           e.detail::text AS detail,
           (SELECT w.currency FROM wallets w WHERE w.id = e.wallet_id) AS currency,
               (SELECT w.currency_exponent FROM wallets w WHERE w.id = e.wallet_id)
                   AS currency_exponent
    FROM unnest($1::bigint[]) AS t(id) JOIN events e ON e.id = t.id
"""
_LEGS = """
    SELECT o.id, o.wallet_id, o.seq, o.operation, o.amount, o.balance_after, o.created_at,
           o.idempotency_key, o.transfer_id, o.counterparty_wallet_id, o.reverses_id,
           o.description, o.hold_id, w.owner, o.metadata::text
    FROM unnest($1::bigint[]) AS t(id)
    JOIN wallet_operations o ON o.id = t.id
    JOIN wallets w ON w.id = o.wallet_id
"""
_HOLDS = """
    SELECT h.id, h.wallet_id, h.amount, h.expires_at, h.description, w.owner, h.metadata::text
    FROM unnest($1::uuid[]) AS t(id) JOIN holds h ON h.id = t.id
    JOIN wallets w ON w.id = h.wallet_id
"""
# Oldest first, a bounded number at a time: the head of the feed's index, never a scan of
# the rest (an event's age follows its place closely enough for retention).
_PURGE = """
    WITH oldest AS (
        SELECT id, created_at FROM events ORDER BY xid, id LIMIT $2
    ), purged AS (
        DELETE FROM events WHERE id IN (
            SELECT id FROM oldest WHERE created_at < now() - make_interval(secs => $1)
        )
        RETURNING 1
    )
    SELECT count(*) FROM purged
"""


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    xid: int
    type: str
    owner: str | None
    wallet_id: UUID
    ledger_ids: list[int]
    created_at: datetime
    detail: str | None  # JSON
    currency: str  # its wallet's
    currency_exponent: int  # its wallet's, as stored


@dataclass(frozen=True, slots=True)
class LegRow:
    id: int
    wallet_id: UUID
    seq: int | None
    operation: str
    amount: int
    balance_after: int
    created_at: datetime
    idempotency_key: str | None
    transfer_id: UUID | None
    counterparty_wallet_id: UUID | None
    reverses_id: int | None
    description: str | None
    hold_id: UUID | None
    owner: str | None
    metadata: str | None  # JSON text, as stored


@dataclass(frozen=True, slots=True)
class HoldFacts:
    """What never changes about a hold, and whose it is (its wallet's owner)."""

    id: UUID
    wallet_id: UUID
    amount: int
    expires_at: datetime
    description: str | None
    owner: str | None
    metadata: str | None  # JSON text, as stored


def _event(row: object) -> EventRow:
    values = list(row)  # type: ignore[call-overload]
    values[1] = int(values[1])
    return EventRow(*values)


async def page(
    connection: Connection,
    *,
    after: tuple[int, int],
    owner: str | None,
    types: list[str] | None,
    limit: int,
) -> tuple[list[EventRow], tuple[int, int] | None]:
    """Up to `limit` events after the position `after` (xid, id), in the feed's order:
    `owner`'s, or every one (None); and the position of the last event that can be read
    now, whatever its type (None: there is none)."""
    statement = _ALL_PAGE if owner is None else _OWNER_PAGE
    rows = await connection.fetch(statement, str(after[0]), after[1], owner, types, limit)
    if not rows:
        return [], None
    last = (int(rows[0]["last_xid"]), rows[0]["last_id"])
    events = [_event(row[:10]) for row in rows if row["id"] is not None]
    return events, last


async def one(connection: Connection, event_id: int, *, owner: str | None) -> EventRow | None:
    row = await connection.fetchrow(_ONE, event_id, owner)
    return None if row is None else _event(row)


async def by_ids(connection: Connection, event_ids: list[int]) -> list[EventRow]:
    """The events of those ids that are kept, whoever's."""
    return [_event(row) for row in await connection.fetch(_BY_IDS, event_ids)]


async def legs(connection: Connection, ledger_ids: list[int]) -> dict[int, LegRow]:
    rows = await connection.fetch(_LEGS, ledger_ids)
    return {row["id"]: LegRow(*row) for row in rows}


async def holds(connection: Connection, hold_ids: list[UUID]) -> dict[UUID, HoldFacts]:
    rows = await connection.fetch(_HOLDS, hold_ids)
    return {row["id"]: HoldFacts(*row) for row in rows}


async def purge(connection: Connection, *, older_than_seconds: float, limit: int) -> int:
    """Delete up to `limit` of the oldest events older than the given age; how many."""
    return int(await connection.fetchval(_PURGE, older_than_seconds, limit))
