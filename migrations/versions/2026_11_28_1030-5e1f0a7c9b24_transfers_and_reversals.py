"""transfers and reversals

Revision ID: 5e1f0a7c9b24
Revises: d0c19789eea3
Create Date: 2026-11-28 10:30:00.000000+00:00

Upgrades a populated database in place, without rewriting the ledger or holding writes
for long: the new columns are nullable (a catalog change), the wider `operation` column is
a catalog change too, each CHECK constraint is added NOT VALID and then validated (a scan
that lets writes go on), and the two partial indexes are built CONCURRENTLY.
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


def _add_check(name: str, condition: str) -> None:
    op.execute(f"ALTER TABLE {_TABLE} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
    op.execute(f"ALTER TABLE {_TABLE} VALIDATE CONSTRAINT {name}")


def upgrade() -> None:
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
    op.create_foreign_key(
        op.f("fk_wallet_operations_counterparty_wallet_id_wallets"),
        _TABLE,
        "wallets",
        ["counterparty_wallet_id"],
        ["id"],
    )
    op.create_foreign_key(
        op.f("fk_wallet_operations_reverses_id_wallet_operations"),
        _TABLE,
        _TABLE,
        ["reverses_id"],
        ["id"],
    )
    _add_check("ck_wallet_operations_operation_known", f"operation IN ({_KINDS})")
    for name, condition in _CHECKS.items():
        _add_check(name, condition)
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_wallet_operations_transfer_id",
            _TABLE,
            ["transfer_id"],
            postgresql_where=sa.text("transfer_id IS NOT NULL"),
            postgresql_concurrently=True,
        )
        op.create_index(
            "uq_wallet_operations_reverses_id",
            _TABLE,
            ["reverses_id"],
            unique=True,
            postgresql_where=sa.text("reverses_id IS NOT NULL"),
            postgresql_concurrently=True,
        )


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
    op.drop_index("uq_wallet_operations_reverses_id", table_name=_TABLE)
    op.drop_index("ix_wallet_operations_transfer_id", table_name=_TABLE)
    for name in _CHECKS:
        op.drop_constraint(op.f(name), _TABLE, type_="check")
    op.drop_constraint(op.f("ck_wallet_operations_operation_known"), _TABLE, type_="check")
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
    op.drop_constraint(
        op.f("fk_wallet_operations_reverses_id_wallet_operations"), _TABLE, type_="foreignkey"
    )
    op.drop_constraint(
        op.f("fk_wallet_operations_counterparty_wallet_id_wallets"), _TABLE, type_="foreignkey"
    )
    op.drop_column(_TABLE, "description")
    op.drop_column(_TABLE, "reverses_id")
    op.drop_column(_TABLE, "counterparty_wallet_id")
    op.drop_column(_TABLE, "transfer_id")
