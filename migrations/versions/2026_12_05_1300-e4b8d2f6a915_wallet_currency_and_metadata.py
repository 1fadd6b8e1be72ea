"""each wallet has a currency, and may have the client's metadata

Revision ID: e4b8d2f6a915
Revises: c7a2e9f4b815
Create Date: 2026-12-05 13:00:00.000000+00:00

- `wallets.currency`: the wallet's ISO 4217 code, which its amounts are minor units of.
  Every existing wallet gets DEFAULT_CURRENCY as configured when this revision runs (the
  specification's money, which its amounts already are). Added with that value as the
  column's default, so that no row is rewritten (PostgreSQL keeps the value in the
  catalog), and the default is then dropped: the service names each new wallet's
  currency itself.
- `currency_is_a_code`: three capital letters (which code is one of ISO 4217 is the
  service's check).
- `wallets.metadata`: the metadata the wallet was made with (a JSON object of strings;
  NULL: none). Nullable: a catalog change only.

Stop the instances of the previous version before applying it: they create wallets
without a currency, which this revision refuses.

Downgrade: drops both columns, and so every wallet's currency and metadata (their
amounts stay).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from wallet_api.core.config import load_settings_or_exit

revision: str = "e4b8d2f6a915"
down_revision: str | Sequence[str] | None = "c7a2e9f4b815"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    default = load_settings_or_exit().default_currency  # validated: three capital letters
    op.add_column(
        "wallets",
        sa.Column(
            "currency",
            sa.String(length=3),
            nullable=False,
            server_default=sa.text(f"'{default}'"),
            comment="Its ISO 4217 currency, never changed: its amounts are minor units of it.",
        ),
    )
    op.alter_column("wallets", "currency", server_default=None)
    op.add_column(
        "wallets",
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=True,
            comment="The client's metadata on the wallet, given when it was made (NULL: none).",
        ),
    )
    op.create_check_constraint(
        op.f("ck_wallets_currency_is_a_code"), "wallets", "currency ~ '^[A-Z]{3}$'"
    )


def downgrade() -> None:
    op.drop_column("wallets", "metadata")
    op.drop_constraint(op.f("ck_wallets_currency_is_a_code"), "wallets", type_="check")
    op.drop_column("wallets", "currency")
