"""index a wallet's active holds: their sum and first expiry without its closed holds

Revision ID: e5b1c7d93a42
Revises: 8c2e5a9d4f17
Create Date: 2026-12-05 00:20:00.000000+00:00

What a wallet's active holds set aside (their sum) and when the first of them expires (the
minimum of `expires_at`) are read by every write that opens, captures or releases a hold,
and by every debit of a wallet one of whose holds has expired. Without this index, they
were read through `ix_holds_wallet_id_seq` (every hold the wallet ever had, closed ones
included) or `ix_holds_active_expires_at` (every active hold of every wallet, in expiry
order): a cost that grew with the table, not with the wallet. This partial index holds
only the active ones, by wallet and expiry, with `remaining` beside them (the sum reads no
table row it can skip).

Built CONCURRENTLY, outside a transaction, while traffic goes on; a build that failed
half-way (which leaves an invalid index) is dropped and started over.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5b1c7d93a42"
down_revision: str | Sequence[str] | None = "8c2e5a9d4f17"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_holds_active_wallet_id_expires_at"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
        op.create_index(
            _INDEX,
            "holds",
            ["wallet_id", "expires_at"],
            postgresql_include=["remaining"],
            postgresql_where=sa.text("status = 'active'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
