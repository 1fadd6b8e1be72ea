"""The SQL that moves money: the one-statement range write, and the statements of the
transaction that holds its wallets' row locks (`lock_wallets` until it ends), which the
caller owns."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from wallet_api.core.database import Connection
from wallet_api.core.idempotency import StoredResponse
from wallet_api.core.money import money_text
from wallet_api.posting.entries import HoldState


@dataclass(slots=True)
class EntriesWrite:
    """One statement's writes, as column arrays: each wallet's new balance, the ledger
    rows in the order they were applied, and the responses kept for Idempotency-Keys."""

    wallets: list[UUID] = field(default_factory=list)
    balances: list[int] = field(default_factory=list)
    row_wallets: list[UUID] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    amounts: list[int] = field(default_factory=list)
    balances_after: list[int] = field(default_factory=list)
    row_keys: list[str | None] = field(default_factory=list)
    row_api_keys: list[str | None] = field(default_factory=list)
    transfers: list[UUID | None] = field(default_factory=list)
    counterparties: list[UUID | None] = field(default_factory=list)
    reverses: list[int | None] = field(default_factory=list)
    descriptions: list[str | None] = field(default_factory=list)
    metadata: list[str | None] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    # What each moved wallet's holds set aside now, and each row's hold.
    held: list[int] = field(default_factory=list)
    row_holds: list[UUID | None] = field(default_factory=list)
    # The holds the entries open, and the states they leave the others in.
    new_holds: list[UUID] = field(default_factory=list)
    new_hold_wallets: list[UUID] = field(default_factory=list)
    new_hold_amounts: list[int] = field(default_factory=list)
    new_hold_expiries: list[datetime] = field(default_factory=list)
    new_hold_descriptions: list[str | None] = field(default_factory=list)
    new_hold_api_keys: list[str | None] = field(default_factory=list)
    new_hold_metadata: list[str | None] = field(default_factory=list)
    hold_ids: list[UUID] = field(default_factory=list)
    hold_remaining: list[int] = field(default_factory=list)
    hold_captured: list[int] = field(default_factory=list)
    hold_statuses: list[str] = field(default_factory=list)
    # The events the entries write: each row's (its number in `events`, from 1; None: no
    # event), and their types.
    row_events: list[int | None] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    #: The transaction's time (`Locked.at`): the rows' created_at.
    at: datetime | None = None


def held_now(wallet: str) -> str:
    """SQL: what the holds of `wallet` (a wallets row's alias) set aside now, by the
    database's clock: its stored `held` while none of its holds has expired (the common
    case: one column), else the sum of those that have not (an expired hold stops counting
    at its expiry, whether or not its release has been written yet).

    The sum is read in the statement's snapshot: in a statement that waited for the
    wallet's row lock it misses what committed meanwhile (a hold opened, captured), while
    the row itself is read as it is now. So a statement that locks the row trusts only the
    stored figure (`due`: a wallet whose figure is not it), and the locking transaction
    reads the sum again, after its locks, in a statement of its own."""
    return f"""(CASE WHEN {wallet}.holds_expire_at IS NULL OR {wallet}.holds_expire_at > now()
        THEN {wallet}.held
        ELSE (SELECT coalesce(sum(h.remaining), 0)::bigint FROM holds h
              WHERE h.wallet_id = {wallet}.id AND h.status = 'active' AND h.expires_at > now())
        END)"""


@dataclass(frozen=True, slots=True)
class Locked:
    """Wallets locked in a transaction: their balances, what their holds set aside now
    (`held`) and as stored (`stored_held`: expired holds still in it until released),
    and the transaction's timestamp."""

    balances: dict[UUID, int]
    held: dict[UUID, int]
    stored_held: dict[UUID, int]
    at: datetime


