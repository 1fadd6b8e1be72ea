"""ledger rows and holds keep the client's metadata; an index to find rows by it

Revision ID: c7a2e9f4b815
Revises: b9d4e1a6c3f2
Create Date: 2026-12-05 11:00:00.000000+00:00

- `wallet_operations.metadata`: the metadata of the request that wrote the row (a JSON
  object of strings; NULL: none). A nullable column: a catalog change only, no row
  rewritten.
- `holds.metadata`: the metadata of the request that made the hold, which its release by
  a void or by expiry (requests without metadata of their own) is written with. Nullable:
  a catalog change only.
- `ix_wallet_operations_metadata`: the rows with metadata, by wallet, key and value, for
  the history's metadata filter. GIN (`jsonb_path_ops`: it answers containment) over the
  metadata nested under the wallet's id, `{"<wallet id>": {"order_id": "42"}}`: each
  indexed path begins with the wallet, so a look-up finds that wallet's rows only, never
  another owner's with the same key and value. Partial: a row without metadata costs it
  nothing. Built CONCURRENTLY, outside a transaction, while traffic goes on.

Stop the instances of the previous version before applying it? Not needed: they write
rows without metadata, which this version reads as rows without metadata.

Downgrade: drops the index and both columns (the metadata kept is lost).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c7a2e9f4b815"
down_revision: str | Sequence[str] | None = "b9d4e1a6c3f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_wallet_operations_metadata"
#: The indexed expression (immutable, as an index's must be): the row's metadata under its
#: wallet's id (`wallets.models.wallet_metadata`, as it was at this revision).
WALLET_METADATA = "jsonb_set('{}'::jsonb, ARRAY[wallet_id::text], metadata)"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "wallet_operations",
        sa.Column(
            "metadata",
            postgresql.JSONB(),
            nullable=True,
            comment="The client's metadata on the request that wrote it (NULL: none).",
        ),
    )
    op.add_column(
        "holds",
        sa.Column(
            "metadata",
            postgresql.JSONB(),
            nullable=True,
            comment="The client's metadata on the request that made it (NULL: none).",
        ),
    )
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY {_INDEX} ON wallet_operations"
            f" USING gin (({WALLET_METADATA}) jsonb_path_ops) WHERE metadata IS NOT NULL"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}")
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("holds", "metadata")
    op.drop_column("wallet_operations", "metadata")
