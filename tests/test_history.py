"""The operations history: newest first, keyset pages that stay stable while operations
are added, only applied operations."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.support import operation
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess


def history(client: httpx.Client, wallet: str, **params: str | int) -> httpx.Response:
    return client.get(f"/api/v1/wallets/{wallet}/operations", params=params)


def deposit(client: httpx.Client, wallet: str, amount: object, key: str | None = None) -> None:
    headers = {"Idempotency-Key": key} if key else {}
    response = client.post(
        f"/api/v1/wallets/{wallet}/operation", json=operation("DEPOSIT", amount), headers=headers
    )
    assert response.status_code == 200


def test_pages_come_newest_first_and_end_with_a_null_cursor(
    client: httpx.Client, wallet: str
) -> None:
    for cents in range(1, 24):
        deposit(client, wallet, f"0.{cents:02d}")
    pages, cursor = [], None
    while True:
        params: dict[str, str | int] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        body = history(client, wallet, **params).json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [10, 10, 3]
    items = [item for page in pages for item in page]
    assert [item["amount"] for item in items] == [cents / 100 for cents in range(23, 0, -1)]
    ids = [item["id"] for item in items]
    assert ids == sorted(ids, reverse=True)
    newest = items[0]
    assert set(newest) == {"id", "operation", "amount", "balance_after", "created_at"}
    assert newest["operation"] == "DEPOSIT"
    assert newest["balance_after"] == 2.76  # 0.01 + ... + 0.23


def test_default_page_and_idempotency_keys(client: httpx.Client, wallet: str) -> None:
    deposit(client, wallet, 1, key=f"history-{uuid.uuid4()}")
    deposit(client, wallet, 2)
    body = history(client, wallet).json()
    assert body["next_cursor"] is None
    assert [item["amount"] for item in body["items"]] == [2, 1]
    assert "idempotency_key" not in body["items"][0]
    assert body["items"][1]["idempotency_key"].startswith("history-")


def test_a_page_is_50_entries_by_default_and_at_most_100(client: httpx.Client, wallet: str) -> None:
    """Without `limit`, a page holds the 50 newest entries and a cursor to the rest; with
    `limit=100`, 100 of them; more is a 422."""
    operations = [{"wallet_uuid": wallet, **operation("DEPOSIT", 1)}] * 120
    batched = client.post("/api/v1/operations/batch", json={"operations": operations})
    assert batched.status_code == 200, batched.text
    first = history(client, wallet).json()
    assert [item["balance_after"] for item in first["items"]] == list(range(120, 70, -1))
    second = history(client, wallet, cursor=first["next_cursor"]).json()
    assert [item["balance_after"] for item in second["items"]] == list(range(70, 20, -1))
    last = history(client, wallet, cursor=second["next_cursor"]).json()
    assert [item["balance_after"] for item in last["items"]] == list(range(20, 0, -1))
    assert last["next_cursor"] is None

    largest = history(client, wallet, limit=100)
    assert largest.status_code == 200, largest.text
    assert [item["balance_after"] for item in largest.json()["items"]] == list(range(120, 20, -1))
    assert largest.json()["next_cursor"] is not None
    assert_problem(history(client, wallet, limit=101), 422, "validation_error")


def test_refused_operations_are_not_listed(client: httpx.Client, wallet: str) -> None:
    deposit(client, wallet, 5)
    refused = client.post(f"/api/v1/wallets/{wallet}/operation", json=operation("WITHDRAW", 6))
    assert refused.status_code == 400
    assert [item["operation"] for item in history(client, wallet).json()["items"]] == ["DEPOSIT"]


def test_a_new_wallet_has_an_empty_history(client: httpx.Client, wallet: str) -> None:
    assert history(client, wallet).json() == {"items": [], "currency": "USD", "next_cursor": None}


def test_unknown_wallet_is_404(client: httpx.Client) -> None:
    assert_problem(history(client, str(uuid.uuid4())), 404, "wallet_not_found")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"cursor": "not-a-cursor"},
        {"cursor": ""},
        {"cursor": "bzE6LTU"},  # "o1:-5"
        {"cursor": "x" * 65},
    ],
    ids=repr,
)
def test_a_bad_limit_or_cursor_is_422(
    client: httpx.Client, wallet: str, params: dict[str, str | int]
) -> None:
    assert_problem(history(client, wallet, **params), 422, "validation_error")


def test_paging_while_operations_are_added_has_no_duplicates_and_no_gaps(
    service: ServiceProcess, client: httpx.Client, wallet: str
) -> None:
    for _ in range(40):
        deposit(client, wallet, 1)
    before = {item["id"] for item in history(client, wallet, limit=100).json()["items"]}

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as http:
            stop = asyncio.Event()

            async def writer() -> None:
                while not stop.is_set():
                    await http.post(
                        f"/api/v1/wallets/{wallet}/operation", json=operation("DEPOSIT", 1)
                    )

            writers = [asyncio.create_task(writer()) for _ in range(4)]
            seen: list[int] = []
            cursor = None
            while True:
                await asyncio.sleep(0.05)
                params: dict[str, str | int] = {"limit": 7}
                if cursor:
                    params["cursor"] = cursor
                page = (
                    await http.get(f"/api/v1/wallets/{wallet}/operations", params=params)
                ).json()
                seen.extend(item["id"] for item in page["items"])
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            stop.set()
            await asyncio.gather(*writers)
            return seen

    seen = asyncio.run(scenario())
    assert len(seen) == len(set(seen)), "a row was listed twice"
    assert seen == sorted(seen, reverse=True)
    assert before <= set(seen), "a row that existed before paging began was skipped"
