"""All SQL for wallets. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import orjson

from wallet_api.core.database import Connection
from wallet_api.core.money import Currency
from wallet_api.posting.entries import CREDIT_KINDS, UNMOVING_KINDS
from wallet_api.posting.repository import held_now
from wallet_api.wallets.models import wallet_metadata


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    operation: str
    amount: int
    balance_after: int
    created_at: datetime
    idempotency_key: str | None
    transfer_id: UUID | None
    counterparty_wallet_id: UUID | None
    reverses_id: int | None
    description: str | None
    reversed_by_id: int | None
    hold_id: UUID | None
    metadata: str | None = None  # JSON text, as stored


# Wallets are looked up by joining the array of their ids (`unnest`), never with
# `id = ANY($1)`: under a generic plan (plan_cache_mode, core/database.py) that filter is
# not hashed, and a scan tested every row against every id (a 1,000-wallet batch took
# 200-350 ms instead of under 20).
_READ_BALANCES = """
    SELECT w.id, w.balance FROM unnest($1::uuid[]) AS t(id) JOIN wallets w ON w.id = t.id
"""
# One statement (one round trip, its own commit): the wallet, and with an Idempotency-Key
# ($2) the response to replay for it.
_INSERT_WALLET = """
    WITH created AS (
        INSERT INTO wallets (id, owner, currency, currency_exponent, metadata, last_event_xid)
        VALUES ($1, $5, $7, $9, $8::jsonb, pg_current_xact_id())
        RETURNING id, owner
    ), evented AS (
        INSERT INTO events (type, owner, wallet_id)
        SELECT 'wallet.created', owner, id FROM created WHERE $6::boolean
    )
    INSERT INTO idempotency_keys (key, fingerprint, response_status, response_body)
    SELECT $2::text, $3::text, 201, $4::text FROM created WHERE $2::text IS NOT NULL
"""
_WALLET_EXISTS = "SELECT EXISTS (SELECT FROM wallets WHERE id = $1)"
# A wallet's balance and what its holds set aside now (expired ones no longer count).
_BALANCES = f"""
    SELECT w.balance, {held_now("w")} AS held, w.metadata::text AS metadata
    FROM wallets w WHERE w.id = $1
"""
_WALLET_OWNERS = """
    SELECT w.id, w.owner FROM unnest($1::uuid[]) AS t(id) JOIN wallets w ON w.id = t.id
"""
_WALLET_CURRENCIES = """
    SELECT w.id, w.currency, w.currency_exponent
    FROM unnest($1::uuid[]) AS t(id) JOIN wallets w ON w.id = t.id
"""


# A page of the ledger, newest first, below the row `$2` (its cursor), with each row the
# reversal that compensates it, if any (at most one: a unique index). Optionally only
# rows of the kinds `$3`, and only those dated in [`$4`, `$5`). A wallet's rows are in
# time order in id order (revision f3c1a9e57b20), so the page is read from the wallet's
# index by time (ix_wallet_operations_wallet_id_created_at), newest first: the time
# bounds and the cursor's time (looked up by its id, on this wallet only: another
# wallet's row would tell the caller when it was written) are where the scan starts and
# stops, and only the rows of the cursor's own time are compared by id too (not as a row
# comparison: a backward scan does not start at one, and read the wallet's index from
# its end). (By id, a generic plan chose the primary key's range and read every wallet's
# rows in it.) At most `$6` rows are examined; of those, up to `$7` of the kinds asked
# for are the page. `examined` tells the caller how many were, and the lowest id among
# them.
def _history_sql(*, by_metadata: bool) -> str:
    """The history's page; `by_metadata`: the variant filtered by metadata (below)."""
    matched, rows = "", "wallet_operations o"
    if by_metadata:
        matched = f""", matched AS MATERIALIZED (
        SELECT m.* FROM wallet_operations m
        WHERE {wallet_metadata("m")} @> jsonb_set('{{}}'::jsonb, ARRAY[$1::text], $8::jsonb)
          AND m.metadata IS NOT NULL
    )"""
        rows = "matched o"
    return f"""
    WITH cursor_at AS MATERIALIZED (
        SELECT coalesce(
            (SELECT c.created_at FROM wallet_operations c
             WHERE c.id = $2::bigint AND c.wallet_id = $1),
            'infinity'::timestamptz
        ) AS at
    ){matched}, examined AS (
        SELECT o.id, o.operation, o.amount, o.balance_after, o.created_at, o.idempotency_key,
               o.transfer_id, o.counterparty_wallet_id, o.reverses_id, o.description, o.hold_id,
               o.metadata
        FROM {rows}
        WHERE o.wallet_id = $1
          AND o.created_at <= (SELECT at FROM cursor_at)
          AND NOT (o.created_at = (SELECT at FROM cursor_at) AND o.id >= $2::bigint)
          AND o.created_at < coalesce($5::timestamptz, 'infinity'::timestamptz)
          AND o.created_at >= coalesce($4::timestamptz, '-infinity'::timestamptz)
        ORDER BY o.created_at DESC, o.id DESC
        LIMIT $6
    ), page AS (
        SELECT * FROM examined e
        WHERE $3::text[] IS NULL OR e.operation = ANY($3::text[])
        ORDER BY e.id DESC
        LIMIT $7
    )
    SELECT p.id, p.operation, p.amount, p.balance_after, p.created_at, p.idempotency_key,
           p.transfer_id, p.counterparty_wallet_id, p.reverses_id, p.description,
           r.id AS reversed_by_id, p.hold_id, p.metadata::text,
           (SELECT count(*) FROM examined) AS examined, (SELECT min(id) FROM examined) AS lowest
    FROM (SELECT 1) AS one
    LEFT JOIN page p ON true
    LEFT JOIN wallet_operations r ON r.reverses_id = p.id
    ORDER BY p.id DESC
"""


