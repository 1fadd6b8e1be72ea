"""The table of API keys: who may call, with which scopes and limits. Never the secret."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    func,
)

from wallet_api.core.database import metadata

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True, comment="The key's public id, part of the key."),
    Column("owner", String(64), nullable=False),
    Column("scopes", ARRAY(String(16)), nullable=False),
    Column("secret_sha256", String(64), nullable=False, comment="Hex SHA-256 of the secret."),
    Column("rate", Float, nullable=True, comment="Requests a second; NULL: the default."),
    Column("burst", Integer, nullable=True, comment="Requests at once; NULL: the default."),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("rate IS NULL OR rate > 0", name="rate_positive"),
    CheckConstraint("burst IS NULL OR burst >= 1", name="burst_positive"),
    CheckConstraint("scopes <@ ARRAY['read', 'write', 'deposit']::varchar[]", name="scopes_known"),
)
