"""holds: money set aside on a wallet, captured, voided or expired

Revision ID: 3b7f1d2c8e90
Revises: 7d2b9e4c1a60
Create Date: 2026-12-04 19:00:00.000000+00:00

A new table (`holds`), two columns on `wallets` (`held`: what the wallet's active holds
set aside; `holds_expire_at`: the first of their expiries) and one on `wallet_operations`
(`hold_id`: the hold a HOLD, CAPTURE, CAPTURE_IN or RELEASE row belongs to). Changes of the
catalog only: nullable columns and a column with a constant default (no table rewrite);
the CHECK constraints and the foreign key on the ledger are added NOT VALID (new rows
are checked, existing ones are not scanned), so the tables' exclusive locks are held for
moments, and never waited for longer than `lock_timeout`. The next revision validates
them and builds the ledger's index on `hold_id` while traffic goes on.

Downgrade: refused while any hold exists (the service before this revision cannot read a
hold's ledger rows, nor leave a held amount alone); without holds it drops what this
revision added and puts the ledger's previous constraints back.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3b7f1d2c8e90"
down_revision: str | Sequence[str] | None = "7d2b9e4c1a60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A migration keeps its own copy of what it writes: it must not change when the code does.
_OLD_KINDS = "'DEPOSIT', 'WITHDRAW', 'TRANSFER_IN', 'TRANSFER_OUT', 'REVERSAL_IN', 'REVERSAL_OUT'"
_HOLD_KINDS = "'HOLD', 'CAPTURE', 'CAPTURE_IN', 'RELEASE'"
_LEDGER = "wallet_operations"
#: The ledger's constraints this revision replaces, as they were.
_OLD_CHECKS = {
    "ck_wallet_operations_operation_known": f"operation IN ({_OLD_KINDS})",
    "ck_wallet_operations_transfer_names_both": (
        "(transfer_id IS NULL) = (counterparty_wallet_id IS NULL)"
    ),
}
#: What replaces them, and what is new (a capture into another wallet names it as its
#: counterparty, with no transfer).
NEW_CHECKS = {
    "ck_wallet_operations_operation_known": f"operation IN ({_OLD_KINDS}, {_HOLD_KINDS})",
    "ck_wallet_operations_transfer_names_both": (
        "transfer_id IS NULL OR counterparty_wallet_id IS NOT NULL"
    ),
    "ck_wallet_operations_counterparty_linked": (
        "counterparty_wallet_id IS NULL OR transfer_id IS NOT NULL OR hold_id IS NOT NULL"
    ),
    "ck_wallet_operations_hold_linked": f"(hold_id IS NOT NULL) = operation IN ({_HOLD_KINDS})",
}
NEW_FOREIGN_KEYS = {
    "fk_wallet_operations_hold_id_holds": "FOREIGN KEY (hold_id) REFERENCES holds (id)",
}
_WALLET_CHECKS = {"ck_wallets_held_not_negative": "held >= 0"}


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "seq",
            sa.BigInteger(),
            sa.Identity(always=True),
            nullable=False,
            comment="Creation order, for keyset pages.",
        ),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False, comment="Minor units, as held."),
        sa.Column(
            "remaining",
            sa.BigInteger(),
            nullable=False,
            comment="Minor units still held (0 once closed).",
        ),
        sa.Column(
            "captured",
            sa.BigInteger(),
            server_default=sa.text("0"),
            nullable=False,
            comment="Minor units captured so far.",
        ),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column(
            "api_key_id",
            sa.String(length=16),
            nullable=True,
            comment="The API key that created it (api_keys.id); NULL: no keys.",
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_holds_amount_positive")),
        sa.CheckConstraint(
            "remaining >= 0 AND captured >= 0 AND remaining + captured <= amount",
            name=op.f("ck_holds_within_amount"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'captured', 'voided', 'expired')",
            name=op.f("ck_holds_status_known"),
        ),
        sa.CheckConstraint(
            "(status = 'active') = (closed_at IS NULL)",
            name=op.f("ck_holds_closed_when_not_active"),
        ),
        sa.CheckConstraint(
            "status = 'active' OR remaining = 0", name=op.f("ck_holds_closed_holds_nothing")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["wallets.id"], name=op.f("fk_holds_wallet_id_wallets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    op.create_index("ix_holds_wallet_id_seq", "holds", ["wallet_id", "seq"])
    op.create_index(
        "ix_holds_active_expires_at",
        "holds",
        ["expires_at"],
        postgresql_where=sa.text("status = 'active'"),
    )
    op.add_column(
        "wallets",
        sa.Column(
            "held",
            sa.BigInteger(),
            server_default=sa.text("0"),
            nullable=False,
            comment="Minor units its active holds set aside (expired ones until released).",
        ),
    )
    op.add_column(
        "wallets",
        sa.Column(
            "holds_expire_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="The first expiry of its active holds; NULL: none.",
        ),
    )
    for name, condition in _WALLET_CHECKS.items():
        op.execute(f"ALTER TABLE wallets ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
    op.add_column(
        _LEDGER,
        sa.Column(
            "hold_id",
            sa.Uuid(),
            nullable=True,
            comment="The hold a HOLD, CAPTURE, CAPTURE_IN or RELEASE row belongs to.",
        ),
    )
    for name in _OLD_CHECKS:
        op.drop_constraint(op.f(name), _LEDGER, type_="check")
    for name, condition in NEW_CHECKS.items():
        op.execute(f"ALTER TABLE {_LEDGER} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
    for name, definition in NEW_FOREIGN_KEYS.items():
        op.execute(f"ALTER TABLE {_LEDGER} ADD CONSTRAINT {name} {definition} NOT VALID")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT FROM holds) THEN RAISE EXCEPTION "
        "'holds exist: the service before this revision cannot read them; "
        "void or capture them and delete them first'; END IF; END $$"
    )
    for name in (*NEW_FOREIGN_KEYS, *NEW_CHECKS):
        op.drop_constraint(op.f(name), _LEDGER)
    for name, condition in _OLD_CHECKS.items():
        # Validated as before this revision (a scan that lets reads and writes proceed).
        op.execute(f"ALTER TABLE {_LEDGER} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
        op.execute(f"ALTER TABLE {_LEDGER} VALIDATE CONSTRAINT {name}")
    op.drop_column(_LEDGER, "hold_id")
    for name in _WALLET_CHECKS:
        op.drop_constraint(op.f(name), "wallets")
    op.drop_column("wallets", "holds_expire_at")
    op.drop_column("wallets", "held")
    op.drop_index("ix_holds_active_expires_at", table_name="holds")
    op.drop_index("ix_holds_wallet_id_seq", table_name="holds")
    op.drop_table("holds")
