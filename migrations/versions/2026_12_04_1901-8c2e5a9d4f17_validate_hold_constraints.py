"""validate hold constraints, build the ledger's index on hold_id

Revision ID: 8c2e5a9d4f17
Revises: 3b7f1d2c8e90
Create Date: 2026-12-04 19:01:00.000000+00:00

Outside a transaction, while traffic goes on: each constraint the previous revision added
NOT VALID is validated (a scan under a lock that lets reads and writes proceed), and the
partial index on `wallet_operations.hold_id` is built CONCURRENTLY. Each step can run
again: a build that failed half-way (which leaves an invalid index) is dropped and
started over.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8c2e5a9d4f17"
down_revision: str | Sequence[str] | None = "3b7f1d2c8e90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEDGER = "wallet_operations"
_INDEX = "ix_wallet_operations_hold_id"
# What the previous revision added NOT VALID (a migration keeps its own copy).
_CONSTRAINTS = {
    "wallets": ("ck_wallets_held_not_negative",),
    _LEDGER: (
        "ck_wallet_operations_operation_known",
        "ck_wallet_operations_transfer_names_both",
        "ck_wallet_operations_counterparty_linked",
        "ck_wallet_operations_hold_linked",
        "fk_wallet_operations_hold_id_holds",
    ),
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for table, names in _CONSTRAINTS.items():
            for name in names:
                op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
        op.create_index(
            _INDEX,
            _LEDGER,
            ["hold_id"],
            postgresql_where=sa.text("hold_id IS NOT NULL"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    # The constraints go back to NOT VALID with the previous revision's downgrade; only the
    # index is this revision's own.
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
