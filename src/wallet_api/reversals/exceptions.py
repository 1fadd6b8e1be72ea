"""The ways a reversal can be refused (besides the balance refusals of its legs)."""

from __future__ import annotations

from wallet_api.core.errors import AppError
from wallet_api.core.money import format_minor_units


class EntryNotFound(AppError):
    status = 404
    code = "entry_not_found"
    title = "Entry not found"
    example = "Ledger entry 42 does not exist."

    def __init__(self, entry_id: int) -> None:
        super().__init__(f"Ledger entry {entry_id} does not exist.")


class AlreadyReversed(AppError):
    status = 409
    code = "already_reversed"
    title = "Already reversed"
    example = "Ledger entry 42 was reversed already; an entry is reversed at most once."

    def __init__(self, entry_id: int) -> None:
        super().__init__(
            f"Ledger entry {entry_id} was reversed already; an entry is reversed at most once."
        )


class EntryNotReversible(AppError):
    status = 422
    code = "entry_not_reversible"
    title = "Entry not reversible"
    example = "Ledger entry 43 is itself a reversal; reverse nothing twice, make a new entry."

    def __init__(self, entry_id: int) -> None:
        super().__init__(
            f"Ledger entry {entry_id} is itself a reversal; reverse nothing twice, "
            "make a new entry."
        )


class ReversalExceedsEntry(AppError):
    status = 422
    code = "reversal_exceeds_entry"
    title = "Reversal exceeds the entry"
    example = "Cannot reverse 20 of ledger entry 42: its amount is 12.5."

    def __init__(self, *, entry_id: int, amount: int, entry_amount: int, exponent: int) -> None:
        super().__init__(
            f"Cannot reverse {format_minor_units(amount, exponent)} of ledger entry "
            f"{entry_id}: its amount is {format_minor_units(entry_amount, exponent)}."
        )
