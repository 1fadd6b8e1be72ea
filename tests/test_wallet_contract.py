"""The three endpoints as the specification draws them: paths, statuses, exact bodies."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.support import operation

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code", "request_id"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body.keys() >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_create_wallet_returns_201_and_only_its_uuid(client: httpx.Client) -> None:
    response = client.post("/api/v1/wallets/create_wallet")
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"wallet_uuid"}
    assert uuid.UUID(body["wallet_uuid"]).version == 4


def test_new_wallet_has_zero_balance(client: httpx.Client, wallet: str) -> None:
    response = client.get(f"/api/v1/wallets/{wallet}")
    assert response.status_code == 200
    assert response.json() == {"balance": 0}


def test_deposit_returns_success_and_the_new_balance(client: httpx.Client, wallet: str) -> None:
    response = client.post(f"/api/v1/wallets/{wallet}/operation", json=operation("DEPOSIT", 1000))
    assert response.status_code == 200
    assert response.text == '{"status":"success","balance":1000}'
    assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 1000}


def test_withdraw_returns_the_balance_after_it(client: httpx.Client, wallet: str) -> None:
    client.post(f"/api/v1/wallets/{wallet}/operation", json=operation("DEPOSIT", 2000))
    response = client.post(f"/api/v1/wallets/{wallet}/operation", json=operation("WITHDRAW", 500))
    assert response.status_code == 200
    assert response.json() == {"status": "success", "balance": 1500}


def test_withdraw_beyond_balance_is_refused_and_changes_nothing(
    client: httpx.Client, wallet: str
) -> None:
    client.post(f"/api/v1/wallets/{wallet}/operation", json=operation("DEPOSIT", 10))
    response = client.post(
        f"/api/v1/wallets/{wallet}/operation", json=operation("WITHDRAW", "10.01")
    )
    assert_problem(response, 400, "insufficient_funds")
    assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 10}


def test_withdraw_of_the_whole_balance_leaves_zero(client: httpx.Client, wallet: str) -> None:
    client.post(f"/api/v1/wallets/{wallet}/operation", json=operation("DEPOSIT", "12.34"))
    response = client.post(f"/api/v1/wallets/{wallet}/operation", json=operation("WITHDRAW", 12.34))
    assert response.json() == {"status": "success", "balance": 0}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/wallets/{}"),
        ("POST", "/api/v1/wallets/{}/operation"),
    ],
)
def test_unknown_wallet_is_404(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(
        method,
        path.format(uuid.uuid4()),
        json=operation("DEPOSIT", 1) if method == "POST" else None,
    )
    assert_problem(response, 404, "wallet_not_found")


@pytest.mark.parametrize("path", ["/api/v1/wallets/not-a-uuid", "/api/v1/wallets/1234"])
def test_malformed_wallet_uuid_in_path_is_422(client: httpx.Client, path: str) -> None:
    assert_problem(client.get(path), 422, "validation_error")
    assert_problem(
        client.post(path + "/operation", json=operation("DEPOSIT", 1)), 422, "validation_error"
    )


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/v1/wallets/create_wallet", "POST"),
        ("DELETE", "/api/v1/wallets/create_wallet", "POST"),
        ("DELETE", "/api/v1/wallets/{wallet}", "GET"),
        ("PUT", "/api/v1/wallets/{wallet}", "GET"),
        ("GET", "/api/v1/wallets/{wallet}/operation", "POST"),
        ("POST", "/health/live", "GET"),
    ],
)
def test_unknown_method_on_known_path_is_405(
    client: httpx.Client, wallet: str, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path.format(wallet=wallet))
    assert_problem(response, 405, "method_not_allowed")
    assert allowed in response.headers["allow"]


def test_unknown_path_is_404_problem(client: httpx.Client) -> None:
    assert_problem(client.get("/api/v1/nothing-here"), 404, "not_found")


def test_incoming_request_id_is_echoed_and_a_bad_one_replaced(client: httpx.Client) -> None:
    kept = client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    replaced = client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    assert re.fullmatch(r"[0-9a-f]{24}", replaced.headers["x-request-id"])
    assert client.get("/health/live").headers["x-request-id"] != replaced.headers["x-request-id"]


def test_health_endpoints_answer(client: httpx.Client) -> None:
    assert client.get("/health/live").json() == {"status": "ok"}
    assert client.get("/health/ready").json() == {"status": "ok"}


def test_openapi_documents_the_three_endpoints(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/wallets/create_wallet"]) == {"post"}
    assert set(paths["/api/v1/wallets/{wallet_uuid}"]) == {"get"}
    operation_doc = paths["/api/v1/wallets/{wallet_uuid}/operation"]["post"]
    assert "requestBody" in operation_doc
