"""The SQL of balance monitors. (Their states are kept by the statements that move money:
posting/repository.py, `_MONITORS`.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from wallet_api.core.database import Connection


@dataclass(frozen=True, slots=True)
class MonitorRow:
    id: UUID
    wallet_id: UUID
    condition: str
    threshold: int
    across: bool
    created_at: datetime


_COLUMNS = "id, wallet_id, condition, threshold, across, created_at"
# The new monitor, its state read from the wallet as the moving statements compute it
# (balance less what is held as stored), under the wallet's row lock: no commit moves the
# wallet between that read and the monitor's insert. Written only while the wallet has
# fewer than $5 (counted under the same lock).
_CREATE = f"""
    WITH wallet AS (
        SELECT w.id, w.owner, w.balance - w.held AS available FROM wallets w
        WHERE w.id = $2 FOR UPDATE
    )
    INSERT INTO balance_monitors (id, wallet_id, owner, condition, threshold, across)
    SELECT $1::uuid, w.id, w.owner, $3::text, $4::bigint, CASE $3::text
        WHEN 'below' THEN w.available < $4::bigint ELSE w.available > $4::bigint END
    FROM wallet w
    WHERE (SELECT count(*) FROM balance_monitors WHERE wallet_id = $2) < $5
    RETURNING {_COLUMNS}
"""
_OF_WALLET = f"""
    SELECT {_COLUMNS} FROM balance_monitors WHERE wallet_id = $1 ORDER BY created_at, id
"""
_DELETE = "DELETE FROM balance_monitors WHERE id = $1 AND wallet_id = $2 RETURNING id"


async def create(
    connection: Connection,
    monitor_id: UUID,
    wallet_id: UUID,
    *,
    condition: str,
    threshold: int,
    limit: int,
) -> MonitorRow | None:
    """The new monitor, or None when the wallet has `limit` already (or does not exist)."""
    row = await connection.fetchrow(_CREATE, monitor_id, wallet_id, condition, threshold, limit)
    return None if row is None else MonitorRow(*row)


async def of_wallet(connection: Connection, wallet_id: UUID) -> list[MonitorRow]:
    return [MonitorRow(*row) for row in await connection.fetch(_OF_WALLET, wallet_id)]


async def delete(connection: Connection, monitor_id: UUID, wallet_id: UUID) -> bool:
    return await connection.fetchval(_DELETE, monitor_id, wallet_id) is not None
