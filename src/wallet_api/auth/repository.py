"""All SQL for API keys. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import asyncpg

from wallet_api.auth.keys import ApiKey, Scope
from wallet_api.core.database import Connection

_KNOWN_SCOPES = frozenset(scope.value for scope in Scope)
_COLUMNS = "id, owner, scopes, secret_sha256, rate, burst, created_at, expires_at, revoked_at"


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=row["id"],
        owner=row["owner"],
        # A scope this version does not know (written by a newer one) grants nothing here.
        scopes=frozenset(Scope(scope) for scope in row["scopes"] if scope in _KNOWN_SCOPES),
        secret_sha256=row["secret_sha256"],
        rate=row["rate"],
        burst=row["burst"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


async def insert_key(
    connection: Connection,
    *,
    key_id: str,
    owner: str,
    scopes: Collection[Scope],
    secret_sha256: str,
    rate: float | None,
    burst: int | None,
    expires_at: datetime | None,
) -> ApiKey:
    row = await connection.fetchrow(
        f"""
        INSERT INTO api_keys (id, owner, scopes, secret_sha256, rate, burst, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}
        """,
        key_id,
        owner,
        sorted(scope.value for scope in scopes),
        secret_sha256,
        rate,
        burst,
        expires_at,
    )
    assert row is not None
    return _key(row)


async def all_keys(connection: Connection) -> list[ApiKey]:
    """Every key, revoked and expired ones included (they are answered as such)."""
    return [_key(row) for row in await connection.fetch(f"SELECT {_COLUMNS} FROM api_keys")]


async def find_key(connection: Connection, key_id: str) -> ApiKey | None:
    row = await connection.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id)
    return None if row is None else _key(row)


async def revoke_key(connection: Connection, key_id: str) -> ApiKey | None:
    """Revoke the key now (a second revocation keeps the first time); None if unknown."""
    row = await connection.fetchrow(
        f"""
        UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
        RETURNING {_COLUMNS}
        """,
        key_id,
    )
    return None if row is None else _key(row)
