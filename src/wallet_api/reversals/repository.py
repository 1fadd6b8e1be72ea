"""The SQL of reversals: what an entry to reverse is (their writes are entries:
posting/repository.py)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from wallet_api.core.database import Connection


@dataclass(frozen=True, slots=True)
class EntryRow:
    id: int
    wallet_id: UUID
    operation: str
    amount: int
    transfer_id: UUID | None
    counterparty_wallet_id: UUID | None


_COLUMNS = "id, wallet_id, operation, amount, transfer_id, counterparty_wallet_id"
# The entry, then, when it is a transfer's leg, the transfer's other leg.
_ENTRY = f"""
    SELECT {_COLUMNS} FROM wallet_operations
    WHERE id = $1 OR (
        transfer_id = (SELECT transfer_id FROM wallet_operations WHERE id = $1)
        AND operation IN ('TRANSFER_IN', 'TRANSFER_OUT')
    )
    ORDER BY id <> $1, id
"""
_TRANSFER = f"""
    SELECT {_COLUMNS} FROM wallet_operations
    WHERE transfer_id = $1 AND operation IN ('TRANSFER_IN', 'TRANSFER_OUT')
"""


async def entry_rows(connection: Connection, entry_id: int) -> list[EntryRow]:
    """The ledger row `entry_id` first, then its transfer's other leg if it has one."""
    return [EntryRow(*row) for row in await connection.fetch(_ENTRY, entry_id)]


async def transfer_rows(connection: Connection, transfer_id: UUID) -> list[EntryRow]:
    """The two legs of a transfer (none if there is no such transfer)."""
    return [EntryRow(*row) for row in await connection.fetch(_TRANSFER, transfer_id)]
