"""webhook deliveries keep a receiver's Retry-After; an index of each endpoint's pending ones

Revision ID: b9d4e1a6c3f2
Revises: f3c1a9e57b20
Create Date: 2026-12-05 08:00:00.000000+00:00

A success of an endpoint makes a few more of its waiting deliveries due at once
(webhooks/repository.py, `_RECORD`): never one whose receiver asked, with `Retry-After`, to
wait (`webhook_deliveries.not_before`, a nullable column: a catalog change only), and
found through `ix_webhook_deliveries_endpoint_pending` (its endpoint's pending deliveries
by when they are due; built CONCURRENTLY, outside a transaction, while traffic goes on).

Downgrade: drops both.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b9d4e1a6c3f2"
down_revision: str | Sequence[str] | None = "f3c1a9e57b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_webhook_deliveries_endpoint_pending"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "webhook_deliveries",
        sa.Column(
            "not_before",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="Not sent again before this: its receiver's Retry-After.",
        ),
    )
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
        op.create_index(
            _INDEX,
            "webhook_deliveries",
            ["endpoint_id", "next_attempt_at"],
            postgresql_where=sa.text("status = 'pending'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("webhook_deliveries", "not_before")
