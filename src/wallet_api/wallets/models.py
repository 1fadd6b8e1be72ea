"""The tables: a wallet's current balance, and the append-only ledger of applied operations."""

from __future__ import annotations

import enum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    Table,
    Uuid,
    func,
    text,
)

from wallet_api.core.database import metadata
from wallet_api.core.money import MAX_MINOR_UNITS


class OperationType(enum.StrEnum):
    DEPOSIT = "DEPOSIT"
    WITHDRAW = "WITHDRAW"


wallets = Table(
    "wallets",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("balance", BigInteger, nullable=False, server_default=text("0"), comment="Minor units."),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The last line of defence: the service never writes these, the database refuses them.
    CheckConstraint("balance >= 0", name="balance_not_negative"),
    CheckConstraint(f"balance <= {MAX_MINOR_UNITS}", name="balance_within_limit"),
)

wallet_operations = Table(
    "wallet_operations",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("wallet_id", Uuid, ForeignKey("wallets.id"), nullable=False),
    Column("operation", String(8), nullable=False),
    Column("amount", BigInteger, nullable=False, comment="Minor units, always positive."),
    Column("balance_after", BigInteger, nullable=False, comment="Minor units."),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("operation IN ('DEPOSIT', 'WITHDRAW')", name="operation_known"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
    # A wallet's history, newest first, by keyset: (wallet_id, id DESC).
    Index("ix_wallet_operations_wallet_id_id", "wallet_id", "id"),
)
