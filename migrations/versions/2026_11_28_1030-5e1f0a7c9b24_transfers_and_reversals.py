"""transfers and reversals

Revision ID: 5e1f0a7c9b24
Revises: d0c19789eea3
Create Date: 2026-11-28 10:30:00.000000+00:00

Upgrades a populated database in place without rewriting the ledger: every step here is
a change of the catalog only (nullable columns, a wider `operation`, foreign keys and CHECK
constraints added NOT VALID: new rows are checked, existing ones are not scanned), so the
table's exclusive lock is held for moments, and never waited for longer than
`lock_timeout` (a migration stuck behind a long query fails instead of queueing every
request behind it). The next revision validates the constraints and builds the indexes
while traffic goes on.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e1f0a7c9b24"
down_revision: str | Sequence[str] | None = "d0c19789eea3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "wallet_operations"
_KINDS = "'DEPOSIT', 'WITHDRAW', 'TRANSFER_IN', 'TRANSFER_OUT', 'REVERSAL_IN', 'REVERSAL_OUT'"
_CHECKS = {
    "ck_wallet_operations_transfer_names_both": (
        "(transfer_id IS NULL) = (counterparty_wallet_id IS NULL)"
    ),
    "ck_wallet_operations_transfer_leg_linked": (
        "transfer_id IS NOT NULL OR NOT operation IN ('TRANSFER_IN', 'TRANSFER_OUT')"
    ),
    "ck_wallet_operations_reversal_linked": (
        "(reverses_id IS NOT NULL) = operation IN ('REVERSAL_IN', 'REVERSAL_OUT')"
    ),
    "ck_wallet_operations_counterparty_is_another": "counterparty_wallet_id <> wallet_id",
}


FOREIGN_KEYS = {
    "fk_wallet_operations_counterparty_wallet_id_wallets": (
        "FOREIGN KEY (counterparty_wallet_id) REFERENCES wallets (id)"
    ),
    "fk_wallet_operations_reverses_id_wallet_operations": (
        "FOREIGN KEY (reverses_id) REFERENCES wallet_operations (id)"
    ),
}
CHECKS = {
    "ck_wallet_operations_operation_known": f"CHECK (operation IN ({_KINDS}))",
    **{name: f"CHECK ({condition})" for name, condition in _CHECKS.items()},
}


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # Dropped first: a constraint on the column would be re-checked by the type change.
    op.drop_constraint(op.f("ck_wallet_operations_operation_known"), _TABLE, type_="check")
    op.alter_column(
        _TABLE,
        "operation",
        existing_type=sa.String(length=8),
        type_=sa.String(length=16),
        existing_nullable=False,
        comment="The entry's kind (EntryKind).",
    )
    op.add_column(
        _TABLE,
        sa.Column(
            "transfer_id", sa.Uuid(), nullable=True, comment="Shared by a transfer's two legs."
        ),
    )
    op.add_column(
        _TABLE,
        sa.Column(
            "counterparty_wallet_id",
            sa.Uuid(),
            nullable=True,
            comment="The other wallet of a transfer's leg.",
        ),
    )
    op.add_column(
        _TABLE,
        sa.Column(
            "reverses_id",
            sa.BigInteger(),
            nullable=True,
            comment="The entry a reversal compensates.",
        ),
    )
    op.add_column(_TABLE, sa.Column("description", sa.String(length=500), nullable=True))
    for name, definition in {**FOREIGN_KEYS, **CHECKS}.items():
        op.execute(f"ALTER TABLE {_TABLE} ADD CONSTRAINT {name} {definition} NOT VALID")


def downgrade() -> None:
    # The schema before this revision cannot hold a transfer or a reversal: refuse rather
    # than drop money movements from the ledger.
    moved = op.get_bind().scalar(
        sa.text(f"SELECT count(*) FROM {_TABLE} WHERE operation NOT IN ('DEPOSIT', 'WITHDRAW')")
    )
    if moved:
        raise RuntimeError(
            f"{moved} ledger rows are transfers or reversals, which the schema before "
            "revision 5e1f0a7c9b24 cannot hold; not downgrading."
        )
    for name in {**FOREIGN_KEYS, **CHECKS}:
        op.drop_constraint(op.f(name), _TABLE)
    op.drop_column(_TABLE, "description")
    op.drop_column(_TABLE, "reverses_id")
    op.drop_column(_TABLE, "counterparty_wallet_id")
    op.drop_column(_TABLE, "transfer_id")
    # Narrowing the column scans the ledger under the table's lock: a downgrade is not
    # an online operation.
    op.alter_column(
        _TABLE,
        "operation",
        existing_type=sa.String(length=16),
        type_=sa.String(length=8),
        existing_nullable=False,
        comment=None,
        existing_comment="The entry's kind (EntryKind).",
    )
    op.create_check_constraint(
        op.f("ck_wallet_operations_operation_known"), _TABLE, "operation IN ('DEPOSIT', 'WITHDRAW')"
    )
