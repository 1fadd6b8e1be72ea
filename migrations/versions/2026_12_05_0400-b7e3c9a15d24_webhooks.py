"""webhooks: endpoints, their deliveries and every attempt, and the fan-out's position

Revision ID: b7e3c9a15d24
Revises: a4d8e2f61b37
Create Date: 2026-12-05 04:00:00.000000+00:00

New tables only: `webhook_endpoints` (where an owner's events are sent, and with which
secret they are signed), `webhook_deliveries` (an event owed to an endpoint: pending until
a 2xx, or failed), `webhook_attempts` (each try: its answer, its time, its error) and
`webhook_feed` (one row: the position in the event feed up to which deliveries were made).

Downgrade: drops them (the endpoints and the record of deliveries are lost).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "b7e3c9a15d24"
down_revision: str | Sequence[str] | None = "a4d8e2f61b37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class _Xid8(sa.types.UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (SQLAlchemy has no type of its own for it)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column(
            "types",
            sa.ARRAY(sa.String(length=32)),
            nullable=True,
            comment="The event types it gets; NULL: all.",
        ),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("secret", sa.String(length=64), nullable=False, comment="Signs deliveries."),
        sa.Column("status", sa.String(length=8), server_default="enabled", nullable=False),
        sa.Column(
            "failing_since",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="The first failed attempt since its last success; NULL: none.",
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('enabled', 'disabled')", name=op.f("ck_webhook_endpoints_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        "ix_webhook_endpoints_owner_created_at", "webhook_endpoints", ["owner", "created_at"]
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=9), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
            comment="When it is due; while a sender has it, when that sender's lease ends.",
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')",
            name=op.f("ck_webhook_deliveries_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_webhook_deliveries_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_webhook_deliveries_event_id", "webhook_deliveries", ["event_id"])
    op.create_index("ix_webhook_deliveries_endpoint_id", "webhook_deliveries", ["endpoint_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "attempted_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("status_code", sa.SmallInteger(), nullable=True, comment="NULL: no answer."),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])
    op.create_table(
        "webhook_feed",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("xid", _Xid8(), server_default=sa.text("'0'"), nullable=False),
        sa.Column("event_id", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_webhook_feed_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_feed")),
        comment="The position in the event feed up to which deliveries were made.",
    )
    op.execute("INSERT INTO webhook_feed (id) VALUES (1)")


def downgrade() -> None:
    op.drop_table("webhook_feed")
    op.drop_index("ix_webhook_attempts_delivery_id", table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_deliveries_endpoint_id", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_event_id", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_endpoints_owner_created_at", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
