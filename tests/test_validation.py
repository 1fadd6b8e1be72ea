"""Bad input is a 422 problem document and changes nothing; no input produces a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.test_wallet_contract import assert_problem

BAD_AMOUNTS: list[object] = [
    0,
    "0",
    0.0,
    -1,
    "-1",
    -0.01,
    1.001,
    "1.001",
    "1.000",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e3",
    "1E3",
    " 1",
    "1 ",
    "+1",
    ".5",
    "1.",
    "",
    "abc",
    "0x10",
    "1_000",
    True,
    False,
    None,
    [],
    [1],
    {},
    {"value": 1},
    10**16,
    "10000000000000",
    10**400,
    "9" * 5000,
]

BAD_RAW_BODIES: list[bytes] = [
    b"",
    b"   ",
    b"not json",
    b'{"operation": "DEPOSIT", "amount": 1',
    b'{"operation": "DEPOSIT", "amount": NaN}',
    b'{"operation": "DEPOSIT", "amount": Infinity}',
    b'{"operation": "DEPOSIT", "amount": -Infinity}',
    b'{"operation": "DEPOSIT", "amount": 1e3}',
    b'{"operation": "DEPOSIT", "amount": 1E-2}',
    b'{"operation": "DEPOSIT", "amount": 1e400}',
    b'{"operation": "DEPOSIT", "amount": 0.001}',
    b'{"operation": "DEPOSIT", "amount": 1.0000000000000000000001}',
    b'{"operation": "DEPOSIT", "amount": 1' + b"0" * 5000 + b"}",
    b'{"operation": "DEPOSIT"}',
    b'{"amount": 1}',
    b"{}",
    b"[]",
    b"null",
    b"1",
    b'"DEPOSIT"',
    b'{"operation": "DEPOSIT", "amount": 1, "extra": true}',
    b"[" * 30_000 + b"]" * 30_000,  # deep, yet under the 64 KiB body limit
    b"\xff\xfe\xfa",
    b'{"operation": "\xff", "amount": 1}',
]

BAD_OPERATIONS: list[object] = ["deposit", "Deposit", "TRANSFER", "", None, 1, ["DEPOSIT"], True]


@pytest.fixture
def funded_wallet(client: httpx.Client, wallet: str) -> str:
    client.post(f"/api/v1/wallets/{wallet}/operation", json={"operation": "DEPOSIT", "amount": 50})
    return wallet


def assert_unchanged(client: httpx.Client, wallet: str) -> None:
    assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 50}


def listed_errors(body: dict[str, object]) -> list[dict[str, Any]]:
    """The `errors` of a `validation_error`, which lists each problem, as the errors table
    promises: each a location (a list of names) and a message."""
    errors = body.get("errors")
    assert isinstance(errors, list), body
    assert errors, body
    for error in errors:
        assert isinstance(error, dict), body
        assert set(error) == {"loc", "message"}, body
        assert isinstance(error["loc"], list), body
        assert error["loc"], body
        assert all(isinstance(part, str | int) for part in error["loc"]), body
        assert isinstance(error["message"], str), body
        assert error["message"], body
    return errors


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=repr)
@pytest.mark.parametrize("kind", ["DEPOSIT", "WITHDRAW"])
def test_bad_amount_is_422_and_changes_nothing(
    client: httpx.Client, funded_wallet: str, kind: str, amount: object
) -> None:
    response = client.post(
        f"/api/v1/wallets/{funded_wallet}/operation", json={"operation": kind, "amount": amount}
    )
    body = assert_problem(response, 422, "validation_error")
    assert "amount" in str(body["detail"])
    assert_unchanged(client, funded_wallet)


@pytest.mark.parametrize("raw", BAD_RAW_BODIES, ids=lambda raw: repr(raw[:40]))
def test_malformed_body_is_422_and_changes_nothing(
    client: httpx.Client, funded_wallet: str, raw: bytes
) -> None:
    response = client.post(
        f"/api/v1/wallets/{funded_wallet}/operation",
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    errors = listed_errors(assert_problem(response, 422, "validation_error"))
    assert all(error["loc"][0] == "body" for error in errors), errors
    assert_unchanged(client, funded_wallet)


@pytest.mark.parametrize("kind", BAD_OPERATIONS, ids=repr)
def test_unknown_operation_is_422(client: httpx.Client, funded_wallet: str, kind: object) -> None:
    response = client.post(
        f"/api/v1/wallets/{funded_wallet}/operation", json={"operation": kind, "amount": 1}
    )
    assert_problem(response, 422, "validation_error")
    assert_unchanged(client, funded_wallet)


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_wrong_content_type_is_422(
    client: httpx.Client, funded_wallet: str, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(
        f"/api/v1/wallets/{funded_wallet}/operation",
        content=b'{"operation": "DEPOSIT", "amount": 1}',
        headers=headers,
    )
    errors = listed_errors(assert_problem(response, 422, "validation_error"))
    # The header at fault, located as FastAPI locates a header parameter's error.
    assert [error["loc"] for error in errors] == [["header", "content-type"]], errors
    assert_unchanged(client, funded_wallet)


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "APPLICATION/JSON", "application/merge+json"],
)
def test_json_content_types_are_accepted(
    client: httpx.Client, funded_wallet: str, content_type: str
) -> None:
    response = client.post(
        f"/api/v1/wallets/{funded_wallet}/operation",
        content=b'{"operation": "DEPOSIT", "amount": 1}',
        headers={"Content-Type": content_type},
    )
    assert response.json() == {"status": "success", "balance": 51}


def test_validation_problem_lists_each_error_without_echoing_input(
    client: httpx.Client, funded_wallet: str
) -> None:
    response = client.post(
        f"/api/v1/wallets/{funded_wallet}/operation",
        json={"operation": "STEAL", "amount": "secret-value"},
    )
    body = assert_problem(response, 422, "validation_error")
    locations = [error["loc"] for error in body["errors"]]  # type: ignore[attr-defined]
    assert ["body", "operation"] in locations
    assert ["body", "amount"] in locations
    assert "secret-value" not in response.text
