"""The synchronous client."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from types import TracebackType
from typing import TypeVar
from uuid import UUID

import httpx

from wallet_api_client import _calls
from wallet_api_client._calls import (
    DEFAULT_URL,
    USER_AGENT,
    Amount,
    BatchItem,
    Call,
    Metadata,
    Tries,
    read_answer,
)
from wallet_api_client.models import (
    BalanceMonitor,
    Balances,
    BatchResponse,
    Delivery,
    Event,
    Hold,
    OperationItem,
    OperationResult,
    OperationsPage,
    Page,
    Reversal,
    Statement,
    Transfer,
    WalletBalance,
    WalletCreated,
    WebhookEndpoint,
    WebhookEndpointCreated,
)
from wallet_api_client.retry import RETRIED_TRANSPORT_ERRORS, RetryPolicy

T = TypeVar("T")


class Client:
    """The Wallet API over HTTP, every POST made safe to retry.

    Each POST carries an Idempotency-Key (the one passed as `idempotency_key`, else a new
    one) that all its tries reuse; a call is tried again as `retry` says (see
    `wallet_api_client.retry`). A call returns its typed result or raises a
    `WalletApiError` (`wallet_api_client.errors`) that says how many tries it took and
    whether its outcome is settled.

    `base_url` defaults to the environment's `WALLET_API_URL`, else
    http://127.0.0.1:8000; `api_key` to `WALLET_API_KEY` (none: the service's open mode).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        base_url = base_url or os.environ.get("WALLET_API_URL") or DEFAULT_URL
        api_key = api_key if api_key is not None else os.environ.get("WALLET_API_KEY")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def send(self, call: Call[T], idempotency_key: str | None = None) -> T:
        """Make `call`, trying again as the retry policy allows."""
        tries = Tries(call, idempotency_key, self._retry, self._rng)
        while True:
            headers, content = tries.begin()
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params or None,
                    headers=headers,
                    content=content,
                )
            except RETRIED_TRANSPORT_ERRORS as error:
                time.sleep(tries.failed(error))
                continue
            answer = read_answer(call, response, tries.key)
            if not isinstance(answer, Exception):
                return answer
            time.sleep(tries.failed(answer))

    # Wallets (the specification's endpoints).

    def create_wallet(
        self,
        *,
        currency: str | None = None,
        metadata: _calls.Metadata | None = None,
        idempotency_key: str | None = None,
    ) -> WalletCreated:
        """A new wallet, in `currency` (an ISO 4217 code; None: the service's
        DEFAULT_CURRENCY), with `metadata` (your own references, shown by `get_balances`)."""
        return self.send(_calls.create_wallet(currency, metadata), idempotency_key)

    def get_wallet(self, wallet: UUID | str, *, at: datetime | None = None) -> WalletBalance:
        """The wallet's balance; with `at` (a time with its offset), its balance then."""
        return self.send(_calls.get_wallet(wallet, at=at))

    def deposit(
        self,
        wallet: UUID | str,
        amount: Amount,
        *,
        metadata: Metadata | None = None,
        idempotency_key: str | None = None,
    ) -> OperationResult:
        call = _calls.operate(wallet, "DEPOSIT", amount, metadata)
        return self.send(call, idempotency_key)

    def withdraw(
        self,
        wallet: UUID | str,
        amount: Amount,
        *,
        metadata: Metadata | None = None,
        idempotency_key: str | None = None,
    ) -> OperationResult:
        call = _calls.operate(wallet, "WITHDRAW", amount, metadata)
        return self.send(call, idempotency_key)

    def get_balances(self, wallet: UUID | str) -> Balances:
        return self.send(_calls.get_balances(wallet))

    def list_operations(
        self,
        wallet: UUID | str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        operations: list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: tuple[str, str] | None = None,
    ) -> OperationsPage:
        """A page of the history: of `operations` kinds only (a page may then be short, even
        empty, with a cursor), dated in [`since`, `until`), with `metadata` (a key and its
        value) only those whose metadata has it."""
        call = _calls.list_operations(
            wallet,
            limit=limit,
            cursor=cursor,
            operations=operations,
            since=since,
            until=until,
            metadata=metadata,
        )
        return self.send(call)

    def history(
        self,
        wallet: UUID | str,
        *,
        page_size: int | None = None,
        operations: list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: tuple[str, str] | None = None,
    ) -> Iterator[OperationItem]:
        """Every entry of the wallet's history (of `operations` kinds, dated in [`since`,
        `until`), with `metadata`'s key and value), newest first, page after page."""
        return self._follow(
            lambda cursor: _calls.history_pages(
                _calls.list_operations(
                    wallet,
                    limit=page_size,
                    cursor=cursor,
                    operations=operations,
                    since=since,
                    until=until,
                    metadata=metadata,
                )
            )
        )

    def get_statement(
        self, wallet: UUID | str, *, since: datetime | None = None, until: datetime | None = None
    ) -> Statement:
        """The wallet's statement of [`since`, `until`) as JSON, read whole (stream a long
        one as CSV with any HTTP client: docs/API.md, Statements)."""
        return self.send(_calls.get_statement(wallet, since=since, until=until))

    def apply_batch(
        self,
        operations: list[BatchItem],
        *,
        atomic: bool = False,
        idempotency_key: str | None = None,
    ) -> BatchResponse:
        """(wallet, "DEPOSIT" or "WITHDRAW", amount), or with a fourth item, its metadata,
        each; all or none with `atomic`."""
        return self.send(_calls.apply_batch(operations, atomic=atomic), idempotency_key)

    # Transfers and reversals.

    def create_transfer(
        self,
        source: UUID | str,
        destination: UUID | str,
        amount: Amount,
        *,
        description: str | None = None,
        metadata: Metadata | None = None,
        idempotency_key: str | None = None,
    ) -> Transfer:
        call = _calls.create_transfer(source, destination, amount, description, metadata)
        return self.send(call, idempotency_key)

    def get_transfer(self, transfer: UUID | str) -> Transfer:
        return self.send(_calls.get_transfer(transfer))

    def reverse(
        self,
        *,
        entry_id: int | None = None,
        transfer_id: UUID | str | None = None,
        amount: Amount | None = None,
        description: str | None = None,
        metadata: Metadata | None = None,
        idempotency_key: str | None = None,
    ) -> Reversal:
        """Reverse a ledger entry or a transfer, all of it or `amount`."""
        call = _calls.reverse_entry(
            entry_id=entry_id,
            transfer_id=transfer_id,
            amount=amount,
            description=description,
            metadata=metadata,
        )
        return self.send(call, idempotency_key)

    # Holds.

    def create_hold(
        self,
        wallet: UUID | str,
        amount: Amount,
        *,
        expires_in: int | None = None,
        description: str | None = None,
        metadata: Metadata | None = None,
        idempotency_key: str | None = None,
    ) -> Hold:
        return self.send(
            _calls.create_hold(wallet, amount, expires_in, description, metadata), idempotency_key
        )

    def capture_hold(
        self,
        hold: UUID | str,
        *,
        amount: Amount | None = None,
        to_wallet: UUID | str | None = None,
        final: bool | None = None,
        description: str | None = None,
        metadata: Metadata | None = None,
        idempotency_key: str | None = None,
    ) -> Hold:
        call = _calls.capture_hold(
            hold,
            amount=amount,
            to_wallet=to_wallet,
            final=final,
            description=description,
            metadata=metadata,
        )
        return self.send(call, idempotency_key)

    def void_hold(self, hold: UUID | str, *, idempotency_key: str | None = None) -> Hold:
        return self.send(_calls.void_hold(hold), idempotency_key)

    def get_hold(self, hold: UUID | str) -> Hold:
        return self.send(_calls.get_hold(hold))

    def list_holds(
        self,
        wallet: UUID | str,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Hold]:
        return self.send(_calls.list_holds(wallet, status=status, limit=limit, cursor=cursor))

    def holds(
        self, wallet: UUID | str, *, status: str | None = None, page_size: int | None = None
    ) -> Iterator[Hold]:
        """Every hold of the wallet (in `status`), newest first, page after page."""
        return self._follow(
            lambda cursor: _calls.list_holds(wallet, status=status, limit=page_size, cursor=cursor)
        )

    # Events, balance monitors and webhooks (docs/EVENTS.md).

    def list_events(
        self,
        *,
        after: str | None = None,
        limit: int | None = None,
        types: list[str] | None = None,
        wait: float | None = None,
    ) -> Page[Event]:
        """A page of the feed after the cursor `after` (none: from the oldest event); its
        `next_cursor` is always given: pass it back as `after`."""
        return self.send(_calls.list_events(after=after, limit=limit, types=types, wait=wait))

    def events(
        self,
        *,
        after: str | None = None,
        types: list[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Event]:
        """Every event after the cursor `after`, page after page, up to the feed's end as it
        is now; in the order that never skips one (docs/EVENTS.md)."""
        while True:
            page = self.list_events(after=after, limit=page_size, types=types)
            yield from page.items
            if not page.items:
                return
            after = page.next_cursor

    def get_event(self, event: int) -> Event:
        return self.send(_calls.get_event(event))

    def create_balance_monitor(
        self,
        wallet: UUID | str,
        condition: str,
        threshold: Amount,
        *,
        idempotency_key: str | None = None,
    ) -> BalanceMonitor:
        return self.send(
            _calls.create_balance_monitor(wallet, condition, threshold), idempotency_key
        )

    def list_balance_monitors(self, wallet: UUID | str) -> list[BalanceMonitor]:
        return (self.send(_calls.list_balance_monitors(wallet))).items

    def delete_balance_monitor(self, wallet: UUID | str, monitor: UUID | str) -> None:
        self.send(_calls.delete_balance_monitor(wallet, monitor))

    def create_webhook_endpoint(
        self,
        url: str,
        *,
        types: list[str] | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpointCreated:
        return self.send(_calls.create_webhook_endpoint(url, types, description), idempotency_key)

    def list_webhook_endpoints(self) -> list[WebhookEndpoint]:
        return (self.send(_calls.list_webhook_endpoints())).items

    def get_webhook_endpoint(self, endpoint: UUID | str) -> WebhookEndpoint:
        return self.send(_calls.get_webhook_endpoint(endpoint))

    def update_webhook_endpoint(self, endpoint: UUID | str, **changes: object) -> WebhookEndpoint:
        """Change `url`, `types` (None: every type), `description` or `status`."""
        return self.send(_calls.update_webhook_endpoint(endpoint, changes))

    def delete_webhook_endpoint(self, endpoint: UUID | str) -> None:
        self.send(_calls.delete_webhook_endpoint(endpoint))

    def list_event_deliveries(self, event: int) -> list[Delivery]:
        return (self.send(_calls.list_event_deliveries(event))).items

    def redeliver_event(
        self,
        event: int,
        *,
        endpoint: UUID | str | None = None,
        idempotency_key: str | None = None,
    ) -> list[Delivery]:
        return (self.send(_calls.redeliver_event(event, endpoint), idempotency_key)).items

    def _follow(self, page: Callable[[str | None], Call[Page[T]]]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            current = self.send(page(cursor))
            yield from current.items
            if current.next_cursor is None:
                return
            cursor = current.next_cursor
