"""each wallet has a currency, and may have the client's metadata

Revision ID: e4b8d2f6a915
Revises: c7a2e9f4b815
Create Date: 2026-12-05 13:00:00.000000+00:00

- `wallets.currency`: the wallet's ISO 4217 code, which its amounts are minor units of.
  Every existing wallet gets DEFAULT_CURRENCY as configured where this revision runs (the
  specification's money, which its amounts already are); the revision prints it. Added
  with that value as the column's default, so that no row is rewritten (PostgreSQL keeps
  the value in the catalog), and the default is then dropped: the service names each new
  wallet's currency itself.
- `wallets.currency_exponent`: the digits of its minor unit (JPY 0, USD 2, KWD 3), kept
  with the wallet when it is made: a later edition of the ISO table (the `iso4217`
  package) never reinterprets a stored balance. Existing wallets: 2, the specification's.
- `wallets.metadata`: the metadata the wallet was made with (a JSON object of strings;
  NULL: none). Nullable: a catalog change only.
- `currency_is_a_code` (three capital letters; which code is one of ISO 4217 is the
  service's check) and `currency_exponent_known` (0 to 4), added NOT VALID: new rows are
  checked, existing ones are not scanned here (e7c1f3a9b264 validates them while traffic
  goes on). Under a short `lock_timeout`, as every change to a busy table.

Stop the instances of the previous version before applying it: they create wallets
without a currency, which this revision refuses.

Downgrade: drops the three columns, and so every wallet's currency and metadata (their
amounts stay).
"""

import sys
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from wallet_api.core.config import load_settings_or_exit

revision: str = "e4b8d2f6a915"
down_revision: str | Sequence[str] | None = "c7a2e9f4b815"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What this revision adds NOT VALID (e7c1f3a9b264 keeps its own copy).
CONSTRAINTS = {
    "ck_wallets_currency_is_a_code": "CHECK (currency ~ '^[A-Z]{3}$')",
    "ck_wallets_currency_exponent_known": "CHECK (currency_exponent BETWEEN 0 AND 4)",
}


def upgrade() -> None:
    default = load_settings_or_exit().default_currency  # validated: two digits
    # On stderr, as alembic's own log: stdout is the command's (the entrypoint's test).
    print(f"wallet-api: the wallets made so far get DEFAULT_CURRENCY={default}", file=sys.stderr)
    op.execute("SET LOCAL lock_timeout = '5s'")
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
    op.add_column(
        "wallets",
        sa.Column(
            "currency_exponent",
            sa.SmallInteger(),
            nullable=False,
            server_default=sa.text("2"),
            comment="The digits of its currency's minor unit, as when it was made.",
        ),
    )
    op.alter_column("wallets", "currency", server_default=None)
    op.alter_column("wallets", "currency_exponent", server_default=None)
    op.add_column(
        "wallets",
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=True,
            comment="The client's metadata on the wallet, given when it was made (NULL: none).",
        ),
    )
    for name, definition in CONSTRAINTS.items():
        op.execute(f"ALTER TABLE wallets ADD CONSTRAINT {name} {definition} NOT VALID")


def downgrade() -> None:
    for name in CONSTRAINTS:
        op.drop_constraint(op.f(name), "wallets", type_="check")
    op.drop_column("wallets", "metadata")
    op.drop_column("wallets", "currency_exponent")
    op.drop_column("wallets", "currency")
