"""balance monitors: a rule per wallet whose crossing is an event

Revision ID: d2a6f0c8e413
Revises: b7e3c9a15d24
Create Date: 2026-12-05 05:00:00.000000+00:00

A new table (`balance_monitors`: a wallet's available balance watched against a
threshold, and whether it is across it now) and a nullable column on `events` (`detail`:
what an event not made of ledger rows says, a monitor's crossing). Catalog changes only.

Downgrade: drops both (the monitors, and what their events said, are lost).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "d2a6f0c8e413"
down_revision: str | Sequence[str] | None = "b7e3c9a15d24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "balance_monitors",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("condition", sa.String(length=5), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False, comment="Minor units."),
        sa.Column(
            "across",
            sa.Boolean(),
            nullable=False,
            comment="Whether the available balance is across the threshold now.",
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "condition IN ('below', 'above')", name=op.f("ck_balance_monitors_condition_known")
        ),
        sa.CheckConstraint(
            "threshold >= 0", name=op.f("ck_balance_monitors_threshold_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["wallets.id"], name=op.f("fk_balance_monitors_wallet_id_wallets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_monitors")),
    )
    op.create_index("ix_balance_monitors_wallet_id", "balance_monitors", ["wallet_id"])
    op.add_column(
        "events",
        sa.Column(
            "detail",
            postgresql.JSONB(),
            nullable=True,
            comment="What an event not made of ledger rows says (a monitor's crossing).",
        ),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("events", "detail")
    op.drop_index("ix_balance_monitors_wallet_id", table_name="balance_monitors")
    op.drop_table("balance_monitors")
