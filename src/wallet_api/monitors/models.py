"""The balance monitors table."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    String,
    Table,
    Uuid,
    func,
)

from wallet_api.core.database import metadata

balance_monitors = Table(
    "balance_monitors",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("wallet_id", Uuid, ForeignKey("wallets.id"), nullable=False),
    Column("owner", String(64), nullable=True),
    Column("condition", String(5), nullable=False),
    Column("threshold", BigInteger, nullable=False, comment="Minor units."),
    Column(
        "across",
        Boolean,
        nullable=False,
        comment="Whether the available balance is across the threshold now.",
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("condition IN ('below', 'above')", name="condition_known"),
    CheckConstraint("threshold >= 0", name="threshold_not_negative"),
    Index("ix_balance_monitors_wallet_id", "wallet_id"),
)
