"""The readiness query."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_PING = text("SELECT 1")


async def ping(connection: AsyncConnection) -> None:
    await connection.execute(_PING)
