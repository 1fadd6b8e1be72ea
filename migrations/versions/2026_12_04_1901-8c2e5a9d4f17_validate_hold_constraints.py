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
# What the previous revision added NOT VALID (a migration keeps its own copy: it must not
# change when the code does).
_KINDS = (
    "'DEPOSIT', 'WITHDRAW', 'TRANSFER_IN', 'TRANSFER_OUT', 'REVERSAL_IN', 'REVERSAL_OUT', "
    "'HOLD', 'CAPTURE', 'CAPTURE_IN', 'RELEASE'"
)
_HOLD_KINDS = "'HOLD', 'CAPTURE', 'CAPTURE_IN', 'RELEASE'"
_CONSTRAINTS = {
    "wallets": {"ck_wallets_held_not_negative": "CHECK (held >= 0)"},
    _LEDGER: {
        "ck_wallet_operations_operation_known": f"CHECK (operation IN ({_KINDS}))",
        "ck_wallet_operations_transfer_names_both": (
            "CHECK (transfer_id IS NULL OR counterparty_wallet_id IS NOT NULL)"
        ),
        "ck_wallet_operations_counterparty_linked": (
            "CHECK (counterparty_wallet_id IS NULL OR transfer_id IS NOT NULL "
            "OR hold_id IS NOT NULL)"
        ),
        "ck_wallet_operations_hold_linked": (
            f"CHECK ((hold_id IS NOT NULL) = operation IN ({_HOLD_KINDS}))"
        ),
        "fk_wallet_operations_hold_id_holds": "FOREIGN KEY (hold_id) REFERENCES holds (id)",
    },
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
    # Back to the previous revision's state: the index gone, the constraints NOT VALID.
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
    for table, constraints in _CONSTRAINTS.items():
        for name, definition in constraints.items():
            op.drop_constraint(op.f(name), table)
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition} NOT VALID")
