"""The fast paths (`core/fast_path.py`) answer exactly as the FastAPI routes do.

`wallets/fast_path.py` serves `POST …/{uuid}/operation` with a canonical (hyphenated) UUID
and no Idempotency-Key; the same wallet written as 32 hex digits is a valid UUID to the
route but not to the fast path, so that form reaches the route. Every scenario is sent both
ways and must give the same status, headers and body (request ids aside).
`transfers/fast_path.py` serves a plain `POST /api/v1/transfers`, and `holds/fast_path.py` a
plain `POST /api/v1/holds` and `POST /api/v1/holds/{uuid}/capture`; the same request with an
Idempotency-Key reaches the route."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support import operation
from wallet_api.core.fast_path import FastRoutes
from wallet_api.holds import fast_path as holds_fast_path
from wallet_api.transfers import fast_path as transfers_fast_path
from wallet_api.wallets import fast_path as wallets_fast_path

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


FAST_PATHS = FastRoutes(
    [
        *wallets_fast_path.fast_routes(),
        *transfers_fast_path.fast_routes(),
        *holds_fast_path.fast_routes(),
    ],
)


def served(method: str, path: str, *headers: tuple[bytes, bytes]) -> tuple[str, list[str]] | None:
    """The route path a fast path serves the request with, and its path's UUIDs; None
    when the request goes on to FastAPI."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": list(headers),
    }
    matched = FAST_PATHS.match(scope)
    if matched is None:
        return None
    route, ids = matched
    return route.path, [str(each) for each in ids]


JSON_BODY = (b"content-type", b"application/json")
KEYED = (b"idempotency-key", b"k-1")


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
    path = f"/api/v1/wallets/{wallet}/operation"
    route = "/api/v1/wallets/{wallet_uuid}/operation"
    assert served("POST", path, JSON_BODY) == (route, [str(wallet)])
    assert served("POST", f"/api/v1/wallets/{wallet.hex}/operation", JSON_BODY) is None
    assert served("POST", path, JSON_BODY, KEYED) is None
    assert served("POST", path, (b"content-type", b"text/plain")) is None
    assert served("GET", path) is None


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
    route = "/api/v1/wallets/{wallet_uuid}"
    assert served("GET", f"/api/v1/wallets/{wallet}") == (route, [str(wallet)])
    assert served("GET", f"/api/v1/wallets/{wallet.hex}") is None
    assert served("POST", f"/api/v1/wallets/{wallet}", JSON_BODY) is None
    assert served("GET", "/api/v1/wallets/create_wallet") is None
    # With a query (`?at=`: a balance at a point in time) it is the route's.
    assert served("GET", f"/api/v1/wallets/{wallet}?at=2026-12-01T00:00:00Z") is None


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
    assert served("POST", "/api/v1/transfers", JSON_BODY) == ("/api/v1/transfers", [])
    assert served("POST", "/api/v1/transfers", JSON_BODY, KEYED) is None
    assert served("POST", "/api/v1/transfers", (b"content-type", b"text/plain")) is None
    assert served("POST", "/api/v1/transfers/", JSON_BODY) is None
    assert served("GET", "/api/v1/transfers") is None


HOLD_SCENARIOS: list[tuple[str, str, str]] = [
    ("hold", JSON, '{{"wallet_uuid":"{a}","amount":"2.50","description":"ride 1"}}'),
    ("more than available", JSON, '{{"wallet_uuid":"{a}","amount":11}}'),
    ("unknown wallet", JSON, '{{"wallet_uuid":"{x}","amount":1}}'),
    ("bad amount", JSON, '{{"wallet_uuid":"{a}","amount":0.001}}'),
    ("bad expiry", JSON, '{{"wallet_uuid":"{a}","amount":1,"expires_in":0}}'),
    ("not json", JSON, "{{oops"),
    ("empty", JSON, ""),
    ("text", "text/plain", '{{"wallet_uuid":"{a}","amount":1}}'),
]
CAPTURE_SCENARIOS: list[tuple[str, str, str]] = [
    ("all of it", JSON, "{{}}"),
    ("part, kept open", JSON, '{{"amount":"1.25","final":false}}'),
    ("into a wallet", JSON, '{{"amount":2,"to_wallet_uuid":"{b}"}}'),
    ("into an unknown wallet", JSON, '{{"to_wallet_uuid":"{x}"}}'),
    ("into its own wallet", JSON, '{{"to_wallet_uuid":"{a}"}}'),
    ("more than held", JSON, '{{"amount":6}}'),
    ("bad amount", JSON, '{{"amount":-1}}'),
    ("not json", JSON, "{{oops"),
    ("text", "text/plain", "{{}}"),
    ("a closed hold", JSON, "{{}}"),
    ("an unknown hold", JSON, "{{}}"),
]


