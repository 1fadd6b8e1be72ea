"""The events table: one row per committed change, written in the change's statement.
(Each wallet's ledger numbering, `seq`, lives on wallets and wallet_operations.)"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    String,
    Table,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from wallet_api.core.database import Xid8, metadata

events = Table(
    "events",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column(
        "xid",
        Xid8(),
        nullable=False,
        server_default=text("pg_current_xact_id()"),
        comment="The transaction that wrote it: the feed's order.",
    ),
    Column("type", String(32), nullable=False),
    Column(
        "owner",
        String(64),
        nullable=True,
        comment="Whose it is: the owner of `wallet_id` when it was written.",
    ),
    Column(
        "wallet_id",
        Uuid,
        nullable=False,
        comment="The owner's first wallet the change touched.",
    ),
    Column(
        "ledger_ids",
        ARRAY(BigInteger),
        nullable=False,
        server_default=text("'{}'"),
        comment="The ledger rows of the change, in the order they were applied.",
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column(
        "detail",
        JSONB,
        nullable=True,
        comment="What an event not made of ledger rows says (a monitor's crossing).",
    ),
    # The feed: all events (without keys) or an owner's, in the order of the transactions.
    Index("ix_events_xid_id", "xid", "id"),
    Index("ix_events_owner_xid_id", "owner", "xid", "id"),
)
