"""The SQL of transfers (their writes are entries: posting/repository.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from wallet_api.core.database import Connection


@dataclass(frozen=True, slots=True)
class TransferRow:
    """One ledger row of a transfer: a leg, or a leg of its reversal."""

    id: int
    wallet_id: UUID
    operation: str
    amount: int
    balance_after: int
    created_at: datetime
    description: str | None
    metadata: str | None  # JSON text, as stored


_TRANSFER_ROWS = """
    SELECT id, wallet_id, operation, amount, balance_after, created_at, description,
           metadata::text
    FROM wallet_operations WHERE transfer_id = $1 ORDER BY id
"""


async def transfer_rows(connection: Connection, transfer_id: UUID) -> list[TransferRow]:
    """The ledger rows of a transfer, oldest first: its two legs, then its reversal's."""
    return [TransferRow(*row) for row in await connection.fetch(_TRANSFER_ROWS, transfer_id)]
