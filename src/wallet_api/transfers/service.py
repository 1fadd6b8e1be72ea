"""Transfers: the business rules, over the entries engine (posting/)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from uuid import UUID

import orjson

from wallet_api.core.config import Settings
from wallet_api.core.database import Database
from wallet_api.core.errors import AppError, OutcomeUnknown, ValidationFailed, error_document
from wallet_api.core.fields import metadata_text, minor_units
from wallet_api.core.idempotency import IdempotencyKeyReused, Replay
from wallet_api.core.metrics import declare_operation_outcomes, operation_outcomes
from wallet_api.core.money import Currency
from wallet_api.posting.entries import Entry, EntryKind, Leg, Posted, Refusal
from wallet_api.posting.events import EventType
from wallet_api.posting.queue import Group, GroupCommitQueue, Settle
from wallet_api.posting.writer import Outcome as EntryOutcome
from wallet_api.posting.writer import Writer, outcome_label
from wallet_api.transfers import repository
from wallet_api.transfers.exceptions import (
    TransferNotFound,
    TransferWalletNotFound,
    refusal_error,
)
from wallet_api.transfers.schemas import TransferRequest, transfer_body
from wallet_api.wallets.currencies import WalletCurrencies
from wallet_api.wallets.exceptions import CurrencyMismatch
from wallet_api.wallets.owners import WalletOwners

#: The `operation` label of transfers in wallet_operations_total.
METRIC_KIND = "TRANSFER"


class TransferService:
    """Moves money between wallets (batched with concurrent transfers unless disabled),
    and reads transfers back."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        owners: WalletOwners,
        currencies: WalletCurrencies,
        writer: Writer,
    ) -> None:
        self._database = database
        self._owners = owners
        self._currencies = currencies
        self._writer = writer
        self._queue: GroupCommitQueue[Entry, EntryOutcome] | None = None
        if settings.coalescing_enabled:
            # One lane per source wallet: a payer's transfers keep their order; a batch
            # spans many lanes, one transaction and one lock per wallet for all of them.
            self._queue = GroupCommitQueue.configured(
                self._write_groups, settings, kind="transfer", interrupted=OutcomeUnknown
            )
        declare_operation_outcomes(
            [METRIC_KIND],
            [
                "applied",
                "replayed",
                "insufficient_funds",
                "balance_limit_exceeded",
                CurrencyMismatch.code,
            ],
        )

    async def transfer(
        self,
        request: TransferRequest,
        *,
        owner: str | None = None,
        api_key_id: str | None = None,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> tuple[UUID, str] | Replay:
        """Move the amount from a wallet of `owner` (to any wallet); the new transfer's
        id and body (status 201), or the replay of the key's first request. Raises the
        refusal's AppError."""
        transfer_id = uuid.uuid4()
        source, destination = request.from_wallet_uuid, request.to_wallet_uuid
        foreign = await self._owners.foreign(owner, (source, destination))
        try:
            currency, amount = await self._judge_currencies(
                request, reachable=source not in foreign
            )
        except ValidationFailed:
            raise  # a malformed request, as one refused before the service: not an outcome
        except AppError as error:
            _count(error)
            raise
        hide_destination = destination in foreign
        legs = (
            Leg(source, EntryKind.TRANSFER_OUT, amount, counterparty=destination),
            Leg(destination, EntryKind.TRANSFER_IN, amount, counterparty=source),
        )

        metadata = metadata_text(request.metadata)

        def error_of(outcome: Refusal) -> AppError:
            return refusal_error(
                outcome, legs, verb="transfer", exponent=currency.exponent, hidden=foreign
            )

        def render(outcome: Posted | Refusal) -> tuple[int, str]:
            if isinstance(outcome, Refusal):
                error = error_of(outcome)
                return error.status, orjson.dumps(error_document(error)).decode()
            body = transfer_body(
                transfer_id=transfer_id,
                from_wallet=source,
                to_wallet=destination,
                amount=amount,
                currency=currency,
                description=request.description,
                balances=(
                    outcome.balances[0],
                    None if hide_destination else outcome.balances[1],
                ),
                created_at=outcome.at,
                metadata=metadata,
            )
            return 201, body

        entry = Entry(
            legs=legs,
            event=EventType.TRANSFER_CREATED,
            render=render,
            transfer_id=transfer_id,
            description=request.description,
            metadata=metadata,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            api_key_id=api_key_id,
        )
        try:
            outcome = await self._submit(source, entry)
        except AppError as error:
            _count(error)
            raise
        if isinstance(outcome, Replay | IdempotencyKeyReused):
            _count(outcome)
            if isinstance(outcome, AppError):
                raise outcome
            return outcome
        if isinstance(outcome, Refusal):
            refused = error_of(outcome)
            _count(refused)
            raise refused
        _count(outcome)
        return transfer_id, render(outcome)[1]

    async def _judge_currencies(
        self, request: TransferRequest, *, reachable: bool
    ) -> tuple[Currency, int]:
        """The transfer's currency and its amount in minor units of it; or its refusal: a
        source `owner` may not touch (`reachable` false), answered as an unknown source
        after the amount is read in DEFAULT_CURRENCY (what it says never depends on such
        a wallet's currency); wallets of two currencies (422 `currency_mismatch`, nothing
        converted); an amount that is not one of the currency's (422). A source that does
        not exist is read in DEFAULT_CURRENCY too, and refused by the engine (which keeps
        that refusal for the request's Idempotency-Key)."""
        source, destination = request.from_wallet_uuid, request.to_wallet_uuid
        default = self._currencies.default
        if not reachable:  # another owner's source: existence does not leak
            minor_units(request.amount, default, ("body", "amount"))
            raise TransferWalletNotFound(source, "source")
        found = await self._currencies.of((source, destination))
        currency = found.get(source)
        if currency is None:
            return default, minor_units(request.amount, default, ("body", "amount"))
        payee = found.get(destination)
        if payee is not None and payee.code != currency.code:
            raise CurrencyMismatch(destination, payee.code, source, currency.code)
        return currency, minor_units(request.amount, currency, ("body", "amount"))

    async def _write_groups(
        self, groups: Sequence[Group[Entry]], settle: Settle[EntryOutcome]
    ) -> list[list[EntryOutcome]]:
        return await self._writer.apply(groups, on_settled=settle)

    async def _submit(self, lane: UUID, entry: Entry) -> EntryOutcome:
        if self._queue is not None:
            return await self._queue.submit(lane, entry)
        return await self._writer.apply_one(lane, entry)

    async def get(self, transfer_id: UUID, *, owner: str | None = None) -> str:
        """The transfer's body, with what was reversed of it, for a caller who owns
        either wallet (the other's balance hidden). Raises TransferNotFound."""
        async with self._database.autocommit() as connection:
            rows = await repository.transfer_rows(connection, transfer_id)
        legs = {row.operation: row for row in rows}
        out_leg = legs.get(EntryKind.TRANSFER_OUT)
        in_leg = legs.get(EntryKind.TRANSFER_IN)
        if out_leg is None or in_leg is None:
            raise TransferNotFound(transfer_id)
        foreign = await self._owners.foreign(owner, (out_leg.wallet_id, in_leg.wallet_id))
        if out_leg.wallet_id in foreign and in_leg.wallet_id in foreign:
            raise TransferNotFound(transfer_id)
        reversal = legs.get(EntryKind.REVERSAL_OUT)
        currency = await self._currencies.of_wallet(out_leg.wallet_id)
        return transfer_body(
            transfer_id=transfer_id,
            from_wallet=out_leg.wallet_id,
            to_wallet=in_leg.wallet_id,
            amount=out_leg.amount,
            currency=currency,
            description=out_leg.description,
            balances=(
                None if out_leg.wallet_id in foreign else out_leg.balance_after,
                None if in_leg.wallet_id in foreign else in_leg.balance_after,
            ),
            created_at=out_leg.created_at,
            reversal=None if reversal is None else (reversal.amount, reversal.created_at),
            metadata=out_leg.metadata,
        )

    def queue_depths(self) -> dict[str, int]:
        """Transfers waiting in this process's queue (kind `transfer`)."""
        return {} if self._queue is None else {self._queue.kind: self._queue.queue_depth()}

    async def close(self) -> None:
        """Finish what is queued."""
        if self._queue is not None:
            await self._queue.close()


def _count(outcome: Posted | Replay | AppError) -> None:
    operation_outcomes(METRIC_KIND, outcome_label(outcome)).inc()
