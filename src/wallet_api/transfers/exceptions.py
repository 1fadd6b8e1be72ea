"""The ways a transfer can be refused: the codes of the operation endpoint, saying which
wallet, and a transfer that does not exist."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from uuid import UUID

from wallet_api.core.errors import AppError
from wallet_api.core.money import MAX_MINOR_UNITS, format_minor_units
from wallet_api.posting.entries import Leg, Refusal, Shortfall
from wallet_api.wallets.exceptions import BalanceLimitExceeded, InsufficientFunds, WalletNotFound


class TransferWalletNotFound(WalletNotFound):
    example = "The source wallet 3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47 does not exist."

    def __init__(self, wallet_id: UUID, side: str) -> None:
        AppError.__init__(self, f"The {side} wallet {wallet_id} does not exist.")


class TransferInsufficientFunds(InsufficientFunds):
    example = (
        "Cannot transfer 5 from wallet 3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47: its balance is 0.3."
    )

    def __init__(
        self, *, wallet_id: UUID, balance: int | None, amount: int, verb: str, exponent: int
    ) -> None:
        AppError.__init__(
            self,
            f"Cannot {verb} {format_minor_units(amount, exponent)} from wallet {wallet_id}: "
            + (
                "its balance does not cover it."  # another owner's: its balance is not told
                if balance is None
                else f"its balance is {format_minor_units(balance, exponent)}."
            ),
        )


class TransferBalanceLimitExceeded(BalanceLimitExceeded):
    example = (
        "Cannot transfer 1 to wallet 3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47: its balance "
        "9999999999999.99 would exceed the limit 9999999999999.99."
    )

    def __init__(
        self, *, wallet_id: UUID, balance: int | None, amount: int, verb: str, exponent: int
    ) -> None:
        AppError.__init__(
            self,
            f"Cannot {verb} {format_minor_units(amount, exponent)} to wallet {wallet_id}: "
            + (
                "its balance would exceed the limit "  # another owner's: not told
                if balance is None
                else f"its balance {format_minor_units(balance, exponent)} would exceed the limit "
            )
            + f"{format_minor_units(MAX_MINOR_UNITS, exponent)}.",
        )


class TransferNotFound(AppError):
    status = 404
    code = "transfer_not_found"
    title = "Transfer not found"
    example = "Transfer 7c1f3a52-9e1b-4d8e-a1c4-5b2f6d0e8a93 does not exist."

    def __init__(self, transfer_id: UUID) -> None:
        super().__init__(f"Transfer {transfer_id} does not exist.")


def refusal_error(
    refusal: Refusal,
    legs: Sequence[Leg],
    *,
    verb: str,
    exponent: int,
    hidden: Collection[UUID] = (),
) -> AppError:
    """The problem an entry's refusal is answered with: which wallet, and why (amounts of
    a currency of `exponent` digits: an entry's legs are of one currency), without the
    balance of a wallet in `hidden` (another owner's). (A leg reversing a row reversed
    before is the reversal endpoint's own refusal.)"""
    leg = legs[refusal.leg]
    if refusal.reason is Shortfall.MISSING:
        side = "source" if leg.delta < 0 else "destination"
        return TransferWalletNotFound(leg.wallet_id, side)
    assert refusal.balance is not None
    balance = None if leg.wallet_id in hidden else refusal.balance
    if refusal.reason is Shortfall.INSUFFICIENT:
        return TransferInsufficientFunds(
            wallet_id=leg.wallet_id,
            balance=balance,
            amount=leg.amount,
            verb=verb,
            exponent=exponent,
        )
    if refusal.reason is Shortfall.OVER_LIMIT:
        return TransferBalanceLimitExceeded(
            wallet_id=leg.wallet_id,
            balance=balance,
            amount=leg.amount,
            verb=verb,
            exponent=exponent,
        )
    raise ValueError(f"not a refusal of a transfer: {refusal}")
