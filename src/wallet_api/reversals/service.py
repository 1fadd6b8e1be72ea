"""Reversals: the business rules, over the entries engine (posting/)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import orjson

from wallet_api.core.database import Database
from wallet_api.core.errors import AppError, ValidationFailed, error_document
from wallet_api.core.fields import metadata_text, minor_units
from wallet_api.core.idempotency import Replay
from wallet_api.core.metrics import declare_operation_outcomes, operation_outcomes
from wallet_api.core.money import Currency
from wallet_api.posting.entries import Entry, EntryKind, Leg, Posted, Refusal, Shortfall
from wallet_api.posting.events import EventType
from wallet_api.posting.writer import Writer, outcome_label
from wallet_api.reversals import repository
from wallet_api.reversals.exceptions import (
    AlreadyReversed,
    EntryNotFound,
    EntryNotReversible,
    ReversalExceedsEntry,
)
from wallet_api.reversals.repository import EntryRow
from wallet_api.reversals.schemas import ReversalRequest, reversal_body
from wallet_api.transfers.exceptions import TransferNotFound, refusal_error
from wallet_api.wallets.currencies import WalletCurrencies
from wallet_api.wallets.owners import WalletOwners

#: The `operation` label of reversals in wallet_operations_total.
METRIC_KIND = "REVERSAL"
_COMPENSATION = {
    EntryKind.DEPOSIT: EntryKind.REVERSAL_OUT,
    EntryKind.WITHDRAW: EntryKind.REVERSAL_IN,
    EntryKind.TRANSFER_IN: EntryKind.REVERSAL_OUT,
    EntryKind.TRANSFER_OUT: EntryKind.REVERSAL_IN,
}


class ReversalService:
    """Reverses ledger entries, each at most once, by compensating entries."""

    def __init__(
        self,
        database: Database,
        owners: WalletOwners,
        currencies: WalletCurrencies,
        writer: Writer,
    ) -> None:
        self._database = database
        self._owners = owners
        self._currencies = currencies
        self._writer = writer
        declare_operation_outcomes(
            [METRIC_KIND], ["applied", "replayed", AlreadyReversed.code, "insufficient_funds"]
        )

    async def reverse(
        self,
        request: ReversalRequest,
        *,
        owner: str | None = None,
        api_key_id: str | None = None,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> str | Replay:
        """Write the compensating entry; its body (status 201), or the replay of the
        key's first request. Raises the refusal's AppError.

        With API keys, the entry is reversed by the owner of the wallet its money went
        to (a deposit's or a withdrawal's wallet, a transfer's destination: a refund is
        the payee's to give); to anyone else it is an entry that does not exist."""
        try:
            named, transfer_id, legs, foreign, currency = await self._legs(request, owner)
        except ValidationFailed:
            raise  # a malformed request, as one refused before the service: not an outcome
        except AppError as error:
            _count(error)
            raise
        amount = legs[0].amount

        def error_of(outcome: Refusal) -> AppError:
            if outcome.reason is Shortfall.ALREADY_REVERSED:
                return AlreadyReversed(named)
            return refusal_error(
                outcome, legs, verb="reverse", exponent=currency.exponent, hidden=foreign
            )

        def render(outcome: Posted | Refusal) -> tuple[int, str]:
            if isinstance(outcome, Refusal):
                error = error_of(outcome)
                return error.status, orjson.dumps(error_document(error)).decode()
            body = reversal_body(
                transfer_id=transfer_id,
                amount=amount,
                currency=currency,
                description=request.description,
                legs=legs,
                balances=outcome.balances,
                created_at=outcome.at,
                hidden=foreign,
            )
            return 201, body

        entry = Entry(
            legs=legs,
            event=EventType.REVERSAL_CREATED,
            render=render,
            transfer_id=transfer_id,
            description=request.description,
            metadata=metadata_text(request.metadata),
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            api_key_id=api_key_id,
        )
        try:
            outcome = await self._writer.apply_one(legs[0].wallet_id, entry)
        except AppError as error:
            _count(error)
            raise
        result = error_of(outcome) if isinstance(outcome, Refusal) else outcome
        _count(result)
        if isinstance(result, AppError):
            raise result
        if isinstance(result, Replay):
            return result
        return render(result)[1]

    async def _legs(
        self, request: ReversalRequest, owner: str | None
    ) -> tuple[int, UUID | None, tuple[Leg, ...], set[UUID], Currency]:
        """The entry named (or the transfer's first leg), its transfer if any, the
        compensating legs, debits first, which of their wallets are another owner's, and
        their currency (a transfer's wallets have one).
        Raises when there is nothing `owner` may reverse (before anything else is told
        about the entry), or not that much."""
        async with self._database.autocommit() as connection:
            if request.entry_id is not None:
                rows = await repository.entry_rows(connection, request.entry_id)
                if not rows:
                    raise EntryNotFound(request.entry_id)
            else:
                assert request.transfer_id is not None
                rows = await repository.transfer_rows(connection, request.transfer_id)
                if not rows:
                    raise TransferNotFound(request.transfer_id)
        named = rows[0]
        foreign = await self._owners.foreign(owner, {row.wallet_id for row in rows})
        if _answerable(named, rows) in foreign:
            if request.entry_id is not None:
                raise EntryNotFound(request.entry_id)
            assert request.transfer_id is not None
            raise TransferNotFound(request.transfer_id)
        if named.operation not in _COMPENSATION:
            raise EntryNotReversible(named.id)
        currency = await self._currencies.of_wallet(named.wallet_id)
        amount = (
            named.amount
            if request.amount is None
            else minor_units(request.amount, currency, ("body", "amount"))
        )
        if amount > named.amount:
            raise ReversalExceedsEntry(
                entry_id=named.id,
                amount=amount,
                entry_amount=named.amount,
                exponent=currency.exponent,
            )
        legs = [
            Leg(
                row.wallet_id,
                _COMPENSATION[EntryKind(row.operation)],
                amount,
                counterparty=row.counterparty_wallet_id,
                reverses=row.id,
            )
            for row in rows
        ]
        legs.sort(key=lambda leg: leg.delta)  # the debit first: its refusal is the one told
        return named.id, named.transfer_id, tuple(legs), foreign, currency


def _answerable(named: EntryRow, rows: Sequence[EntryRow]) -> UUID:
    """The wallet whose owner may reverse the entry: a transfer's destination (the money
    went there: a refund is the payee's to give), else the entry's own wallet (also for
    a reversal, which its owner may see, and is told cannot be reversed)."""
    if named.operation not in _COMPENSATION:
        return named.wallet_id
    return next(
        (row.wallet_id for row in rows if row.operation == EntryKind.TRANSFER_IN),
        named.wallet_id,
    )


def _count(outcome: Posted | Replay | AppError) -> None:
    operation_outcomes(METRIC_KIND, outcome_label(outcome)).inc()
