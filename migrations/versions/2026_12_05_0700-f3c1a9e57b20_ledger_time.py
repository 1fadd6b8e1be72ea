"""a wallet's entries in time order and its events in feed order, and an index by time

Revision ID: f3c1a9e57b20
Revises: d2a6f0c8e413
Create Date: 2026-12-05 07:00:00.000000+00:00

A balance at a point in time, a history between two times and a statement of a period all
read a wallet's entries by their `created_at`, so a wallet's entries must be in time order
in its ledger's order (by `id`): a later entry never dated before an earlier one. An
entry's time was its transaction's start (`now()`), and a transaction that began before
another but took the wallet's lock after it wrote the later entry with the earlier time
(by the length of its wait, milliseconds). From this revision on, a transaction dates its
entries at its start or at the latest time of its wallets' entries, whichever is later
(`wallets.last_entry_at`, read under the wallet's lock).

The same wait put a wallet's events out of its order in the feed, which is in the order
of the transactions' ids (`events.xid`): a transaction gets its id when it locks its first
row, so one that locked a wallet, then waited for a second one, placed its event of the
second before that of the transaction it waited for. From this revision on, an event's
`xid` is its transaction's id or the latest `xid` of its wallets' events, whichever is
later (`wallets.last_event_xid`): the feed's rule still holds (a position below the oldest
running transaction's id is final, since a placed `xid` is never below its writer's own).

- `wallets.last_entry_at`: the time of the wallet's latest entry, filled in from the
  ledger; `wallets.last_event_xid` (empty until the wallet's next event).
- Entries dated before an earlier entry of their wallet are dated at that entry's time
  (by the milliseconds their transaction waited); no other row changes.
- `ix_wallet_operations_wallet_id_created_at` (wallet, time, id): built CONCURRENTLY,
  outside a transaction, while traffic goes on.

Stop the instances of the previous version before applying it (they date entries the old
way, and keep neither column), as for revision a4d8e2f61b37. The repair reads the whole
ledger once, and `wallets` stays locked until it is done: on a large ledger, minutes.

Downgrade: drops the index and both columns (stop this version's instances first: they
write both); the dates moved stay moved.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "f3c1a9e57b20"
down_revision: str | Sequence[str] | None = "d2a6f0c8e413"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_wallet_operations_wallet_id_created_at"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # IF NOT EXISTS: a run whose index build failed (below, after this commits) goes again.
    op.execute("ALTER TABLE wallets ADD COLUMN IF NOT EXISTS last_entry_at timestamptz")
    op.execute(
        "COMMENT ON COLUMN wallets.last_entry_at IS 'The time of the wallet''s latest ledger "
        "row: no later row is dated before it.'"
    )
    op.execute("ALTER TABLE wallets ADD COLUMN IF NOT EXISTS last_event_xid xid8")
    op.execute(
        "COMMENT ON COLUMN wallets.last_event_xid IS 'The feed position (xid) of the wallet''s "
        "latest event: no later event of the wallet is placed before it.'"
    )
    op.execute(
        """
        UPDATE wallet_operations o SET created_at = m.latest
        FROM (
            SELECT id, created_at, max(created_at) OVER (
                PARTITION BY wallet_id ORDER BY id ROWS UNBOUNDED PRECEDING
            ) AS latest
            FROM wallet_operations
        ) m
        WHERE o.id = m.id AND m.created_at < m.latest
        """
    )
    op.execute(
        """
        UPDATE wallets w SET last_entry_at = m.latest
        FROM (
            SELECT wallet_id, max(created_at) AS latest FROM wallet_operations GROUP BY wallet_id
        ) m
        WHERE w.id = m.wallet_id
        """
    )
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
        op.create_index(
            _INDEX,
            "wallet_operations",
            ["wallet_id", "created_at", "id"],
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("wallets", "last_event_xid")
    op.drop_column("wallets", "last_entry_at")
