"""API keys, wallet owners, the key of each ledger row

Revision ID: c4e8b1f2a6d3
Revises: 9a3c2d7e1f05
Create Date: 2026-11-28 11:30:00.000000+00:00

Catalog changes only (no table is rewritten, no row is scanned): a new table, nullable
columns without defaults, and idempotency key columns made longer (a longer varchar
needs no rewrite). Existing wallets get no owner: with keys required, no key reaches them
until an operator gives them one (docs/SECURITY.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c4e8b1f2a6d3"
down_revision: str | Sequence[str] | None = "9a3c2d7e1f05"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "api_keys",
        sa.Column(
            "id", sa.String(16), nullable=False, comment="The key's public id, part of the key."
        ),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(16)), nullable=False),
        sa.Column(
            "secret_sha256", sa.String(64), nullable=False, comment="Hex SHA-256 of the secret."
        ),
        sa.Column(
            "rate", sa.Float(), nullable=True, comment="Requests a second; NULL: the default."
        ),
        sa.Column(
            "burst", sa.Integer(), nullable=True, comment="Requests at once; NULL: the default."
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("rate IS NULL OR rate > 0", name=op.f("ck_api_keys_rate_positive")),
        sa.CheckConstraint("burst IS NULL OR burst >= 1", name=op.f("ck_api_keys_burst_positive")),
        sa.CheckConstraint(
            "scopes <@ ARRAY['read', 'write']::varchar[]", name=op.f("ck_api_keys_scopes_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.add_column(
        "wallets",
        sa.Column(
            "owner",
            sa.String(64),
            nullable=True,
            comment="The owner of the API key that created it; NULL: created without keys.",
        ),
    )
    op.add_column(
        "wallet_operations",
        sa.Column(
            "api_key_id",
            sa.String(16),
            nullable=True,
            comment="The API key that applied it (api_keys.id, never deleted); NULL: no keys.",
        ),
    )
    op.alter_column(
        "wallet_operations",
        "idempotency_key",
        type_=sa.String(400),
        existing_type=sa.String(255),
        existing_nullable=True,
        comment="As stored: in its owner's namespace (auth/keys.py).",
    )
    op.alter_column("idempotency_keys", "key", type_=sa.String(400), existing_type=sa.String(255))


def downgrade() -> None:
    # Refuse rather than truncate: keys longer than the old limit were stored meanwhile.
    op.execute(
        """
        DO $$ BEGIN
            IF EXISTS (SELECT FROM idempotency_keys WHERE length(key) > 255)
               OR EXISTS (SELECT FROM wallet_operations WHERE length(idempotency_key) > 255)
            THEN RAISE EXCEPTION 'idempotency keys longer than 255 characters are stored '
                 '(keys of API key owners); downgrading would cut them';
            END IF;
        END $$
        """
    )
    op.alter_column("idempotency_keys", "key", type_=sa.String(255), existing_type=sa.String(400))
    op.alter_column(
        "wallet_operations",
        "idempotency_key",
        type_=sa.String(255),
        existing_type=sa.String(400),
        existing_nullable=True,
        comment=None,
        existing_comment="As stored: in its owner's namespace (auth/keys.py).",
    )
    op.drop_column("wallet_operations", "api_key_id")
    op.drop_column("wallets", "owner")
    op.drop_table("api_keys")
