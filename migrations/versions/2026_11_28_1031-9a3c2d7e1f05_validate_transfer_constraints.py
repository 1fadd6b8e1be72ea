"""validate transfer constraints, build their indexes

Revision ID: 9a3c2d7e1f05
Revises: 5e1f0a7c9b24
Create Date: 2026-11-28 10:31:00.000000+00:00

Outside a transaction, while traffic goes on: each constraint the previous revision added
NOT VALID is validated (a scan under a lock that lets reads and writes proceed), and the
partial indexes are built CONCURRENTLY. Each step can run again: a build that failed
half-way (which leaves an invalid index) is dropped and started over.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9a3c2d7e1f05"
down_revision: str | Sequence[str] | None = "5e1f0a7c9b24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "wallet_operations"
_INDEXES = {
    "ix_wallet_operations_transfer_id": ("transfer_id", False),
    "uq_wallet_operations_reverses_id": ("reverses_id", True),
}


# What the previous revision added NOT VALID (a migration keeps its own copy: it must
# not change when the code does).
_KINDS = "'DEPOSIT', 'WITHDRAW', 'TRANSFER_IN', 'TRANSFER_OUT', 'REVERSAL_IN', 'REVERSAL_OUT'"
_CONSTRAINTS = {
    "fk_wallet_operations_counterparty_wallet_id_wallets": (
        "FOREIGN KEY (counterparty_wallet_id) REFERENCES wallets (id)"
    ),
    "fk_wallet_operations_reverses_id_wallet_operations": (
        "FOREIGN KEY (reverses_id) REFERENCES wallet_operations (id)"
    ),
    "ck_wallet_operations_operation_known": f"CHECK (operation IN ({_KINDS}))",
    "ck_wallet_operations_transfer_names_both": (
        "CHECK ((transfer_id IS NULL) = (counterparty_wallet_id IS NULL))"
    ),
    "ck_wallet_operations_transfer_leg_linked": (
        "CHECK (transfer_id IS NOT NULL OR NOT operation IN ('TRANSFER_IN', 'TRANSFER_OUT'))"
    ),
    "ck_wallet_operations_reversal_linked": (
        "CHECK ((reverses_id IS NOT NULL) = operation IN ('REVERSAL_IN', 'REVERSAL_OUT'))"
    ),
    "ck_wallet_operations_counterparty_is_another": "CHECK (counterparty_wallet_id <> wallet_id)",
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name in _CONSTRAINTS:
            op.execute(f"ALTER TABLE {_TABLE} VALIDATE CONSTRAINT {name}")
        for name, (column, unique) in _INDEXES.items():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.create_index(
                name,
                _TABLE,
                [column],
                unique=unique,
                postgresql_where=sa.text(f"{column} IS NOT NULL"),
                postgresql_concurrently=True,
            )


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name=_TABLE)
    for name, definition in _CONSTRAINTS.items():
        op.drop_constraint(op.f(name), _TABLE)
        op.execute(f"ALTER TABLE {_TABLE} ADD CONSTRAINT {name} {definition} NOT VALID")
