"""validate the wallets' currency constraints

Revision ID: e7c1f3a9b264
Revises: e4b8d2f6a915
Create Date: 2026-12-05 13:01:00.000000+00:00

Outside a transaction, while traffic goes on: each constraint the previous revision added
NOT VALID is validated (a scan under a lock that lets reads and writes proceed).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "e7c1f3a9b264"
down_revision: str | Sequence[str] | None = "e4b8d2f6a915"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the previous revision added NOT VALID (a migration keeps its own copy: it must not
# change when the code does).
_CONSTRAINTS = {
    "ck_wallets_currency_is_a_code": "CHECK (currency ~ '^[A-Z]{3}$')",
    "ck_wallets_currency_exponent_known": "CHECK (currency_exponent BETWEEN 0 AND 4)",
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name in _CONSTRAINTS:
            op.execute(f"ALTER TABLE wallets VALIDATE CONSTRAINT {name}")


def downgrade() -> None:
    for name, definition in _CONSTRAINTS.items():
        op.drop_constraint(op.f(name), "wallets", type_="check")
        op.execute(f"ALTER TABLE wallets ADD CONSTRAINT {name} {definition} NOT VALID")
