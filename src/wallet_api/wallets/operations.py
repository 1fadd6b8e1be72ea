"""Deposits and withdrawals as entries of the posting engine, and their outcomes as the
operation endpoints answer them. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import UUID

import orjson

from wallet_api.core.errors import AppError, error_document
from wallet_api.core.fields import minor_units
from wallet_api.core.idempotency import Replay
from wallet_api.core.money import FRACTION_DIGITS, MAX_MINOR_UNITS, Currency, UnitAmount
from wallet_api.posting.entries import Entry, EntryKind, Leg, Posted, Refusal, Shortfall
from wallet_api.posting.events import EventType
from wallet_api.posting.writer import Outcome as EntryOutcome
from wallet_api.wallets.exceptions import BalanceLimitExceeded, InsufficientFunds, WalletNotFound
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.schemas import batch_body, operation_body, operation_body_around, result_of


class Applied(NamedTuple):
    """An applied operation: its wallet's balance right after it, in its currency."""

    balance: int
    currency: Currency


#: What one operation came to: the balance right after it, why it was refused, or the
#: stored outcome of the earlier request with the same Idempotency-Key.
Outcome = Applied | AppError | Replay


@dataclass(frozen=True, slots=True)
class Operation:
    """One requested deposit or withdrawal, as sent (its amount in units of the wallet's
    currency, read once the currency is known: `entry_of`), with its Idempotency-Key."""

    kind: OperationType
    amount: UnitAmount
    idempotency_key: str | None = None
    fingerprint: str = ""  # of the whole request, when it carries a key
    api_key_id: str | None = None  # the key that sent it, kept on its ledger row
    metadata: str | None = None  # the client's (JSON text), kept on its ledger row


_APPLIED = EventType.OPERATION_APPLIED


def entry_of(
    wallet_id: UUID,
    operation: Operation,
    currency: Currency,
    loc: tuple[str | int, ...] = ("body", "amount"),
) -> Entry:
    """The operation as an entry of one leg, its amount in minor units of `currency` (or
    422 `validation_error` at `loc`). With a key, the response to keep is its endpoint's:
    the applied body is written by the statement around the balance (for a currency of
    two digits, which the statement renders; of others, by `render`)."""
    kind = EntryKind.DEPOSIT if operation.kind is OperationType.DEPOSIT else EntryKind.WITHDRAW
    leg = Leg(wallet_id, kind, minor_units(operation.amount, currency, loc))
    if operation.idempotency_key is None:
        return Entry(
            legs=(leg,),
            api_key_id=operation.api_key_id,
            event=_APPLIED,
            metadata=operation.metadata,
        )
    return Entry(
        legs=(leg,),
        event=_APPLIED,
        render=lambda outcome: result_of(outcome_of(leg, outcome, currency)),
        idempotency_key=operation.idempotency_key,
        fingerprint=operation.fingerprint,
        api_key_id=operation.api_key_id,
        metadata=operation.metadata,
        applied_body=(
            (200, *operation_body_around(currency))
            if currency.exponent == FRACTION_DIGITS
            else None
        ),
        keep_missing=False,
    )


def outcome_of(leg: Leg, outcome: EntryOutcome, currency: Currency) -> Outcome:
    """An entry's outcome as the operation's: the balance after it, or its refusal."""
    if isinstance(outcome, Posted):
        return Applied(outcome.balances[0], currency)
    if isinstance(outcome, Refusal):
        return refusal_error(leg, outcome, currency)
    return outcome


def refusal_error(leg: Leg, refusal: Refusal, currency: Currency) -> AppError:
    """The problem an operation's refusal is answered with."""
    if refusal.reason is Shortfall.MISSING:
        return WalletNotFound(leg.wallet_id)
    assert refusal.balance is not None
    if refusal.reason is Shortfall.OVER_LIMIT:
        return BalanceLimitExceeded(
            balance=refusal.balance,
            amount=leg.amount,
            limit=MAX_MINOR_UNITS,
            exponent=currency.exponent,
        )
    return InsufficientFunds(balance=refusal.balance, amount=leg.amount, exponent=currency.exponent)


@dataclass(frozen=True, slots=True)
class AtomicRefusal:
    """An atomic batch refused as a whole: the first refused operation and why."""

    index: int
    error: AppError


#: An atomic batch's outcome: every operation's balance right after it, or its refusal.
Atomic = list[Applied] | AtomicRefusal


def atomic_outcome(
    entries: Sequence[Entry],
    currencies: Sequence[Currency],
    outcomes: Sequence[Posted | Refusal],
) -> Atomic:
    """An all-or-nothing batch judged in order: the balance after each item, in the
    items' order, or the first refusal."""
    balances: list[Applied] = []
    # One outcome per entry by construction: `strict` only documents it.
    for index, (entry, currency, outcome) in enumerate(
        zip(entries, currencies, outcomes, strict=True)  # pragma: no mutate
    ):
        if isinstance(outcome, Refusal):
            return AtomicRefusal(index, refusal_error(entry.legs[0], outcome, currency))
        balances.append(Applied(outcome.balances[0], currency))
    return balances


def refusal_document(refusal: AtomicRefusal) -> dict[str, Any]:
    """The problem document of an atomic batch refused as a whole: its first refused
    operation's, saying which (`index`)."""
    document = error_document(refusal.error)
    document["detail"] = f"Operation {refusal.index}: {refusal.error.detail}"
    document["index"] = refusal.index
    return document


def atomic_response(result: Atomic) -> tuple[int, str]:
    """(status, body) of an atomic batch's response, as kept for its Idempotency-Key."""
    if isinstance(result, AtomicRefusal):
        return result.error.status, orjson.dumps(refusal_document(result)).decode()
    return 200, batch_body([(200, operation_body(*applied)) for applied in result])
