"""Deposits and withdrawals as entries of the posting engine, and their outcomes as the
operation endpoints answer them. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from wallet_api.core.errors import AppError, error_document
from wallet_api.core.idempotency import Replay
from wallet_api.core.money import MAX_MINOR_UNITS
from wallet_api.posting.entries import Entry, EntryKind, Leg, Posted, Refusal, Shortfall
from wallet_api.posting.events import EventType
from wallet_api.posting.writer import Outcome as EntryOutcome
from wallet_api.wallets.exceptions import BalanceLimitExceeded, InsufficientFunds, WalletNotFound
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.schemas import OPERATION_BODY_AROUND, batch_body, operation_body, result_of

#: What one operation came to: the balance right after it, why it was refused, or the
#: stored outcome of the earlier request with the same Idempotency-Key.
Outcome = int | AppError | Replay


@dataclass(frozen=True, slots=True)
class Operation:
    """One requested deposit or withdrawal, in minor units, with its Idempotency-Key."""

    kind: OperationType
    amount: int
    idempotency_key: str | None = None
    fingerprint: str = ""  # of the whole request, when it carries a key
    api_key_id: str | None = None  # the key that sent it, kept on its ledger row
    metadata: str | None = None  # the client's (JSON text), kept on its ledger row


_APPLIED = EventType.OPERATION_APPLIED


def entry_of(wallet_id: UUID, operation: Operation) -> Entry:
    """The operation as an entry of one leg. With a key, the response to keep is its
    endpoint's: the applied body is written by the statement around the balance."""
    kind = EntryKind.DEPOSIT if operation.kind is OperationType.DEPOSIT else EntryKind.WITHDRAW
    leg = Leg(wallet_id, kind, operation.amount)
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
        render=lambda outcome: result_of(outcome_of(leg, outcome)),
        idempotency_key=operation.idempotency_key,
        fingerprint=operation.fingerprint,
        api_key_id=operation.api_key_id,
        metadata=operation.metadata,
        applied_body=(200, *OPERATION_BODY_AROUND),
        keep_missing=False,
    )


def outcome_of(leg: Leg, outcome: EntryOutcome) -> Outcome:
    """An entry's outcome as the operation's: the balance after it, or its refusal."""
    if isinstance(outcome, Posted):
        return outcome.balances[0]
    if isinstance(outcome, Refusal):
        return refusal_error(leg, outcome)
    return outcome


def refusal_error(leg: Leg, refusal: Refusal) -> AppError:
    """The problem an operation's refusal is answered with."""
    if refusal.reason is Shortfall.MISSING:
        return WalletNotFound(leg.wallet_id)
    assert refusal.balance is not None
    if refusal.reason is Shortfall.OVER_LIMIT:
        return BalanceLimitExceeded(
            balance=refusal.balance, amount=leg.amount, limit=MAX_MINOR_UNITS
        )
    return InsufficientFunds(balance=refusal.balance, amount=leg.amount)


@dataclass(frozen=True, slots=True)
class AtomicRefusal:
    """An atomic batch refused as a whole: the first refused operation and why."""

    index: int
    error: AppError


#: An atomic batch's outcome: every operation's balance right after it, or its refusal.
Atomic = list[int] | AtomicRefusal


def atomic_outcome(entries: Sequence[Entry], outcomes: Sequence[Posted | Refusal]) -> Atomic:
    """An all-or-nothing batch judged in order: the balance after each item, in the
    items' order, or the first refusal."""
    balances: list[int] = []
    # One outcome per entry by construction: `strict` only documents it.
    for index, (entry, outcome) in enumerate(
        zip(entries, outcomes, strict=True)  # pragma: no mutate
    ):
        if isinstance(outcome, Refusal):
            return AtomicRefusal(index, refusal_error(entry.legs[0], outcome))
        balances.append(outcome.balances[0])
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
    return 200, batch_body([(200, operation_body(balance)) for balance in result])
