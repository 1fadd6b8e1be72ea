"""The Python client (clients/python, `wallet_api_client`) against the real service: every
endpoint through the sync and the async client, every problem code as its exception,
lists followed across pages that change while read, and models that name every field the
service's OpenAPI document defines. Its retries: tests/test_client_retries.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from pydantic import BaseModel

from tests.support import TestDatabase, create_key
from wallet_api.devtools.server import ServiceProcess
from wallet_api_client import NO_RETRIES, AsyncClient, Call, Client, errors, models


class Clients:
    """One client, sync or async, called the same way: `call(name, ...)` returns what the
    method returns (awaited), `collect(name, ...)` lists what an iterator yields."""

    def __init__(self, kind: str, base_url: str, **options: Any) -> None:
        self.kind = kind
        self._runner = asyncio.Runner() if kind == "async" else None
        if self._runner is None:
            self._sync = Client(base_url, **options)
        else:

            async def make() -> AsyncClient:
                return AsyncClient(base_url, **options)

            self._async = self._runner.run(make())

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._runner is None:
            return getattr(self._sync, name)(*args, **kwargs)
        return self._runner.run(getattr(self._async, name)(*args, **kwargs))

    def collect(self, name: str, *args: Any, **kwargs: Any) -> list[Any]:
        if self._runner is None:
            return list(getattr(self._sync, name)(*args, **kwargs))

        async def drain(items: AsyncIterator[Any]) -> list[Any]:
            return [item async for item in items]

        return self._runner.run(drain(getattr(self._async, name)(*args, **kwargs)))

    def close(self) -> None:
        if self._runner is None:
            self._sync.close()
        else:
            self._runner.run(self._async.aclose())
            self._runner.close()


@pytest.fixture(params=["sync", "async"])
def clients(request: pytest.FixtureRequest, service: ServiceProcess) -> Iterator[Clients]:
    made = Clients(request.param, service.base_url)
    yield made
    made.close()


def test_every_endpoint(clients: Clients) -> None:
    call = clients.call
    payer = call("create_wallet").wallet_uuid
    payee = call("create_wallet").wallet_uuid
    assert isinstance(payer, UUID)
    assert call("deposit", payer, Decimal("100.07")).balance == Decimal("100.07")
    assert call("withdraw", payer, "0.07").balance == Decimal("100")
    assert call("get_wallet", payer).balance == Decimal("100")

    transfer = call("create_transfer", payer, payee, 30, description="rent")
    assert (transfer.amount, transfer.from_balance, transfer.to_balance) == (30, 70, 30)
    assert call("get_transfer", transfer.transfer_id).description == "rent"
    reversal = call("reverse", transfer_id=transfer.transfer_id, amount="10")
    assert reversal.amount == 10
    assert {leg.wallet_uuid for leg in reversal.legs} == {payer, payee}
    assert call("get_transfer", transfer.transfer_id).reversal.amount == 10

    batch = call("apply_batch", [(payer, "DEPOSIT", 5), (payee, "WITHDRAW", 1000)])
    assert [result.status for result in batch.results] == [200, 400]
    assert batch.results[0].result.balance == 85
    assert batch.results[1].body["code"] == "insufficient_funds"

    hold = call("create_hold", payer, "25.50", expires_in=3600, description="ride 7")
    assert (hold.status, hold.held, hold.balances.available) == ("active", Decimal("25.5"), 59.5)
    taken = call("capture_hold", hold.hold_id, amount=10, to_wallet=payee, final=False)
    assert (taken.status, taken.captured, taken.held, taken.capture.amount) == (
        "active",
        10,
        Decimal("15.5"),
        10,
    )
    assert call("void_hold", hold.hold_id).status == "voided"
    assert call("get_hold", hold.hold_id).released == Decimal("15.5")
    assert call("get_balances", payer) == models.Balances(
        balance=75, held=0, available=75, currency="USD"
    )
    assert [h.hold_id for h in call("list_holds", payer, status="voided").items] == [hold.hold_id]

    kinds = [entry.operation for entry in clients.collect("history", payer, page_size=3)]
    assert kinds == [
        "RELEASE",
        "CAPTURE",
        "HOLD",
        "DEPOSIT",
        "REVERSAL_IN",
        "TRANSFER_OUT",
        "WITHDRAW",
        "DEPOSIT",
    ]
    assert len(kinds) == len(call("list_operations", payer, limit=100).items)
    assert [h.hold_id for h in clients.collect("holds", payer, page_size=1)] == [hold.hold_id]

    # The ledger in time: a balance then, a history of some kinds between two times, a
    # statement of the period.
    entries = clients.collect("history", payer)[::-1]
    second = entries[1].created_at
    assert call("get_wallet", payer, at=second).balance == entries[1].balance_after
    assert call("get_wallet", payer, at=second).at == second
    deposits = clients.collect("history", payer, operations=["DEPOSIT"], since=second)
    assert [e.id for e in deposits] == [e.id for e in entries[2:] if e.operation == "DEPOSIT"][::-1]
    page = call("list_operations", payer, operations=["WITHDRAW"], until=entries[2].created_at)
    assert [e.operation for e in page.items] == ["WITHDRAW"]
    statement = call("get_statement", payer, since=second)
    assert [e.id for e in statement.entries] == [e.id for e in entries[1:]]
    assert statement.closing_balance - statement.opening_balance == sum(
        e.change for e in statement.entries
    )
    with pytest.raises(ValueError, match="offset"):
        call("get_wallet", payer, at=second.replace(tzinfo=None))


#: Each refusal's status (docs/API.md, Errors).
STATUS_OF = {
    "insufficient_funds": 400,
    "balance_limit_exceeded": 400,
    "wallet_not_found": 404,
    "transfer_not_found": 404,
    "entry_not_found": 404,
    "hold_not_found": 404,
    "not_found": 404,
    "already_reversed": 409,
    "hold_captured": 409,
    "hold_voided": 409,
    "hold_expired": 409,
    "entry_not_reversible": 422,
    "reversal_exceeds_entry": 422,
    "capture_exceeds_hold": 422,
    "idempotency_key_reused": 422,
    "validation_error": 422,
    "time_in_the_future": 422,
}


def _refusals(call: Callable[..., Any]) -> list[tuple[str, Callable[[], Any], type[Exception]]]:
    """(name, a call the service refuses, the exception it must raise), each on new
    wallets, for every code a client without keys can meet."""
    wallet = call("create_wallet").wallet_uuid
    other = call("create_wallet").wallet_uuid
    call("deposit", wallet, 10)
    expired = call("create_hold", wallet, 1, expires_in=1)
    expires = time.monotonic() + 1.0
    transfer = call("create_transfer", wallet, other, 1)
    entry = call("list_operations", wallet, limit=1).items[0].id
    call("reverse", transfer_id=transfer.transfer_id)
    reversal = call("list_operations", wallet, limit=1).items[0].id
    captured = call("create_hold", wallet, 1)
    call("capture_hold", captured.hold_id)
    voided = call("create_hold", wallet, 1)
    call("void_hold", voided.hold_id)
    open_hold = call("create_hold", wallet, 2)
    call("deposit", wallet, 1)
    small = call("list_operations", wallet, limit=1).items[0].id
    key = f"client-{uuid4()}"
    call("deposit", wallet, 1, idempotency_key=key)
    time.sleep(max(0.0, expires + 0.2 - time.monotonic()))  # past `expired`'s expiry
    return [
        ("insufficient_funds", lambda: call("withdraw", wallet, 1000), errors.InsufficientFunds),
        (
            "balance_limit_exceeded",
            lambda: call("deposit", wallet, "9999999999999.99"),
            errors.BalanceLimitExceeded,
        ),
        ("wallet_not_found", lambda: call("get_wallet", uuid4()), errors.WalletNotFound),
        ("transfer_not_found", lambda: call("get_transfer", uuid4()), errors.TransferNotFound),
        ("entry_not_found", lambda: call("reverse", entry_id=2**62), errors.EntryNotFound),
        ("hold_not_found", lambda: call("get_hold", uuid4()), errors.HoldNotFound),
        ("already_reversed", lambda: call("reverse", entry_id=entry), errors.AlreadyReversed),
        (
            "entry_not_reversible",
            lambda: call("reverse", entry_id=reversal),
            errors.EntryNotReversible,
        ),
        (
            "reversal_exceeds_entry",
            lambda: call("reverse", entry_id=small, amount=5),
            errors.ReversalExceedsEntry,
        ),
        ("hold_captured", lambda: call("void_hold", captured.hold_id), errors.HoldCaptured),
        ("hold_voided", lambda: call("capture_hold", voided.hold_id), errors.HoldVoided),
        ("hold_expired", lambda: call("capture_hold", expired.hold_id), errors.HoldExpired),
        (
            "capture_exceeds_hold",
            lambda: call("capture_hold", open_hold.hold_id, amount=3),
            errors.CaptureExceedsHold,
        ),
        (
            "idempotency_key_reused",
            lambda: call("deposit", wallet, 2, idempotency_key=key),
            errors.IdempotencyKeyReused,
        ),
        ("validation_error", lambda: call("deposit", wallet, "0.001"), errors.ValidationFailed),
        (
            "time_in_the_future",
            lambda: call("get_wallet", wallet, at=datetime.now(UTC) + timedelta(hours=1)),
            errors.TimeInTheFuture,
        ),
        ("not_found", lambda: call("send", Call("GET", "/api/v1/nothing", dict)), errors.NotFound),
    ]


def test_metadata_goes_with_every_write_and_finds_its_entries(clients: Clients) -> None:
    call = clients.call
    payer = call("create_wallet").wallet_uuid
    payee = call("create_wallet").wallet_uuid
    order = {"order_id": "42"}
    call("deposit", payer, 100, metadata={"source": "card"})
    call("withdraw", payer, 1, metadata=order)
    transfer = call("create_transfer", payer, payee, 10, metadata=order)
    call("reverse", transfer_id=transfer.transfer_id, amount=1, metadata={"why": "refund"})
    hold = call("create_hold", payer, 5, metadata=order)
    call("capture_hold", hold.hold_id, amount=2, metadata=order)
    found = clients.collect("history", payer, metadata=("order_id", "42"))
    assert [entry.operation for entry in found] == [
        "RELEASE",
        "CAPTURE",
        "HOLD",
        "TRANSFER_OUT",
        "WITHDRAW",
    ]
    assert all(entry.metadata == order for entry in found)
    page = call("list_operations", payer, metadata=("source", "card"))
    assert [(e.operation, e.metadata) for e in page.items] == [("DEPOSIT", {"source": "card"})]
    batch = call("apply_batch", [(payee, "DEPOSIT", 1, {"batch": "7"}), (payee, "DEPOSIT", 2)])
    assert [result.status for result in batch.results] == [200, 200]
    tagged = call("list_operations", payee, metadata=("batch", "7")).items
    assert [(e.amount, e.metadata) for e in tagged] == [(1, {"batch": "7"})]
    with pytest.raises(TypeError):
        call("list_operations", payer, metadata={"source": "card"})


def test_every_refusal_is_its_exception_and_is_not_retried(clients: Clients) -> None:
    for code, refused, expected in _refusals(clients.call):
        with pytest.raises(expected) as caught:
            refused()
        error = caught.value
        assert isinstance(error, errors.ClientError), code
        assert (error.code, error.attempts, error.settled) == (code, 1, True)
        assert error.status == STATUS_OF[code], code
        assert error.detail, code
        assert error.request_id, code


def test_a_validation_error_lists_what_is_wrong(clients: Clients) -> None:
    wallet = clients.call("create_wallet").wallet_uuid
    with pytest.raises(errors.ValidationFailed) as caught:
        clients.call("deposit", wallet, "0.001")
    assert caught.value.status == 422
    assert caught.value.errors
    assert caught.value.errors[0]["loc"][-1] == "amount"


#: The service's schemas (its OpenAPI document) and the client's model of each.
MODELS: dict[str, type[BaseModel]] = {
    "WalletCreated": models.WalletCreated,
    "WalletBalance": models.WalletBalance,
    "WalletBalances": models.Balances,
    "Balances": models.HoldBalances,
    "OperationResult": models.OperationResult,
    "OperationItem": models.OperationItem,
    "OperationsPage": models.OperationsPage,
    "HoldsPage": models.Page[models.Hold],
    "EventsPage": models.Page[models.Event],
    "Event": models.Event,
    "EventData": models.EventData,
    "EventEntry": models.EventEntry,
    "EventHold": models.EventHold,
    "EventMonitor": models.EventMonitor,
    "Endpoint": models.WebhookEndpoint,
    "EndpointCreated": models.WebhookEndpointCreated,
    "EndpointsPage": models.Items[models.WebhookEndpoint],
    "Delivery": models.Delivery,
    "Attempt": models.Attempt,
    "DeliveriesPage": models.Items[models.Delivery],
    "Monitor": models.BalanceMonitor,
    "MonitorsPage": models.Items[models.BalanceMonitor],
    "BatchResponse": models.BatchResponse,
    "BatchResult": models.BatchResult,
    "Transfer": models.Transfer,
    "TransferReversal": models.TransferReversal,
    "Reversal": models.Reversal,
    "ReversalLeg": models.ReversalLeg,
    "Hold": models.Hold,
    "CaptureMade": models.CaptureMade,
    "Statement": models.Statement,
    "StatementEntry": models.StatementEntry,
}


def test_the_models_name_every_field_the_document_defines(client: httpx.Client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    answered = {
        schema["$ref"].rpartition("/")[2]
        for path in client.get("/openapi.json").json()["paths"].values()
        for operation in path.values()
        for status, response in operation["responses"].items()
        if status.startswith("2") and status != "202"
        for schema in [response.get("content", {}).get("application/json", {}).get("schema")]
        if schema and "$ref" in schema
    }
    assert answered - {"HealthStatus"} <= set(MODELS), "an answer the client cannot read"
    for name, model in MODELS.items():
        fields = {field.alias or each for each, field in model.model_fields.items()}
        assert fields == set(schemas[name]["properties"]), name


def test_events_monitors_and_webhook_endpoints(service: ServiceProcess) -> None:
    with Client(service.base_url) as wallets:
        start = wallets.list_events(types=["wallet.created"], limit=1)
        wallet = wallets.create_wallet().wallet_uuid
        monitor = wallets.create_balance_monitor(wallet, "above", "5")
        assert (monitor.condition, monitor.threshold, monitor.across) == (
            "above",
            Decimal(5),
            False,
        )
        wallets.deposit(wallet, "7.50")
        mine = [
            event
            for event in wallets.events(after=start.next_cursor, page_size=50)
            if event.data.wallet_uuid == wallet
        ]
        assert [event.type for event in mine] == [
            "wallet.created",
            "operation.applied",
            "balance_monitor.triggered",
        ]
        assert mine[1].data.entries[0].balance_after == Decimal("7.5")
        assert mine[2].data.monitor is not None
        assert mine[2].data.monitor.available == Decimal("7.5")
        assert wallets.get_event(mine[0].id) == mine[0]
        assert [m.id for m in wallets.list_balance_monitors(wallet)] == [monitor.id]
        wallets.delete_balance_monitor(wallet, monitor.id)
        assert wallets.list_balance_monitors(wallet) == []

        endpoint = wallets.create_webhook_endpoint(
            "https://example.com/hook", types=["transfer.created"]
        )
        assert endpoint.secret.startswith("whsec_")
        assert endpoint.id in [e.id for e in wallets.list_webhook_endpoints()]
        changed = wallets.update_webhook_endpoint(endpoint.id, types=None, status="disabled")
        assert (changed.types, changed.status) == (None, "disabled")
        assert wallets.get_webhook_endpoint(endpoint.id) == changed
        assert wallets.list_event_deliveries(mine[0].id) == []
        assert wallets.redeliver_event(mine[0].id) == []  # no enabled endpoint takes it
        wallets.delete_webhook_endpoint(endpoint.id)
        with pytest.raises(errors.WebhookEndpointNotFound):
            wallets.get_webhook_endpoint(endpoint.id)


def test_a_history_read_while_it_grows_has_every_entry_once(service: ServiceProcess) -> None:
    with Client(service.base_url) as wallets:
        wallet = wallets.create_wallet().wallet_uuid
        for amount in range(1, 26):
            wallets.deposit(wallet, amount)
        before = [entry.id for entry in wallets.list_operations(wallet, limit=100).items]
        seen: list[int] = []
        for entry in wallets.history(wallet, page_size=10):
            if len(seen) in (1, 12):  # within the first page, then the second
                for _ in range(3):
                    wallets.deposit(wallet, 1)  # newer than every page still to come
            seen.append(entry.id)
    assert seen == before
    assert len(seen) == 25


@pytest.fixture(scope="module")
def keyed(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service(AUTH_MODE="keys", AUTH_KEYS_REFRESH_SECONDS="0.5")


def test_with_keys_each_refusal_is_its_exception(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    owner = f"client-{uuid4().hex[:8]}"
    full = create_key(database, owner, "--scope", "read", "--scope", "write", "--scope", "deposit")
    reader = create_key(database, owner, "--scope", "read")
    time.sleep(1.0)  # every worker's copy of the key table has them
    with Client(keyed.base_url, api_key=full.token) as mine:
        wallet = mine.create_wallet().wallet_uuid
        assert mine.deposit(wallet, 5).balance == 5
    cases: list[tuple[str | None, type[errors.ApiError]]] = [
        (None, errors.ApiKeyRequired),
        ("wk_nothing_here", errors.InvalidApiKey),
        (reader.token, errors.InsufficientScope),
    ]
    for token, expected in cases:
        with Client(keyed.base_url, api_key=token) as other, pytest.raises(expected) as caught:
            other.withdraw(wallet, 1)
        assert caught.value.attempts == 1
        assert isinstance(caught.value, errors.ClientError)
    with Client(keyed.base_url, api_key=reader.token) as mine:
        assert mine.get_wallet(wallet).balance == 5


def test_a_rate_limited_call_says_when_to_retry_and_is_retried(
    keyed: ServiceProcess, database: TestDatabase
) -> None:
    owner = f"client-{uuid4().hex[:8]}"
    slow = create_key(database, owner, "--rate", "0.5", "--burst", "1")
    time.sleep(1.0)
    with Client(keyed.base_url, api_key=slow.token, retry=NO_RETRIES) as once:
        once.create_wallet()  # the burst
        with pytest.raises(errors.RateLimited) as caught:
            once.create_wallet()
    assert caught.value.retry_after is not None
    assert caught.value.retry_after >= 1
    with Client(keyed.base_url, api_key=slow.token) as patient:
        patient.create_wallet()  # refused for a while, then served: the 429 is retried


def test_the_readme_shows_the_example_it_runs() -> None:
    """The README's Python example is the file its `console` block runs
    (tests/test_readme.py runs that block against `make run`)."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    shown = readme.split("```python\n", 1)[1].split("```", 1)[0]
    example = (root / "clients" / "python" / "examples" / "quickstart.py").read_text()
    assert shown == example
    assert len([line for line in example.splitlines() if line.strip()]) <= 5
