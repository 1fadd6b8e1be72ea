"""wallets and ledger

Revision ID: bcacdfa41efd
Revises:
Create Date: 2026-11-26 14:47:56.091634+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bcacdfa41efd"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wallets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "balance",
            sa.BigInteger(),
            server_default=sa.text("0"),
            nullable=False,
            comment="Minor units.",
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "balance <= 999999999999999", name=op.f("ck_wallets_balance_within_limit")
        ),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_wallets_balance_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallets")),
    )
    op.create_table(
        "wallet_operations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("operation", sa.String(length=8), nullable=False),
        sa.Column(
            "amount", sa.BigInteger(), nullable=False, comment="Minor units, always positive."
        ),
        sa.Column("balance_after", sa.BigInteger(), nullable=False, comment="Minor units."),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "operation IN ('DEPOSIT', 'WITHDRAW')",
            name=op.f("ck_wallet_operations_operation_known"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_wallet_operations_amount_positive")),
        sa.CheckConstraint(
            "balance_after >= 0", name=op.f("ck_wallet_operations_balance_after_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["wallets.id"], name=op.f("fk_wallet_operations_wallet_id_wallets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_operations")),
    )
    op.create_index(
        "ix_wallet_operations_wallet_id_id", "wallet_operations", ["wallet_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_wallet_operations_wallet_id_id", table_name="wallet_operations")
    op.drop_table("wallet_operations")
    op.drop_table("wallets")