_HISTORY = _history_sql(by_metadata=False)
# The same page of the rows whose metadata holds `$8` (a JSON object: a key and its
# value), found through the metadata's index (ix_wallet_operations_metadata, GIN: it
# serves only bitmap scans, so this runs outside `Database.in_index_order`). The index
# holds each row's metadata under its wallet's id, so the look-up names the wallet too:
# it finds this wallet's rows with that key and value, never another owner's (whose
# number would otherwise set this page's cost, and could be timed). The index's
# expression is the only condition of `matched` (materialized, its rows whole): a
# generic plan can neither trade it for the wallet's index by time nor join its ids back
# to the table through that index, either of which reads the whole ledger. Then the other
# filters, the cursor and the page, on those rows. Every page reads all the wallet's rows
# with that key and value (the index gives no order, so the cursor is applied to them):
# paging through N of them costs about N² / the page's size. Made for references (an
# order id: a few rows), not for a value that most of a wallet's entries share.
_HISTORY_BY_METADATA = _history_sql(by_metadata=True)

# The balance after the wallet's last row dated at or before `$2` (None: it has none),
# whether the wallet exists, and whether `$2` is later than the database's clock.
_BALANCE_AT = """
    SELECT (
               SELECT o.balance_after FROM wallet_operations o
               WHERE o.wallet_id = $1 AND o.created_at <= $2
               ORDER BY o.created_at DESC, o.id DESC LIMIT 1
           ) AS balance,
           EXISTS (SELECT FROM wallets WHERE id = $1) AS found,
           $2 > now() AS later
"""

# Oldest first, a bounded number at a time, skipping rows another purge holds: short
# statements that never wait on each other or on traffic.
_PURGE_KEYS = """
    WITH purged AS (
        DELETE FROM idempotency_keys WHERE key IN (
            SELECT key FROM idempotency_keys
            WHERE created_at < now() - make_interval(secs => $1)
            ORDER BY created_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    )
    SELECT count(*) FROM purged
"""


async def insert_wallet(
    connection: Connection,
    wallet_id: UUID,
    *,
    owner: str | None,
    currency: Currency,
    metadata: str | None,
    key: str | None,
    fingerprint: str,
    body: str,
    event: bool,
) -> None:
    """Insert a wallet, its event (`wallet.created`) when `event`, and the response to
    keep for its Idempotency-Key if it has one."""
    await connection.execute(
        _INSERT_WALLET,
        wallet_id,
        key,
        fingerprint,
        body,
        owner,
        event,
        currency.code,
        metadata,
        currency.exponent,
    )


async def wallet_owners(
    connection: Connection, wallet_ids: Sequence[UUID]
) -> dict[UUID, str | None]:
    """The owners of those of `wallet_ids` that exist (None: made without keys)."""
    return {row["id"]: row["owner"] for row in await connection.fetch(_WALLET_OWNERS, wallet_ids)}


async def wallet_currencies(
    connection: Connection, wallet_ids: Sequence[UUID]
) -> dict[UUID, tuple[str, int]]:
    """The currencies (code, exponent as stored) of those of `wallet_ids` that exist."""
    return {
        row["id"]: (row["currency"], row["currency_exponent"])
        for row in await connection.fetch(_WALLET_CURRENCIES, wallet_ids)
    }


