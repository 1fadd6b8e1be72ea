"""The fast paths answer exactly as the FastAPI routes do.

`wallets/fast_path.py` serves `POST …/{uuid}/operation` with a canonical (hyphenated) UUID
and no Idempotency-Key; the same wallet written as 32 hex digits is a valid UUID to the
route but not to the fast path, so that form reaches the route. Every scenario is sent both
ways and must give the same status, headers and body (request ids aside).
`transfers/fast_path.py` serves a plain `POST /api/v1/transfers`; the same request with an
Idempotency-Key reaches the route."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support import operation
from wallet_api.core.requests import is_plain_json_post
from wallet_api.wallets.fast_path import OperationFastPath

JSON = "application/json"
SCENARIOS: list[tuple[str, str, bytes]] = [
    ("deposit", JSON, b'{"operation":"DEPOSIT","amount":"5"}'),
    ("withdraw", JSON, b'{"operation":"WITHDRAW","amount":1.5}'),
    ("overdraft", JSON, b'{"operation":"WITHDRAW","amount":99}'),
    ("charset", JSON + "; charset=utf-8", b'{"operation":"DEPOSIT","amount":1}'),
    ("bad amount", JSON, b'{"operation":"DEPOSIT","amount":0.001}'),
    ("unknown field", JSON, b'{"operation":"DEPOSIT","amount":1,"x":1}'),
    ("not json", JSON, b"{oops"),
    ("empty", JSON, b""),
    ("text", "text/plain", b'{"operation":"DEPOSIT","amount":1}'),
    ("over the limit", JSON, b'{"operation":"DEPOSIT","amount":9999999999999.99}'),
]


def comparable(response: httpx.Response) -> tuple[int, str | None, object]:
    body: object = response.text
    if response.headers.get("content-type", "").endswith("json") and response.content:
        document = response.json()
        if isinstance(document, dict):
            document.pop("request_id", None)
        body = document
    return response.status_code, response.headers.get("content-type"), body


@pytest.mark.parametrize(
    ("name", "content_type", "content"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
def test_the_fast_path_and_the_route_give_the_same_answer(
    client: httpx.Client, name: str, content_type: str, content: bytes
) -> None:
    answers = []
    for form in ("fast path", "route"):
        created = client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"]
        client.post(f"/api/v1/wallets/{created}/operation", json=operation("DEPOSIT", 10))
        wallet = created if form == "fast path" else uuid.UUID(created).hex
        response = client.post(
            f"/api/v1/wallets/{wallet}/operation",
            headers={"Content-Type": content_type},
            content=content,
        )
        status, answer_type, body = comparable(response)
        if isinstance(body, dict) and "detail" in body:
            body["detail"] = str(body["detail"]).replace(created, "<wallet>")
        answers.append((status, answer_type, body))
    assert answers[0] == answers[1]


def test_an_unknown_wallet_is_the_same_404_both_ways(client: httpx.Client) -> None:
    missing = uuid.uuid4()
    body = operation("DEPOSIT", 1)
    fast = client.post(f"/api/v1/wallets/{missing}/operation", json=body)
    route = client.post(f"/api/v1/wallets/{missing.hex}/operation", json=body)
    assert comparable(fast) == comparable(route)
    assert fast.status_code == 404


def test_the_two_forms_take_different_paths() -> None:
    # What makes the comparisons above compare two code paths, not one with itself.
    wallet = uuid.uuid4()

    def scope(path_id: str, *headers: tuple[bytes, bytes]) -> dict[str, object]:
        return {
            "type": "http",
            "method": "POST",
            "path": f"/api/v1/wallets/{path_id}/operation",
            "headers": [(b"content-type", b"application/json"), *headers],
        }

    assert OperationFastPath._plain_operation(scope(str(wallet))) == wallet
    assert OperationFastPath._plain_operation(scope(wallet.hex)) is None
    keyed = scope(str(wallet), (b"idempotency-key", b"k-1"))
    assert OperationFastPath._plain_operation(keyed) is None


def test_a_balance_read_is_the_same_both_ways(client: httpx.Client) -> None:
    created = client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"]
    client.post(f"/api/v1/wallets/{created}/operation", json=operation("DEPOSIT", "10.5"))
    fast = client.get(f"/api/v1/wallets/{created}")
    route = client.get(f"/api/v1/wallets/{uuid.UUID(created).hex}")
    assert fast.text == route.text == '{"balance":10.5}'
    assert comparable(fast) == comparable(route)
    missing = uuid.uuid4()
    fast = client.get(f"/api/v1/wallets/{missing}")
    route = client.get(f"/api/v1/wallets/{missing.hex}")
    assert fast.status_code == 404
    assert comparable(fast) == comparable(route)


def test_only_a_canonical_balance_read_takes_the_fast_path() -> None:
    wallet = uuid.uuid4()

    def scope(method: str, path: str) -> dict[str, object]:
        return {"type": "http", "method": method, "path": path, "headers": []}

    assert OperationFastPath._plain_balance(scope("GET", f"/api/v1/wallets/{wallet}")) == wallet
    assert OperationFastPath._plain_balance(scope("GET", f"/api/v1/wallets/{wallet.hex}")) is None
    assert OperationFastPath._plain_balance(scope("POST", f"/api/v1/wallets/{wallet}")) is None
    assert OperationFastPath._plain_balance(scope("GET", "/api/v1/wallets/create_wallet")) is None


TRANSFER_SCENARIOS: list[tuple[str, str, str]] = [
    ("transfer", JSON, '{{"from_wallet_uuid":"{a}","to_wallet_uuid":"{b}","amount":"2.50"}}'),
    ("overdraft", JSON, '{{"from_wallet_uuid":"{a}","to_wallet_uuid":"{b}","amount":11}}'),
    ("unknown", JSON, '{{"from_wallet_uuid":"{a}","to_wallet_uuid":"{x}","amount":1}}'),
    ("itself", JSON, '{{"from_wallet_uuid":"{a}","to_wallet_uuid":"{a}","amount":1}}'),
    ("bad amount", JSON, '{{"from_wallet_uuid":"{a}","to_wallet_uuid":"{b}","amount":0.001}}'),
    ("not json", JSON, "{{oops"),
    ("empty", JSON, ""),
    ("text", "text/plain", '{{"from_wallet_uuid":"{a}","to_wallet_uuid":"{b}","amount":1}}'),
]


@pytest.mark.parametrize(
    ("name", "content_type", "template"),
    TRANSFER_SCENARIOS,
    ids=[s[0] for s in TRANSFER_SCENARIOS],
)
def test_a_transfer_is_answered_the_same_by_the_fast_path_and_the_route(
    client: httpx.Client, name: str, content_type: str, template: str
) -> None:
    """A plain transfer takes the fast path; the same request with an Idempotency-Key
    (executed as it would be without one: its first use) takes the route. Same status,
    headers and body, ids and times aside."""
    answers = []
    for headers in ({}, {"Idempotency-Key": f"fast-path-{uuid.uuid4()}"}):
        a, b = (client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"] for _ in "ab")
        client.post(f"/api/v1/wallets/{a}/operation", json=operation("DEPOSIT", 10))
        unknown = str(uuid.uuid4())
        response = client.post(
            "/api/v1/transfers",
            headers={"Content-Type": content_type, **headers},
            content=template.format(a=a, b=b, x=unknown),
        )
        status, answer_type, body = comparable(response)
        text = str(body)
        for value, name_of in ((a, "<a>"), (b, "<b>"), (unknown, "<x>")):
            text = text.replace(value, name_of)
        if isinstance(body, dict) and "transfer_id" in body:
            assert response.headers["location"] == f"/api/v1/transfers/{body['transfer_id']}"
            text = text.replace(body["transfer_id"], "<id>").replace(body["created_at"], "<t>")
        answers.append((status, answer_type, text))
    assert answers[0] == answers[1]


def test_only_a_plain_transfer_takes_the_fast_path() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
        return {"type": "http", "method": "POST", "path": "/api/v1/transfers", "headers": headers}

    json_body = (b"content-type", b"application/json")
    assert is_plain_json_post(scope(json_body))
    assert not is_plain_json_post(scope(json_body, (b"idempotency-key", b"k-1")))
    assert not is_plain_json_post(scope((b"content-type", b"text/plain")))