# Rows locked in id order, as every writer locks them (the range write too), so that
# transactions over overlapping wallets wait for each other, never in a cycle. The
# transaction's time (the created_at of the rows it writes): the clock once every lock is
# held (`clock_timestamp()`, not the transaction's start, which a wait for a lock may have
# left seconds behind: an entry is dated milliseconds before its commit), or the latest
# time of its wallets' entries if that is later (read under their locks: so a wallet's
# entries are in time order in its ledger's order; the range write's `stamp`).
_LOCK_WALLETS = """
    WITH locked AS (
        SELECT w.id, w.balance, w.held AS stored_held, w.last_entry_at,
               w.holds_expire_at IS NOT NULL AND w.holds_expire_at <= now() AS due
        FROM unnest($1::uuid[]) AS t(id) JOIN wallets w ON w.id = t.id
        ORDER BY w.id FOR UPDATE OF w
    )
    SELECT greatest(clock_timestamp(), max(last_entry_at)) AS at, array_agg(id) AS ids,
           array_agg(balance) AS balances, array_agg(stored_held) AS stored_held,
           array_agg(id) FILTER (WHERE due) AS due
    FROM locked
"""
# What the holds of wallets locked by the caller's transaction set aside now: read after
# the locks, in a statement of its own (a snapshot of its own: see `held_now`).
_HELD_NOW = f"""
    SELECT w.id, {held_now("w")} AS held
    FROM unnest($1::uuid[]) AS t(id) JOIN wallets w ON w.id = t.id
"""
# The holds an entry captures or releases, locked in id order before any wallet (the
# order every writer takes them in), with whether each has expired by the database's
# clock as it reads once it holds the row: not the transaction's start (`now()`), which a
# wait for the lock may have left behind the expiry.
_LOCK_HOLDS = """
    WITH locked AS (
        SELECT h.id, h.remaining, h.captured, h.status, h.expires_at
        FROM unnest($1::uuid[]) AS t(id) JOIN holds h ON h.id = t.id
        ORDER BY h.id FOR UPDATE OF h
    )
    SELECT id, remaining, captured, status, expires_at <= clock_timestamp() AS expired
    FROM locked
"""
# Up to $1 holds past their expiry that are still active, oldest expiry first, locked in id
# order, skipping those another transaction holds (a capture, another instance's sweep).
_LOCK_DUE_HOLDS = """
    SELECT h.id, h.wallet_id, h.remaining, h.captured, h.status, h.metadata::text
    FROM holds h
    WHERE h.id IN (
        SELECT id FROM holds WHERE status = 'active' AND expires_at <= now()
        ORDER BY expires_at LIMIT $1
    ) AND h.status = 'active'
    ORDER BY h.id FOR UPDATE OF h SKIP LOCKED
"""
# The first expiry of each wallet's active holds, after a transaction changed them.
_NOTE_HOLD_EXPIRIES = """
    UPDATE wallets w SET holds_expire_at = (
        SELECT min(h.expires_at) FROM holds h WHERE h.wallet_id = w.id AND h.status = 'active'
    )
    FROM unnest($1::uuid[]) AS t(id) WHERE w.id = t.id
"""
# Those of the rows that a reversal compensates already.
_REVERSED = """
    SELECT o.reverses_id FROM unnest($1::bigint[]) AS t(id)
    JOIN wallet_operations o ON o.reverses_id = t.id
"""
_STORED_RESPONSES = """
    SELECT key, fingerprint, response_status, response_body
    FROM unnest($1::text[]) AS t(key) JOIN idempotency_keys USING (key)
"""
# The balances are the exact ones planned under the row locks. Identity values follow
# the ORDER BY: a wallet's rows get ids in the order they were applied.
# The events of the entries a statement wrote (its CTE `ledger`: the rows it wrote, each
# with its event's number, its wallet's owner and its `seq`; `{entered}`: their ids,
# returned by the INSERT): one per entry and owner of its wallets (a transfer to another
# owner's wallet is an event of each), on the owner's first wallet, with the entry's rows
# on that owner's wallets only. Their ids follow the order of the entries. A row's id is
# found by its place: `{entered}` inserted every row of `ledger` in `n` order, and identity
# values follow that order, so the k-th row by `n` has the k-th smallest id (a join on
# the wallet and its number would be planned, generically, as nested loops: quadratic in
# a batch's rows, 0.26 million comparisons for 512). One grouping, no sort of the whole
# statement's rows beyond their numbering (each group's arrays are ordered on their own).
_EVENTS = """, evented AS (
        INSERT INTO events (xid, type, owner, wallet_id, ledger_ids)
        SELECT (SELECT xid FROM stamp), t.type, g.owner, g.wallet_ids[1], g.ids
        FROM (
            SELECT r.event, r.owner, min(r.n) AS n, array_agg(r.id ORDER BY r.n) AS ids,
                   array_agg(r.wallet_id ORDER BY r.n) AS wallet_ids
            FROM (
                SELECT l.event, l.owner, l.n, l.wallet_id,
                       (SELECT array_agg(id ORDER BY id) FROM {entered})[
                           row_number() OVER (ORDER BY l.n)
                       ] AS id
                FROM ledger l
            ) r
            WHERE r.event IS NOT NULL GROUP BY r.event, r.owner
        ) g
        JOIN unnest({types}::text[]) WITH ORDINALITY AS t(type, event) USING (event)
        ORDER BY g.event, g.n
        RETURNING id
    )"""