def _hold_answer(response: httpx.Response, names: dict[str, str]) -> tuple[int, str | None, str]:
    """The answer with the ids and times that differ from one request to the next named."""
    status, answer_type, body = comparable(response)
    if isinstance(body, dict) and "hold_id" in body:
        assert response.headers.get("location", f"/api/v1/holds/{body['hold_id']}") == (
            f"/api/v1/holds/{body['hold_id']}"
        )
        names = {**names, body["hold_id"]: "<hold>"}
        for field in ("created_at", "expires_at", "closed_at"):
            if body[field] is not None:
                names[body[field]] = f"<{field}>"
    text = str(body)
    for value, name in names.items():
        text = text.replace(value, name)
    return status, answer_type, f"{text} location={'location' in response.headers}"


@pytest.mark.parametrize(
    ("name", "content_type", "template"), HOLD_SCENARIOS, ids=[s[0] for s in HOLD_SCENARIOS]
)
def test_a_hold_is_answered_the_same_by_the_fast_path_and_the_route(
    client: httpx.Client, name: str, content_type: str, template: str
) -> None:
    """A plain hold takes the fast path; the same request with an Idempotency-Key (its
    first use) takes the route. Same status, headers and body, ids and times aside."""
    answers = []
    for headers in ({}, {"Idempotency-Key": f"fast-path-{uuid.uuid4()}"}):
        a = client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"]
        client.post(f"/api/v1/wallets/{a}/operation", json=operation("DEPOSIT", 10))
        unknown = str(uuid.uuid4())
        response = client.post(
            "/api/v1/holds",
            headers={"Content-Type": content_type, **headers},
            content=template.format(a=a, x=unknown),
        )
        answers.append(_hold_answer(response, {a: "<a>", unknown: "<x>"}))
    assert answers[0] == answers[1]


@pytest.mark.parametrize(
    ("name", "content_type", "template"),
    CAPTURE_SCENARIOS,
    ids=[s[0] for s in CAPTURE_SCENARIOS],
)
def test_a_capture_is_answered_the_same_by_the_fast_path_and_the_route(
    client: httpx.Client, name: str, content_type: str, template: str
) -> None:
    """A plain capture of a hold of 5.00 takes the fast path; the same request with an
    Idempotency-Key (its first use), or of the hold written as 32 hex digits, takes the
    route. Same status, headers and body, ids and times aside."""
    answers = []
    for form in ("fast path", "keyed", "hex"):
        a, b = (client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"] for _ in "ab")
        client.post(f"/api/v1/wallets/{a}/operation", json=operation("DEPOSIT", 10))
        hold = client.post("/api/v1/holds", json={"wallet_uuid": a, "amount": 5}).json()
        hold_id = hold["hold_id"]
        if name == "a closed hold":
            client.post(f"/api/v1/holds/{hold_id}/void")
        if name == "an unknown hold":
            hold_id = str(uuid.uuid4())
        unknown = str(uuid.uuid4())
        in_path = uuid.UUID(hold_id).hex if form == "hex" else hold_id
        keyed = {"Idempotency-Key": f"fast-path-{uuid.uuid4()}"} if form == "keyed" else {}
        response = client.post(
            f"/api/v1/holds/{in_path}/capture",
            headers={"Content-Type": content_type, **keyed},
            content=template.format(a=a, b=b, x=unknown),
        )
        names = {a: "<a>", b: "<b>", unknown: "<x>", hold_id: "<hold>"}
        names[uuid.UUID(hold_id).hex] = "<hold>"
        answers.append(_hold_answer(response, names))
    assert answers[0] == answers[1] == answers[2]


def test_only_a_plain_hold_or_capture_takes_the_fast_path() -> None:
    hold = uuid.uuid4()
    capture = f"/api/v1/holds/{hold}/capture"
    assert served("POST", "/api/v1/holds", JSON_BODY) == ("/api/v1/holds", [])
    assert served("POST", "/api/v1/holds", JSON_BODY, KEYED) is None
    assert served("POST", capture, JSON_BODY) == ("/api/v1/holds/{hold_id}/capture", [str(hold)])
    assert served("POST", capture, JSON_BODY, KEYED) is None
    assert served("POST", f"/api/v1/holds/{hold.hex}/capture", JSON_BODY) is None
    assert served("POST", f"/api/v1/holds/{hold}/void", JSON_BODY) is None
    assert served("GET", f"/api/v1/holds/{hold}") is None
