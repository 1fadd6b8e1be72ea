"""The ways a wallet operation can be refused, each with its stable code and status."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from wallet_api.core.errors import AppError
from wallet_api.core.money import format_minor_units


class WalletNotFound(AppError):
    status = 404
    code = "wallet_not_found"
    title = "Wallet not found"
    example = "Wallet 3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47 does not exist."

    def __init__(self, wallet_id: UUID) -> None:
        super().__init__(f"Wallet {wallet_id} does not exist.")


class InsufficientFunds(AppError):
    status = 400
    code = "insufficient_funds"
    title = "Insufficient funds"
    example = "Cannot withdraw 5: the balance is 0.3."

    def __init__(self, *, balance: int, amount: int, exponent: int) -> None:
        super().__init__(
            f"Cannot withdraw {format_minor_units(amount, exponent)}: "
            f"the balance is {format_minor_units(balance, exponent)}."
        )


class BalanceLimitExceeded(AppError):
    status = 400
    code = "balance_limit_exceeded"
    title = "Balance limit exceeded"
    example = (
        "Cannot deposit 1: the balance 9999999999999.99 would exceed the limit 9999999999999.99."
    )

    def __init__(self, *, balance: int, amount: int, limit: int, exponent: int) -> None:
        super().__init__(
            f"Cannot deposit {format_minor_units(amount, exponent)}: the balance "
            f"{format_minor_units(balance, exponent)} would exceed the limit "
            f"{format_minor_units(limit, exponent)}."
        )


class TimeInTheFuture(AppError):
    status = 422
    code = "time_in_the_future"
    title = "Time in the future"
    example = "2999-01-01T00:00:00+00:00 is later than now: no balance is known for it yet."

    def __init__(self, at: datetime) -> None:
        super().__init__(f"{at.isoformat()} is later than now: no balance is known for it yet.")


class CurrencyMismatch(AppError):
    status = 422
    code = "currency_mismatch"
    title = "Currency mismatch"
    example = (
        "Wallet 8d2f4b6a-1c3e-4f5a-9b7d-0e2c4a6b8d1f is in JPY, wallet "
        "3f0a0c1e-5e55-4b1f-9d0e-1d6b2f0c9a47 in USD: money moves between wallets of one "
        "currency only (nothing is converted)."
    )

    def __init__(self, payee: UUID, payee_currency: str, payer: UUID, payer_currency: str) -> None:
        super().__init__(
            f"Wallet {payee} is in {payee_currency}, wallet {payer} in {payer_currency}: money "
            "moves between wallets of one currency only (nothing is converted)."
        )
