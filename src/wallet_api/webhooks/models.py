"""The webhook tables: endpoints, deliveries, attempts, and the fan-out's position."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Uuid,
    func,
    text,
)

from wallet_api.core.database import Xid8, metadata

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("owner", String(64), nullable=True),
    Column("url", String(2048), nullable=False),
    Column(
        "types", ARRAY(String(32)), nullable=True, comment="The event types it gets; NULL: all."
    ),
    Column("description", String(500), nullable=True),
    Column("secret", String(64), nullable=False, comment="Signs deliveries."),
    Column("status", String(8), nullable=False, server_default="enabled"),
    Column(
        "failing_since",
        DateTime(timezone=True),
        nullable=True,
        comment="The first failed attempt since its last success; NULL: none.",
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('enabled', 'disabled')", name="status_known"),
    Index("ix_webhook_endpoints_owner_created_at", "owner", "created_at"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column(
        "endpoint_id",
        Uuid,
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_id", BigInteger, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(9), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column(
        "next_attempt_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        comment="When it is due; while a sender has it, when that sender's lease ends.",
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column(
        "not_before",
        DateTime(timezone=True),
        nullable=True,
        comment="Not sent again before this: its receiver's Retry-After.",
    ),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_known"),
    Index(
        "ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")
    ),
    Index("ix_webhook_deliveries_event_id", "event_id"),
    Index("ix_webhook_deliveries_endpoint_id", "endpoint_id"),
    # An endpoint's pending deliveries by when they are due (a success makes some due now).
    Index(
        "ix_webhook_deliveries_endpoint_pending",
        "endpoint_id",
        "next_attempt_at",
        postgresql_where=text("status = 'pending'"),
    ),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column(
        "delivery_id",
        BigInteger,
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("status_code", SmallInteger, nullable=True, comment="NULL: no answer."),
    Column("duration_ms", Integer, nullable=False),
    Column("error", String(500), nullable=True),
    Index("ix_webhook_attempts_delivery_id", "delivery_id"),
)

webhook_feed = Table(
    "webhook_feed",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("xid", Xid8(), nullable=False, server_default=text("'0'")),
    Column("event_id", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("id = 1", name="one_row"),
    comment="The position in the event feed up to which deliveries were made.",
)
