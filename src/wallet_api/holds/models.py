"""The holds table: money set aside on a wallet until it is captured, voided or expires.
(Its ledger rows are wallet_operations' HOLD, CAPTURE, CAPTURE_IN and RELEASE rows.)"""

from __future__ import annotations

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
from sqlalchemy.dialects.postgresql import JSONB

from wallet_api.core.database import metadata
from wallet_api.posting.entries import DESCRIPTION_MAX_LENGTH

holds = Table(
    "holds",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column(
        "seq",
        BigInteger,
        Identity(always=True),
        nullable=False,
        comment="Creation order, for keyset pages.",
    ),
    Column("wallet_id", Uuid, ForeignKey("wallets.id"), nullable=False),
    Column("amount", BigInteger, nullable=False, comment="Minor units, as held."),
    Column(
        "remaining", BigInteger, nullable=False, comment="Minor units still held (0 once closed)."
    ),
    Column(
        "captured",
        BigInteger,
        nullable=False,
        server_default=text("0"),
        comment="Minor units captured so far.",
    ),
    Column("status", String(8), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("description", String(DESCRIPTION_MAX_LENGTH), nullable=True),
    Column(
        "api_key_id",
        String(16),
        nullable=True,
        comment="The API key that created it (api_keys.id); NULL: no keys.",
    ),
    Column(
        "metadata",
        JSONB,
        nullable=True,
        comment="The client's metadata on the request that made it (NULL: none).",
    ),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint(
        "remaining >= 0 AND captured >= 0 AND remaining + captured <= amount",
        name="within_amount",
    ),
    CheckConstraint("status IN ('active', 'captured', 'voided', 'expired')", name="status_known"),
    CheckConstraint("(status = 'active') = (closed_at IS NULL)", name="closed_when_not_active"),
    CheckConstraint("status = 'active' OR remaining = 0", name="closed_holds_nothing"),
    # A wallet's holds by keyset; the active ones by expiry (the sweeper's order); a
    # wallet's active ones by expiry, with what each holds (their sum and first expiry, read
    # by every write that changes them, without the wallet's closed holds).
    Index("ix_holds_wallet_id_seq", "wallet_id", "seq"),
    Index(
        "ix_holds_active_expires_at",
        "expires_at",
        postgresql_where=text("status = 'active'"),
    ),
    Index(
        "ix_holds_active_wallet_id_expires_at",
        "wallet_id",
        "expires_at",
        postgresql_include=["remaining"],
        postgresql_where=text("status = 'active'"),
    ),
)
