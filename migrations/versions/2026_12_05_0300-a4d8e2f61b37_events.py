"""events: every committed change as one row, and each wallet's ledger numbered

Revision ID: a4d8e2f61b37
Revises: e5b1c7d93a42
Create Date: 2026-12-05 03:00:00.000000+00:00

A new table (`events`): one row per committed change (a wallet created, an entry applied),
written by the statement that makes the change, with the transaction id that wrote it
(`xid`: the feed's order, see events/repository.py). Two columns number each wallet's
ledger: `wallets.seq`, the number of its last ledger row, and `wallet_operations.seq`,
each row's place in its wallet's ledger (1, 2, 3, ... without gaps).

The rows written before this revision keep a NULL `seq` (numbering them would rewrite the
whole ledger); each wallet's `seq` starts at the number of rows it has, so that its next
row gets the number its place gives it. That count is read under an EXCLUSIVE lock on
`wallets` (reads go on, writes wait): stop the previous version's instances before
applying it, as they write ledger rows without numbers.

Downgrade: drops the table and both columns (the events are lost).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a4d8e2f61b37"
down_revision: str | Sequence[str] | None = "e5b1c7d93a42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class _Xid8(sa.types.UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (SQLAlchemy has no type of its own for it)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "xid",
            _Xid8(),
            server_default=sa.text("pg_current_xact_id()"),
            nullable=False,
            comment="The transaction that wrote it: the feed's order.",
        ),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column(
            "owner",
            sa.String(length=64),
            nullable=True,
            comment="Whose it is: the owner of `wallet_id` when it was written.",
        ),
        sa.Column(
            "wallet_id",
            sa.Uuid(),
            nullable=False,
            comment="The owner's first wallet the change touched.",
        ),
        sa.Column(
            "ledger_ids",
            postgresql.ARRAY(sa.BigInteger()),
            server_default=sa.text("'{}'"),
            nullable=False,
            comment="The ledger rows of the change, in the order they were applied.",
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_xid_id", "events", ["xid", "id"])
    op.create_index("ix_events_owner_xid_id", "events", ["owner", "xid", "id"])
    op.add_column(
        "wallet_operations",
        sa.Column(
            "seq",
            sa.BigInteger(),
            nullable=True,
            comment="Its place in its wallet's ledger: 1, 2, 3, ... (NULL: written before "
            "the numbering began).",
        ),
    )
    op.add_column(
        "wallets",
        sa.Column(
            "seq",
            sa.BigInteger(),
            server_default=sa.text("0"),
            nullable=False,
            comment="The number of its last ledger row (0: none).",
        ),
    )
    op.execute("LOCK TABLE wallets IN EXCLUSIVE MODE")
    op.execute(
        "UPDATE wallets w SET seq = c.n FROM ("
        " SELECT wallet_id, count(*) AS n FROM wallet_operations GROUP BY wallet_id"
        ") c WHERE w.id = c.wallet_id"
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("wallets", "seq")
    op.drop_column("wallet_operations", "seq")
    op.drop_index("ix_events_owner_xid_id", table_name="events")
    op.drop_index("ix_events_xid_id", table_name="events")
    op.drop_table("events")
