"""The readiness query."""

from __future__ import annotations

from wallet_api.core.database import Connection


async def ping(connection: Connection) -> None:
    await connection.execute("SELECT 1")
