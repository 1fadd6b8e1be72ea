"""The SQL that reads holds (their writes are entries: posting/repository.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from wallet_api.core.database import Connection


@dataclass(frozen=True, slots=True)
class HoldRow:
    """A hold as stored, with its status as the API shows it: an active hold past its
    expiry (by the database's clock) is `expired`, whether or not its release has been
    written yet."""

    id: UUID
    wallet_id: UUID
    amount: int
    captured: int
    remaining: int
    status: str
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None
    description: str | None
    seq: int
    metadata: str | None = None  # JSON text, as stored: what its release is written with

    @property
    def held(self) -> int:
        """What it sets aside now: nothing once expired."""
        return self.remaining if self.status == "active" else 0


_STATUS = "CASE WHEN status = 'active' AND expires_at <= now() THEN 'expired' ELSE status END"
_COLUMNS = f"""id, wallet_id, amount, captured, remaining, {_STATUS} AS status, created_at,
    expires_at, closed_at, description, seq, metadata::text"""
_HOLDS = f"SELECT {_COLUMNS} FROM holds WHERE id = ANY($1::uuid[])"
# A wallet's holds, newest first, by keyset on their creation order (its index).
_WALLET_HOLDS = f"""
    SELECT {_COLUMNS} FROM holds
    WHERE wallet_id = $1 AND seq < $2 AND ($3::text IS NULL OR {_STATUS} = $3)
    ORDER BY seq DESC
    LIMIT $4
"""


async def holds(connection: Connection, hold_ids: list[UUID]) -> dict[UUID, HoldRow]:
    """Those of the holds that exist, by id."""
    return {row[0]: HoldRow(*row) for row in await connection.fetch(_HOLDS, hold_ids)}


async def wallet_holds(
    connection: Connection, wallet_id: UUID, *, before: int, status: str | None, limit: int
) -> list[HoldRow]:
    """The wallet's holds created before `before` (their order), newest first."""
    rows = await connection.fetch(_WALLET_HOLDS, wallet_id, before, status, limit)
    return [HoldRow(*row) for row in rows]