# The balance monitors of the wallets a statement moved (its CTE `{moved}`: each moved
# wallet's id and its available balance now, its balance less what its holds set aside as
# stored): each whose wallet went across its threshold, or back, has its state flipped,
# and one that went across writes its event (when the statement writes events at all:
# `{types}` names some), after the entries' events (it reads `evented` whole first: its
# ids follow theirs). A wallet's monitors are changed only by a statement that holds its
# row lock, so one crossing flips its monitor once.
_MONITORS = """, monitored AS (
        UPDATE balance_monitors m SET across = c.across
        FROM (
            SELECT b.id, v.available, CASE b.condition
                WHEN 'below' THEN v.available < b.threshold
                ELSE v.available > b.threshold END AS across
            FROM {moved} v JOIN balance_monitors b ON b.wallet_id = v.id
        ) c
        WHERE m.id = c.id AND m.across <> c.across
        RETURNING m.id, m.wallet_id, m.owner, m.condition, m.threshold, m.across, c.available
    ), triggered AS (
        INSERT INTO events (xid, type, owner, wallet_id, detail)
        SELECT (SELECT xid FROM stamp), 'balance_monitor.triggered', t.owner, t.wallet_id,
               jsonb_build_object(
                   'monitor_id', t.id, 'condition', t.condition, 'threshold', t.threshold,
                   'available', t.available)
        FROM monitored t, (SELECT count(*) FROM evented) AS after_the_entries
        WHERE t.across AND cardinality({types}::text[]) > 0
        ORDER BY t.wallet_id, t.id
    )"""
_WRITE_ENTRIES = f"""
    WITH stamp AS (
        SELECT greatest(pg_current_xact_id(), max(w.last_event_xid)) AS xid
        FROM unnest($1::uuid[]) AS t(id) JOIN wallets w ON w.id = t.id
    ), ledger AS (
        SELECT r.*, w.owner,
               w.seq + row_number() OVER (PARTITION BY r.wallet_id ORDER BY r.n) AS seq
        FROM unnest(
            $3::uuid[], $4::text[], $5::bigint[], $6::bigint[], $7::text[],
            $8::uuid[], $9::uuid[], $10::bigint[], $11::text[], $16::text[], $18::uuid[],
            $29::bigint[], $32::text[]
        ) WITH ORDINALITY AS r(
            wallet_id, kind, amount, balance_after, key,
            transfer_id, counterparty, reverses, description, api_key, hold, event, metadata, n
        )
        JOIN wallets w ON w.id = r.wallet_id
    ), moved AS (
        UPDATE wallets w SET balance = m.balance, held = m.held, seq = w.seq + m.rows,
               last_entry_at = CASE WHEN m.rows = 0 THEN w.last_entry_at ELSE $31 END,
               last_event_xid = CASE
                   WHEN m.rows = 0 THEN w.last_event_xid ELSE (SELECT xid FROM stamp) END
        FROM unnest($1::uuid[], $2::bigint[], $17::bigint[], $34::int[])
            AS m(id, balance, held, rows)
        WHERE w.id = m.id
        RETURNING w.id, w.balance - w.held AS available
    ), opened AS (
        INSERT INTO holds (
            id, wallet_id, amount, remaining, status, expires_at, description, api_key_id,
            metadata
        )
        SELECT n.id, n.wallet_id, n.amount, n.amount, 'active', n.expires_at, n.description,
               n.api_key, n.metadata::jsonb
        FROM unnest(
            $19::uuid[], $20::uuid[], $21::bigint[], $22::timestamptz[], $23::text[], $24::text[],
            $33::text[]
        ) AS n(id, wallet_id, amount, expires_at, description, api_key, metadata)
    ), changed AS (
        UPDATE holds h SET remaining = c.remaining, captured = c.captured, status = c.status,
               closed_at = CASE WHEN c.status = 'active' THEN NULL ELSE now() END
        FROM unnest($25::uuid[], $26::bigint[], $27::bigint[], $28::text[])
            AS c(id, remaining, captured, status)
        WHERE h.id = c.id
    ), entered AS (
        INSERT INTO wallet_operations (
            wallet_id, operation, amount, balance_after, idempotency_key,
            transfer_id, counterparty_wallet_id, reverses_id, description, api_key_id, hold_id,
            seq, created_at, metadata
        )
        SELECT r.wallet_id, r.kind, r.amount, r.balance_after, r.key,
               r.transfer_id, r.counterparty, r.reverses, r.description, r.api_key, r.hold,
               r.seq, $31, r.metadata::jsonb
        FROM ledger r
        ORDER BY r.n
        RETURNING id, wallet_id, seq
    ){_EVENTS.format(entered="entered", types="$30")}{_MONITORS.format(moved="moved", types="$30")}
    INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body)
    SELECT * FROM unnest($12::text[], $13::text[], $14::smallint[], $15::text[])
"""