async def balances(connection: Connection, wallet_id: UUID) -> tuple[int, int, str | None] | None:
    """The wallet's balance, what its holds set aside now, and its metadata (JSON text);
    None if it does not exist."""
    row = await connection.fetchrow(_BALANCES, wallet_id)
    return None if row is None else (row["balance"], row["held"], row["metadata"])


async def wallet_exists(connection: Connection, wallet_id: UUID) -> bool:
    return bool(await connection.fetchval(_WALLET_EXISTS, wallet_id))


async def read_balances(connection: Connection, wallet_ids: Sequence[UUID]) -> dict[UUID, int]:
    """The balances of those of `wallet_ids` that exist, in minor units."""
    rows = await connection.fetch(_READ_BALANCES, wallet_ids)
    return {row["id"]: row["balance"] for row in rows}


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Rows of a page, newest first; how many rows were examined for it, and the lowest
    id among them (None: none was)."""

    entries: list[LedgerEntry]
    examined: int
    lowest: int | None


async def history(
    connection: Connection,
    wallet_id: UUID,
    *,
    before_id: int,
    limit: int,
    examine: int,
    kinds: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    metadata: str | None = None,
) -> HistoryPage:
    """Up to `limit` of the wallet's ledger rows with an id below `before_id`, newest
    first, of `kinds` (None: any), dated in [`since`, `until`) (None: unbounded), and whose
    metadata holds `metadata` (a JSON object's text; None: any), found among at most
    `examine` rows."""
    arguments = [wallet_id, before_id, kinds, since, until, examine, limit]
    if metadata is None:
        rows = await connection.fetch(_HISTORY, *arguments)
    else:
        rows = await connection.fetch(_HISTORY_BY_METADATA, *arguments, metadata)
    entries = [LedgerEntry(*row[:13]) for row in rows if row["id"] is not None]
    return HistoryPage(entries, rows[0]["examined"], rows[0]["lowest"])


async def balance_at(
    connection: Connection, wallet_id: UUID, at: datetime
) -> tuple[int | None, bool, bool]:
    """The wallet's balance after its last row dated at or before `at` (None: none),
    whether it exists, and whether `at` is later than the database's clock."""
    row = await connection.fetchrow(_BALANCE_AT, wallet_id, at)
    assert row is not None
    return row["balance"], row["found"], row["later"]


async def purge_idempotency_keys(
    connection: Connection, *, older_than_seconds: int, batch: int
) -> int:
    """Delete up to `batch` keys older than the retention; return how many went."""
    purged: int = await connection.fetchval(_PURGE_KEYS, float(older_than_seconds), batch)
    return purged


@dataclass(frozen=True, slots=True)
class LedgerReport:
    wallets: int
    operations: int
    balance_mismatches: int
    chain_breaks: int
    negative_balances: int
    unmatched_transfers: int
    bad_reversals: int
    #: Minor units each currency's balances hold beyond what came in and went out (0:
    #: none made or lost), by currency; `money_created` sums their sizes.
    money_created_by_currency: dict[str, int]
    wallets_to_inspect: list[UUID]
    transfers_to_inspect: list[UUID]
    held_mismatches: int = 0
    bad_holds: int = 0
    negative_available: int = 0
    holds_to_inspect: list[UUID] = field(default_factory=list)
    #: Rows naming a wallet of another currency (a transfer's leg, its reversal, a
    #: capture into a payee): money moved across currencies.
    currency_crossings: int = 0

    @property
    def money_created(self) -> int:
        """Minor units made or lost, over every currency (0: money was conserved)."""
        return sum(abs(created) for created in self.money_created_by_currency.values())

    @property
    def consistent(self) -> bool:
        return not (
            self.balance_mismatches
            or self.chain_breaks
            or self.negative_balances
            or self.unmatched_transfers
            or self.bad_reversals
            or self.money_created
            or self.held_mismatches
            or self.bad_holds
            or self.negative_available
            or self.currency_crossings
        )


# One statement (one snapshot, consistent while traffic goes on), set-based: it scales
# with PostgreSQL's aggregation and sorting, not with a Python loop over rows.
_VERIFY_LEDGER = """
    WITH signed AS (
        SELECT wallet_id, id, balance_after, transfer_id, counterparty_wallet_id, operation,
               amount,
               CASE WHEN operation IN ({credits}) THEN amount
                    WHEN operation IN ({unmoving}) THEN 0 ELSE -amount END AS delta
        FROM wallet_operations
    ), sums AS (
        SELECT wallet_id, count(*) AS n, sum(delta) AS total FROM signed GROUP BY wallet_id
    ), mismatched AS (
        SELECT w.id FROM wallets w LEFT JOIN sums s ON s.wallet_id = w.id
        WHERE w.balance <> coalesce(s.total, 0)
    ), breaks AS (
        SELECT wallet_id FROM (
            SELECT wallet_id, balance_after,
                   coalesce(lag(balance_after) OVER (PARTITION BY wallet_id ORDER BY id), 0)
                   + delta AS expected
            FROM signed
        ) chained
        WHERE balance_after <> expected
    ), negative AS (
        SELECT id FROM wallets WHERE balance < 0
        UNION SELECT wallet_id FROM wallet_operations WHERE balance_after < 0
    ), transfers AS (
        -- Each transfer: one leg out and one in, of one amount, each naming the other's
        -- wallet; its reversals, if any, net to zero too.
        SELECT transfer_id,
               sum(delta) AS net,
               count(*) FILTER (WHERE operation = 'TRANSFER_OUT') AS outs,
               count(*) FILTER (WHERE operation = 'TRANSFER_IN') AS ins,
               count(DISTINCT amount) FILTER (WHERE operation LIKE 'TRANSFER%') AS amounts,
               bool_and(counterparty_wallet_id <> wallet_id) AS named,
               array_agg(DISTINCT wallet_id) AS wallets,
               array_agg(DISTINCT counterparty_wallet_id) AS counterparties
        FROM signed WHERE transfer_id IS NOT NULL GROUP BY transfer_id
    ), bad_reversals AS (
        -- A reversal compensates its entry: on the same wallet, in the other direction,
        -- by at most the entry's amount.
        SELECT r.id FROM wallet_operations r JOIN wallet_operations o ON o.id = r.reverses_id
        WHERE r.amount > o.amount OR r.wallet_id <> o.wallet_id
           OR (r.operation IN ({credits})) = (o.operation IN ({credits}))
    ), holds_ledger AS (
        -- Each hold as its ledger rows tell it: held once, captured, paid in, released.
        SELECT hold_id,
               count(*) FILTER (WHERE operation = 'HOLD') AS opened,
               coalesce(sum(amount) FILTER (WHERE operation = 'HOLD'), 0) AS held,
               coalesce(sum(amount) FILTER (WHERE operation = 'CAPTURE'), 0) AS captured,
               coalesce(sum(amount) FILTER (WHERE operation = 'CAPTURE_IN'), 0) AS paid_in,
               coalesce(sum(amount) FILTER (
                   WHERE operation = 'CAPTURE' AND counterparty_wallet_id IS NOT NULL
               ), 0) AS paid_out,
               coalesce(sum(amount) FILTER (WHERE operation = 'RELEASE'), 0) AS released,
               bool_and(operation IN ('HOLD', 'CAPTURE', 'RELEASE') = (wallet_id = h_wallet))
                   AS on_its_wallet
        FROM (
            SELECT o.*, h.wallet_id AS h_wallet FROM wallet_operations o
            JOIN holds h ON h.id = o.hold_id
        ) rows
        GROUP BY hold_id
    ), bad_holds AS (
        -- A hold's row: what it held, captured and still holds as its ledger says; a
        -- closed one holds nothing more, and was closed once (captured plus released is
        -- what it held); what a capture paid out came in to the payee.
        SELECT h.id FROM holds h LEFT JOIN holds_ledger l ON l.hold_id = h.id
        WHERE coalesce(l.opened, 0) <> 1 OR l.held <> h.amount OR l.captured <> h.captured
           OR h.amount - l.captured - l.released <> h.remaining
           OR l.paid_in <> l.paid_out OR NOT l.on_its_wallet
           OR (h.status <> 'active' AND l.captured + l.released <> h.amount)
    ), held_mismatched AS (
        -- What each wallet holds: the sum of its active holds, and their first expiry.
        SELECT w.id FROM wallets w LEFT JOIN (
            SELECT wallet_id, sum(remaining) AS held, min(expires_at) AS first_expiry
            FROM holds WHERE status = 'active' GROUP BY wallet_id
        ) a ON a.wallet_id = w.id
        WHERE w.held <> coalesce(a.held, 0)
           OR w.holds_expire_at IS DISTINCT FROM a.first_expiry
    ), negative_available AS (
        SELECT w.id FROM wallets w WHERE w.balance - {held_now} < 0
    ), external AS (
        -- What came in and went out, by currency: the rows naming no other wallet (a
        -- transfer's legs, their reversals and a capture into a wallet move money between
        -- wallets, of one currency).
        SELECT w.currency, sum(s.delta) AS total
        FROM signed s JOIN wallets w ON w.id = s.wallet_id
        WHERE s.counterparty_wallet_id IS NULL
        GROUP BY w.currency
    ), money AS (
        SELECT b.currency, b.total - coalesce(e.total, 0) AS created
        FROM (SELECT currency, sum(balance) AS total FROM wallets GROUP BY currency) b
        LEFT JOIN external e ON e.currency = b.currency
    ), crossed AS (
        -- Money moves within one currency: a row naming another wallet names one of its
        -- own currency.
        SELECT s.wallet_id, s.counterparty_wallet_id AS other
        FROM signed s JOIN wallets w ON w.id = s.wallet_id
        JOIN wallets c ON c.id = s.counterparty_wallet_id
        WHERE w.currency <> c.currency OR w.currency_exponent <> c.currency_exponent
    ), unmatched AS (
        SELECT transfer_id FROM transfers
        WHERE net <> 0 OR outs <> 1 OR ins <> 1 OR amounts <> 1 OR NOT named
           OR NOT (wallets @> counterparties AND counterparties @> wallets)
    )
    SELECT (SELECT count(*) FROM wallets) AS wallets,
           (SELECT coalesce(sum(n), 0) FROM sums) AS operations,
           (SELECT count(*) FROM mismatched) AS balance_mismatches,
           (SELECT count(*) FROM breaks) AS chain_breaks,
           (SELECT count(*) FROM negative) AS negative_balances,
           (SELECT count(*) FROM unmatched) AS unmatched_transfers,
           (SELECT count(*) FROM bad_reversals) AS bad_reversals,
           (SELECT count(*) FROM held_mismatched) AS held_mismatches,
           (SELECT count(*) FROM bad_holds) AS bad_holds,
           (SELECT count(*) FROM negative_available) AS negative_available,
           (SELECT count(*) FROM crossed) AS currency_crossings,
           ARRAY(SELECT id FROM bad_holds ORDER BY 1 LIMIT 20) AS holds_to_inspect,
           (SELECT coalesce(jsonb_object_agg(currency, created), '{{}}') FROM money)::text
               AS money_created,
           ARRAY(SELECT transfer_id FROM unmatched ORDER BY 1 LIMIT 20) AS transfers_to_inspect,
           ARRAY(
               SELECT id FROM (
                   SELECT id FROM mismatched UNION SELECT wallet_id FROM breaks
                   UNION SELECT id FROM negative UNION SELECT id FROM held_mismatched
                   UNION SELECT id FROM negative_available
                   UNION SELECT wallet_id FROM crossed UNION SELECT other FROM crossed
               ) bad ORDER BY id LIMIT 20
           ) AS wallets_to_inspect
""".format(
    credits=", ".join(f"'{kind}'" for kind in sorted(CREDIT_KINDS)),
    unmoving=", ".join(f"'{kind}'" for kind in sorted(UNMOVING_KINDS)),
    held_now=held_now("w"),
)


async def verify_ledger(connection: Connection) -> LedgerReport:
    """Check every wallet: balance = sum of its ledger, each row's balance_after = the one
    before plus its signed amount, nothing negative; every transfer's legs match; money
    changed only by what came in and went out (transfers conserve it); each reversal
    compensates its entry (same wallet, other direction, at most its amount)."""
    row = await connection.fetchrow(_VERIFY_LEDGER)
    assert row is not None
    return LedgerReport(
        wallets=row["wallets"],
        operations=int(row["operations"]),
        balance_mismatches=row["balance_mismatches"],
        chain_breaks=row["chain_breaks"],
        negative_balances=row["negative_balances"],
        unmatched_transfers=row["unmatched_transfers"],
        bad_reversals=row["bad_reversals"],
        money_created_by_currency=orjson.loads(row["money_created"]),
        wallets_to_inspect=[UUID(str(wallet)) for wallet in row["wallets_to_inspect"]],
        transfers_to_inspect=[UUID(str(t)) for t in row["transfers_to_inspect"]],
        held_mismatches=row["held_mismatches"],
        bad_holds=row["bad_holds"],
        negative_available=row["negative_available"],
        currency_crossings=row["currency_crossings"],
        holds_to_inspect=[UUID(str(h)) for h in row["holds_to_inspect"]],
    )
