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
    SmallInteger,
    String,
    Table,
    Text,
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
    Column("idempotency_key", String(255), nullable=True),
    CheckConstraint("operation IN ('DEPOSIT', 'WITHDRAW')", name="operation_known"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
    # A wallet's history, newest first, by keyset: (wallet_id, id DESC).
    Index("ix_wallet_operations_wallet_id_id", "wallet_id", "id"),
)

#: The outcome of every request sent with an Idempotency-Key, stored in the transaction
#: that applied (or refused) it, replayed to later requests with the same key.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False, comment="sha256 of method, path, body."),
    Column("response_status", SmallInteger, nullable=False),
    Column("response_body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_idempotency_keys_created_at", "created_at"),
)