#: A wallet in the range write: id, total, low, high, part, the part's size, and the
#: range of its available balance (its balance less what its holds set aside now).
RangeWallet = tuple[UUID, int, int, int, int, int, int, int]
#: A ledger row of the range write: wallet, kind, amount, balance after less the wallet's
#: start, Idempotency-Key, transfer, counterparty, description, API key, hold, the
#: number of its entry's event (None: no event), and its metadata (JSON text).
RangeRow = tuple[
    UUID,
    str,
    int,
    int,
    str | None,
    UUID | None,
    UUID | None,
    str | None,
    str | None,
    UUID | None,
    int | None,
    str | None,
]
#: A hold the range write opens: its id, wallet, amount, seconds it lasts, description, API
#: key, metadata (JSON text).
RangeHold = tuple[UUID, UUID, int, int, str | None, str | None, str | None]
#: A response kept for a key: the wallet it is written with, key, fingerprint, status,
#: body (or None: the text around the balance, known only in the statement), the balance
#: after its entry less the wallet's start, the text before it and after it.
RangeKey = tuple[UUID, str, str, int, str | None, int, str | None, str | None]


@dataclass(slots=True)
class RangeWrite:
    """A batch written in one statement (one round trip), row by row; the statement takes
    them as column arrays.

    The batch is cut into parts that share no wallet (`plan.parts`). Each wallet of a
    part has the range of balances its plan holds on ([low, high]; low = high = the
    planned balance where a kept refusal quotes it) and its total; a part is written only
    if every one of its `size` wallets exists and lies in its range: each wallet then
    gets its total added, its ledger rows and kept responses are written, each balance as
    an offset from the balance found. Checked wallets are only read: a part of refusals
    stands if the balances read still give them. A written part's new holds are opened
    with it (their wallets' `held` and first expiry moved to match)."""

    wallets: list[RangeWallet] = field(default_factory=list)
    rows: list[RangeRow] = field(default_factory=list)
    keys: list[RangeKey] = field(default_factory=list)
    checked: list[UUID] = field(default_factory=list)
    holds: list[RangeHold] = field(default_factory=list)
    #: The types of the events the entries write (a row names its event by number).
    events: list[str] = field(default_factory=list)


