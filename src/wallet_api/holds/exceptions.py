"""The ways a hold request can be refused, each with its stable code and status."""

from __future__ import annotations

from uuid import UUID

from wallet_api.core.errors import AppError
from wallet_api.core.money import format_minor_units
from wallet_api.wallets.exceptions import InsufficientFunds

_EXAMPLE_HOLD = "5b0e7f3c-2a4d-4e6f-8a1b-9c3d5e7f9a2b"


class HoldNotFound(AppError):
    status = 404
    code = "hold_not_found"
    title = "Hold not found"
    example = f"Hold {_EXAMPLE_HOLD} does not exist."

    def __init__(self, hold_id: UUID) -> None:
        super().__init__(f"Hold {hold_id} does not exist.")


class HoldClosed(AppError):
    """A capture or a void of a hold that is closed: 409, the code naming its state."""

    status = 409
    #: The hold's status this refusal stands for.
    hold_status = ""

    def __init__(self, hold_id: UUID) -> None:
        super().__init__(f"Hold {hold_id} {self._was}; nothing was changed.")

    _was = ""


class HoldCaptured(HoldClosed):
    code = "hold_captured"
    title = "Hold captured"
    hold_status = "captured"
    _was = "was captured"
    example = f"Hold {_EXAMPLE_HOLD} was captured; nothing was changed."


class HoldVoided(HoldClosed):
    code = "hold_voided"
    title = "Hold voided"
    hold_status = "voided"
    _was = "was voided"
    example = f"Hold {_EXAMPLE_HOLD} was voided; nothing was changed."


class HoldExpired(HoldClosed):
    code = "hold_expired"
    title = "Hold expired"
    hold_status = "expired"
    _was = "has expired"
    example = f"Hold {_EXAMPLE_HOLD} has expired; nothing was changed."


#: The refusal for each closed status.
CLOSED = {error.hold_status: error for error in (HoldCaptured, HoldVoided, HoldExpired)}


class CaptureExceedsHold(AppError):
    status = 422
    code = "capture_exceeds_hold"
    title = "Capture exceeds the hold"
    example = f"Cannot capture 50: hold {_EXAMPLE_HOLD} holds 30."

    def __init__(self, *, hold_id: UUID, amount: int, held: int, exponent: int) -> None:
        super().__init__(
            f"Cannot capture {format_minor_units(amount, exponent)}: hold {hold_id} holds "
            f"{format_minor_units(held, exponent)}."
        )


class HoldInsufficientFunds(InsufficientFunds):
    example = (
        "Cannot hold 5 on wallet 3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47: its available "
        "balance is 0.3."
    )

    def __init__(self, *, wallet_id: UUID, available: int, amount: int, exponent: int) -> None:
        AppError.__init__(
            self,
            f"Cannot hold {format_minor_units(amount, exponent)} on wallet {wallet_id}: its "
            f"available balance is {format_minor_units(available, exponent)}.",
        )
