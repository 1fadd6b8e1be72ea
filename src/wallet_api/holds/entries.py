"""How a hold request becomes an entry of the posting engine, and its outcome an answer.

A hold is an entry of one leg (HOLD). A capture takes from what its hold still holds
(CAPTURE; with a payee, CAPTURE_IN credits it) and, when final, releases the rest
(RELEASE), which closes the hold; a void releases all of it; an expired hold's release
closes it as expired. Each is built from the hold as read (`HoldRow`); the engine judges
it on the hold's row, locked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

import orjson

from wallet_api.core.errors import AppError, error_document
from wallet_api.core.fields import metadata_text, minor_units
from wallet_api.core.money import Currency
from wallet_api.holds.exceptions import (
    CLOSED,
    CaptureExceedsHold,
    HoldClosed,
    HoldInsufficientFunds,
)
from wallet_api.holds.repository import HoldRow
from wallet_api.holds.schemas import CaptureRequest, HoldRequest, hold_document, render
from wallet_api.posting.entries import ACTIVE, Entry, EntryKind, Leg, Posted, Refusal, Shortfall
from wallet_api.posting.events import EventType
from wallet_api.posting.repository import DueHold
from wallet_api.transfers.exceptions import refusal_error
from wallet_api.wallets.exceptions import WalletNotFound

#: An entry's Idempotency-Key (if any), its request's fingerprint, and its API key.
Key = tuple[str | None, str, str | None]


def hold_entry(
    request: HoldRequest, hold_id: UUID, currency: Currency, amount: int, *, key: Key
) -> Entry:
    """A new hold as an entry: its amount (in minor units of the wallet's `currency`) set
    aside on its wallet for `expires_in`."""
    idempotency_key, fingerprint, api_key_id = key
    return Entry(
        legs=(Leg(request.wallet_uuid, EntryKind.HOLD, amount, hold=hold_id),),
        render=lambda outcome: respond_hold(request, hold_id, currency, amount, outcome),
        description=request.description,
        metadata=metadata_text(request.metadata),
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        api_key_id=api_key_id,
        expires_in=request.expires_in,
        event=EventType.HOLD_CREATED,
    )


def hold_error(request: HoldRequest, currency: Currency, amount: int, refusal: Refusal) -> AppError:
    """The problem a new hold's refusal is answered with."""
    wallet_id = request.wallet_uuid
    if refusal.reason is Shortfall.INSUFFICIENT:
        assert refusal.balance is not None
        return HoldInsufficientFunds(
            wallet_id=wallet_id,
            available=refusal.balance,
            amount=amount,
            exponent=currency.exponent,
        )
    return WalletNotFound(wallet_id)


def respond_hold(
    request: HoldRequest,
    hold_id: UUID,
    currency: Currency,
    amount: int,
    outcome: Posted | Refusal,
) -> tuple[int, str]:
    """The answer to a new hold: 201 and the hold with its wallet's balances right after
    it, or its refusal's problem."""
    if isinstance(outcome, Refusal):
        return problem(hold_error(request, currency, amount, outcome))
    balance = outcome.balances[0]
    assert outcome.available is not None
    document = hold_document(
        hold_id=hold_id,
        wallet_id=request.wallet_uuid,
        status=ACTIVE,
        amount=amount,
        currency=currency,
        captured=0,
        held=amount,
        description=request.description,
        created_at=outcome.at,
        expires_at=outcome.at + timedelta(seconds=request.expires_in),
        closed_at=None,
        balances=(balance, balance - outcome.available),
        metadata=metadata_text(request.metadata),
    )
    return 201, render(document)


def capture_entry(
    hold: HoldRow,
    request: CaptureRequest,
    currency: Currency,
    *,
    hidden: bool,
    key: Key,
) -> Entry:
    """A capture as an entry: what it takes (all the hold holds if no amount; in minor
    units of the hold's wallet's `currency`), into the payee if any, and, when final, the
    release of the rest, which closes the hold."""
    amount = capture_amount(hold, request, currency)
    if amount > hold.remaining:
        raise CaptureExceedsHold(
            hold_id=hold.id, amount=amount, held=hold.remaining, exponent=currency.exponent
        )
    payee = request.to_wallet_uuid
    legs = [Leg(hold.wallet_id, EntryKind.CAPTURE, amount, counterparty=payee, hold=hold.id)]
    if payee is not None:
        legs.append(
            Leg(payee, EntryKind.CAPTURE_IN, amount, counterparty=hold.wallet_id, hold=hold.id)
        )
    rest = hold.remaining - amount
    if request.final and rest:
        legs.append(Leg(hold.wallet_id, EntryKind.RELEASE, rest, hold=hold.id))
    idempotency_key, fingerprint, api_key_id = key

    def respond(outcome: Posted | Refusal) -> tuple[int, str]:
        if isinstance(outcome, Refusal):
            return problem(capture_error(hold, currency, outcome, legs))
        return respond_capture(hold, request, currency, outcome, hidden=hidden)

    return Entry(
        legs=tuple(legs),
        render=respond,
        description=request.description,
        metadata=metadata_text(request.metadata),
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        api_key_id=api_key_id,
        hold_status="captured" if request.final or not rest else None,
        event=EventType.HOLD_CAPTURED,
    )


def capture_amount(hold: HoldRow, request: CaptureRequest, currency: Currency) -> int:
    """What a capture takes: its amount in minor units of `currency` (422 if it is none
    of its amounts), or all the hold still holds."""
    if request.amount is None:
        return hold.remaining
    return minor_units(request.amount, currency, ("body", "amount"))


def void_entry(hold: HoldRow, currency: Currency, *, key: Key) -> Entry:
    """A void as an entry: the release of all the hold holds, which closes it."""

    def respond(outcome: Posted | Refusal) -> tuple[int, str]:
        if isinstance(outcome, Refusal):
            return problem(capture_error(hold, currency, outcome))
        return respond_taken(hold, currency, outcome)

    idempotency_key, fingerprint, api_key_id = key
    return Entry(
        legs=(Leg(hold.wallet_id, EntryKind.RELEASE, hold.remaining, hold=hold.id),),
        render=respond,
        metadata=hold.metadata,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        api_key_id=api_key_id,
        hold_status="voided",
        event=EventType.HOLD_VOIDED,
    )


def capture_error(
    hold: HoldRow, currency: Currency, refusal: Refusal, legs: Sequence[Leg] | None = None
) -> AppError:
    """The problem a capture's or a void's refusal is answered with."""
    if refusal.reason is Shortfall.HOLD_CLOSED:
        return CLOSED.get(refusal.hold_status or "", HoldClosed)(hold.id)
    if refusal.reason is Shortfall.HOLD_EXCEEDED:
        assert legs is not None
        assert refusal.balance is not None
        return CaptureExceedsHold(
            hold_id=hold.id,
            amount=legs[0].amount,
            held=refusal.balance,
            exponent=currency.exponent,
        )
    assert legs is not None  # the payee's: missing, or past the limit
    return refusal_error(refusal, legs, verb="capture", exponent=currency.exponent)


def respond_taken(
    hold: HoldRow,
    currency: Currency,
    outcome: Posted,
    capture: tuple[int, UUID | None, int | None] | None = None,
) -> tuple[int, str]:
    """The 200 body of a capture or a void: the hold as the entry left it."""
    assert outcome.hold is not None
    assert outcome.available is not None
    state = outcome.hold
    balance = outcome.balances[0]
    closed = state.status != ACTIVE
    document = hold_document(
        hold_id=hold.id,
        wallet_id=hold.wallet_id,
        status=state.status,
        amount=hold.amount,
        currency=currency,
        captured=state.captured,
        held=state.remaining,
        description=hold.description,
        created_at=hold.created_at,
        expires_at=hold.expires_at,
        closed_at=outcome.at if closed else None,
        balances=(balance, balance - outcome.available),
        capture=capture,
        metadata=hold.metadata,
    )
    return 200, render(document)


def respond_capture(
    hold: HoldRow, request: CaptureRequest, currency: Currency, outcome: Posted, *, hidden: bool
) -> tuple[int, str]:
    """The 200 body of a capture: the hold, and what it took into which payee (whose
    balance only its owner sees)."""
    payee = request.to_wallet_uuid
    payee_balance = None if payee is None or hidden else outcome.balances[1]
    amount = capture_amount(hold, request, currency)
    return respond_taken(hold, currency, outcome, (amount, payee, payee_balance))


def read_document(hold: HoldRow, currency: Currency) -> dict[str, object]:
    """A hold as read (no balances: nothing was written)."""
    return hold_document(
        hold_id=hold.id,
        wallet_id=hold.wallet_id,
        status=hold.status,
        amount=hold.amount,
        currency=currency,
        captured=hold.captured,
        held=hold.held,
        description=hold.description,
        created_at=hold.created_at,
        expires_at=hold.expires_at,
        closed_at=hold.closed_at,
        metadata=hold.metadata,
    )


def release_entry(due: DueHold) -> Entry:
    """The release of an expired hold: all it held, closing it as expired, with the
    hold's metadata."""
    leg = Leg(due.wallet_id, EntryKind.RELEASE, due.state.remaining, hold=due.id)
    return Entry(
        legs=(leg,), hold_status="expired", event=EventType.HOLD_EXPIRED, metadata=due.metadata
    )


def problem(error: AppError) -> tuple[int, str]:
    """(status, body) of a refusal, as kept for its key (without a request id)."""
    return error.status, orjson.dumps(error_document(error)).decode()