def _columns(rows: list[Any], width: int) -> list[Any]:
    """Row tuples as `width` column arrays (empty ones for no rows), a column of NULLs alone
    sent empty: the statement reads the columns of one table together (`unnest` of several
    arrays), which pads a shorter array with NULLs, and asyncpg's encoding of an array
    costs a few type checks per element (a deposit's row is mostly NULLs)."""
    if not rows:
        return [()] * width
    return [
        () if column.count(None) == len(column) else column for column in zip(*rows, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Found:
    """What the statement found for one wallet: `start`, the balance its part was
    written on (None when its part was not written, or it was only checked), `balance`,
    its balance (current: the row was locked, or read in the statement), and `held`, what
    its holds set aside then."""

    start: int | None
    balance: int
    held: int = 0
    #: A hold of the wallet has expired, its release not yet written: `held` was summed
    #: in the statement's snapshot (see `held_now`), and the wallet is not written here.
    due: bool = False


# One statement, its own commit. `locked` takes the written wallets' row locks in id order
# (as every writer takes them: two statements, or a statement and a locking transaction,
# over overlapping wallets wait for each other in one order, never in a cycle); under the
# lock the balance read is the current one. `fitting`: the parts whose every wallet exists
# and lies in its range; only those are moved, their rows and kept responses written
# (identity values follow the ORDER BY: a wallet's rows get ids in the order they were
# applied; `now()`, the transaction's timestamp, is their created_at). The new balance is
# the locked one plus the total, never `w.balance` plus it: the UPDATE reads its target
# rows in the statement's snapshot, which may predate a commit the lock waited for, and
# PostgreSQL checks the constraints on the row it computes from that version before it
# finds the newer one (a balance below zero would fail the statement). A key used before,
# or stored meanwhile by another transaction, fails the whole statement (unique violation
# of the key's primary key) and nothing is written: the index is the check, so a batch of
# new keys pays no look-up. The answer: each wallet's start (written) and balance.
def _write_range_sql(*, holds: bool) -> str:
    """The range write; `holds`: the variant that also opens holds (a deposit does not pay
    for their columns)."""
    rest = 34 if holds else 27  # the number of the first parameter after the holds'
    if holds:
        held = """,
            held = l.stored_held + n.amount,
            holds_expire_at = least(l.holds_expire_at, n.first_expiry)
        FROM stamp s, locked l JOIN fitting f ON f.part = l.part
        LEFT JOIN LATERAL (
            SELECT coalesce(sum(o.amount), 0) AS amount,
                   min(now() + o.seconds * interval '1 second') AS first_expiry
            FROM opening o WHERE o.wallet_id = l.id
        ) n ON true"""
        opening = """, opening AS (
        SELECT * FROM unnest(
            $27::uuid[], $28::uuid[], $29::bigint[], $30::int[], $31::text[], $32::text[],
            $33::text[]
        ) AS o(id, wallet_id, amount, seconds, description, api_key, metadata)
    )"""
        opened = """, opened AS (
        INSERT INTO holds (
            id, wallet_id, amount, remaining, status, expires_at, description, api_key_id,
            metadata
        )
        SELECT o.id, o.wallet_id, o.amount, o.amount, 'active',
               now() + o.seconds * interval '1 second', o.description, o.api_key,
               o.metadata::jsonb
        FROM opening o JOIN updated u ON u.id = o.wallet_id
    )"""
    else:
        held = """
        FROM stamp s, locked l JOIN fitting f ON f.part = l.part"""
        opening = opened = ""
    return f"""
    WITH locked AS (
        SELECT w.id, w.balance, {held_now("w")} AS held, w.held AS stored_held,
               w.holds_expire_at, coalesce(w.holds_expire_at <= now(), false) AS due,
               w.seq, w.owner, w.last_entry_at, w.last_event_xid,
               i.delta, i.low, i.high, i.part, i.size, i.available_low, i.available_high,
               i.rows
        FROM unnest(
            $1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::int[], $6::int[],
            $25::bigint[], $26::bigint[], ${rest + 4}::int[]
        ) AS i(id, delta, low, high, part, size, available_low, available_high, rows)
        JOIN wallets w ON w.id = i.id
        ORDER BY w.id FOR UPDATE OF w
    ), stamp AS (
        SELECT greatest(clock_timestamp(), max(last_entry_at)) AS at,
               greatest(pg_current_xact_id(), max(last_event_xid)) AS xid
        FROM locked
    ), fitting AS (
        SELECT part FROM locked GROUP BY part
        HAVING count(*) = min(size) AND bool_and(
            balance BETWEEN low AND high
            AND balance - held BETWEEN available_low AND available_high
            AND NOT due
        )
    ){opening}, updated AS (
        UPDATE wallets w SET balance = l.balance + l.delta, seq = l.seq + l.rows,
               last_entry_at = CASE WHEN l.rows > 0 THEN s.at ELSE l.last_entry_at END,
               last_event_xid = CASE WHEN l.rows > 0 THEN s.xid ELSE l.last_event_xid END{held}
        WHERE w.id = l.id
        RETURNING w.id, l.balance AS start, l.seq AS start_seq, l.owner,
                  w.balance - w.held AS available
    ){opened}, ledger AS (
        SELECT r.*, u.start + r.offset_after AS balance_after, u.owner,
               u.start_seq + row_number() OVER (PARTITION BY r.wallet_id ORDER BY r.n) AS seq
        FROM unnest(
            $7::uuid[], $8::text[], $9::bigint[], $10::bigint[], $11::text[],
            $12::uuid[], $13::uuid[], $14::text[], $15::text[], ${rest}::uuid[],
            ${rest + 1}::bigint[], ${rest + 3}::text[]
        ) WITH ORDINALITY AS r(
            wallet_id, kind, amount, offset_after, key,
            transfer_id, counterparty, description, api_key, hold, event, metadata, n
        )
        JOIN updated u ON u.id = r.wallet_id
    ), inserted AS (
        INSERT INTO wallet_operations (
            wallet_id, operation, amount, balance_after, idempotency_key,
            transfer_id, counterparty_wallet_id, description, api_key_id, hold_id, seq,
            created_at, metadata
        )
        SELECT r.wallet_id, r.kind, r.amount, r.balance_after, r.key,
               r.transfer_id, r.counterparty, r.description, r.api_key, r.hold, r.seq, s.at,
               r.metadata::jsonb
        FROM ledger r, stamp s
        ORDER BY r.n
        RETURNING id, wallet_id, seq
    ){_EVENTS.format(entered="inserted", types=f"${rest + 2}")}{
        _MONITORS.format(moved="updated", types=f"${rest + 2}")
    }, remembered AS (
        INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body)
        SELECT k.key, k.fingerprint, k.status,
               coalesce(k.body, k.prefix || {money_text("u.start + k.offset_after")} || k.suffix)
        FROM unnest(
            $16::uuid[], $17::text[], $18::text[], $19::smallint[], $20::text[], $21::bigint[],
            $22::text[], $23::text[]
        ) AS k(wallet_id, key, fingerprint, status, body, offset_after, prefix, suffix)
        JOIN updated u ON u.id = k.wallet_id
    )
    SELECT l.id, u.start, l.balance, l.held, s.at, l.due
    FROM stamp s, locked l LEFT JOIN updated u ON u.id = l.id
    UNION ALL
    SELECT w.id, NULL, w.balance, {held_now("w")}, s.at, false
    FROM stamp s, unnest($24::uuid[]) AS c(id) JOIN wallets w ON w.id = c.id
"""


_WRITE_RANGE = _write_range_sql(holds=False)
_WRITE_RANGE_OPENING_HOLDS = _write_range_sql(holds=True)


def _rows_per_wallet(wallets: Sequence[UUID], row_wallets: Sequence[UUID]) -> list[int]:
    """How many of the ledger rows (named by their wallets) each of `wallets` gets: counted
    here, not by a join in the statement (a generic plan nests such a join's loops:
    quadratic in a batch's wallets)."""
    counts = Counter(row_wallets)
    return [counts[wallet_id] for wallet_id in wallets]


def range_statement(write: RangeWrite) -> tuple[str, list[Any]]:
    """The range write's statement for `write` (with or without holds), and its arguments."""
    wallets = _columns(write.wallets, 8)
    ledger_rows = _columns(write.rows, 12)
    arguments = [
        *wallets[:6],
        *ledger_rows[:9],
        *_columns(write.keys, 8),
        write.checked,
        *wallets[6:],
    ]
    if write.holds:
        arguments += _columns(write.holds, 7)
        statement = _WRITE_RANGE_OPENING_HOLDS
    else:
        statement = _WRITE_RANGE
    arguments += [
        ledger_rows[9],
        ledger_rows[10],
        write.events,
        ledger_rows[11],
        _rows_per_wallet(wallets[0], ledger_rows[0]),
    ]
    return statement, arguments


async def write_range(
    connection: Connection, write: RangeWrite
) -> tuple[dict[UUID, Found], datetime | None]:
    """Write `write` in one statement: what it found for each wallet that exists, and
    the transaction's timestamp (None when it named no wallet that exists)."""
    statement, arguments = range_statement(write)
    rows = await connection.fetch(statement, *arguments)
    found = {
        row["id"]: Found(row["start"], row["balance"], row["held"], row["due"]) for row in rows
    }
    return found, rows[0]["at"] if rows else None


async def lock_wallets(connection: Connection, wallet_ids: Sequence[UUID]) -> Locked:
    """Lock the rows of those of `wallet_ids` that exist until the transaction ends;
    their balances, what their holds set aside, and the transaction's timestamp."""
    row = await connection.fetchrow(_LOCK_WALLETS, wallet_ids)
    assert row is not None
    ids = row["ids"] or ()
    stored_held = dict(zip(ids, row["stored_held"] or (), strict=True))
    held = dict(stored_held)
    if row["due"]:  # a hold of theirs has expired: what the others set aside, read now
        held.update(
            (each["id"], each["held"]) for each in await connection.fetch(_HELD_NOW, row["due"])
        )
    return Locked(
        balances=dict(zip(ids, row["balances"] or (), strict=True)),
        held=held,
        stored_held=stored_held,
        at=row["at"],
    )


async def reversed_rows(connection: Connection, row_ids: Collection[int]) -> set[int]:
    """Those of the ledger rows `row_ids` that a reversal compensates already."""
    return {row[0] for row in await connection.fetch(_REVERSED, list(row_ids))}


async def stored_responses(
    connection: Connection, keys: Collection[str]
) -> dict[str, StoredResponse]:
    """The responses kept for those of `keys` that were used before."""
    rows = await connection.fetch(_STORED_RESPONSES, list(keys))
    return {
        row["key"]: StoredResponse(row["fingerprint"], row["response_status"], row["response_body"])
        for row in rows
    }


async def write_entries(connection: Connection, write: EntriesWrite) -> None:
    """Write the balances, the ledger rows and the kept responses in one statement."""
    await connection.execute(
        _WRITE_ENTRIES,
        write.wallets,
        write.balances,
        write.row_wallets,
        write.kinds,
        write.amounts,
        write.balances_after,
        write.row_keys,
        write.transfers,
        write.counterparties,
        write.reverses,
        write.descriptions,
        write.keys,
        write.fingerprints,
        write.statuses,
        write.bodies,
        write.row_api_keys,
        write.held,
        write.row_holds,
        write.new_holds,
        write.new_hold_wallets,
        write.new_hold_amounts,
        write.new_hold_expiries,
        write.new_hold_descriptions,
        write.new_hold_api_keys,
        write.hold_ids,
        write.hold_remaining,
        write.hold_captured,
        write.hold_statuses,
        write.row_events,
        write.events,
        write.at,
        write.metadata,
        write.new_hold_metadata,
        _rows_per_wallet(write.wallets, write.row_wallets),
    )


async def note_hold_expiries(connection: Connection, wallet_ids: Sequence[UUID]) -> None:
    """Keep each wallet's first expiry of its active holds, after the holds changed."""
    await connection.execute(_NOTE_HOLD_EXPIRIES, wallet_ids)


@dataclass(frozen=True, slots=True)
class DueHold:
    """A hold past its expiry, still active, locked: its wallet, what it holds, and the
    metadata it was made with (JSON text), which its release is written with."""

    id: UUID
    wallet_id: UUID
    state: HoldState
    metadata: str | None = None


async def lock_due_holds(connection: Connection, limit: int) -> list[DueHold]:
    """Lock up to `limit` holds that have expired and are still active (see the SQL)."""
    rows = await connection.fetch(_LOCK_DUE_HOLDS, limit)
    return [
        DueHold(
            row["id"],
            row["wallet_id"],
            HoldState(row["remaining"], True, row["captured"], row["status"]),
            row["metadata"],
        )
        for row in rows
    ]


async def lock_holds(connection: Connection, hold_ids: Sequence[UUID]) -> dict[UUID, HoldState]:
    """Lock those of the holds `hold_ids` that exist, in id order; their states."""
    rows = await connection.fetch(_LOCK_HOLDS, hold_ids)
    return {
        row["id"]: HoldState(row["remaining"], row["expired"], row["captured"], row["status"])
        for row in rows
    }


# Claims an Idempotency-Key for a batch request, in the caller's transaction or its own
# (one statement): true when this request is the key's first. A concurrent first request's
# claim is waited for (the key's unique index), so a false here sees a committed row.
_CLAIM_KEY = """
    WITH claimed AS (
        INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (key) DO NOTHING
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM claimed)
"""
_KEEP_RESPONSE = """
    UPDATE idempotency_keys SET response_status = $2, response_body = $3 WHERE key = $1
"""


async def claim_key(
    connection: Connection, key: str, *, fingerprint: str, status: int, body: str
) -> bool:
    """Store `key` with a response unless it is stored already; true if it was not."""
    return bool(await connection.fetchval(_CLAIM_KEY, key, fingerprint, status, body))


async def keep_response(connection: Connection, key: str, *, status: int, body: str) -> None:
    """Replace the response kept for a key claimed in the caller's transaction."""
    await connection.execute(_KEEP_RESPONSE, key, status, body)
