"""The client's retry rules (clients/python, `wallet_api_client.retry` and the request it
builds), as pure functions: when a call is tried again, after how long, with what key."""

from __future__ import annotations

import inspect
import random
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from wallet_api_client import NO_RETRIES, AsyncClient, Client, _calls, errors
from wallet_api_client.retry import RetryPolicy, is_retried, retry_after_seconds

RNG_SEEDS = range(20)


@pytest.mark.parametrize(
    ("status", "code", "retried"),
    [
        (429, "rate_limited", True),
        (502, None, True),
        (503, "wallet_busy", True),
        (503, "database_unavailable", True),
        (503, "service_unavailable", True),
        (504, None, True),
        (500, "outcome_unknown", True),
        (500, "internal_error", True),
        (500, None, False),
        (400, "insufficient_funds", False),
        (404, "wallet_not_found", False),
        (409, "hold_captured", False),
        (422, "idempotency_key_reused", False),
        (422, "validation_error", False),
        (401, "api_key_required", False),
        (403, "insufficient_scope", False),
    ],
)
def test_which_answers_are_retried(status: int, code: str | None, retried: bool) -> None:
    assert is_retried(status, code) is retried


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_waits_grow_exponentially_with_jitter_up_to_the_cap(seed: int) -> None:
    policy = RetryPolicy(initial_delay=0.25, max_delay=10.0)
    rng = random.Random(seed)
    for retry, ceiling in [
        (1, 0.25),
        (2, 0.5),
        (3, 1.0),
        (4, 2.0),
        (6, 8.0),
        (7, 10.0),
        (30, 10.0),
    ]:
        assert ceiling / 2 <= policy.backoff(retry, rng) <= ceiling


def test_no_retry_after_the_last_attempt_or_past_the_time_budget() -> None:
    policy = RetryPolicy(max_attempts=3, max_elapsed=5.0, initial_delay=1.0, max_delay=1.0)
    rng = random.Random(1)
    assert policy.next_delay(1, 0.0, None, rng) is not None
    assert policy.next_delay(2, 0.0, None, rng) is not None
    assert policy.next_delay(3, 0.0, None, rng) is None
    assert policy.next_delay(1, 4.9, None, rng) is None  # a wait of 0.5 to 1 s would pass 5 s
    assert policy.next_delay(1, 0.0, 6.0, rng) is None  # Retry-After past the budget


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_a_retry_after_is_the_shortest_wait(seed: int) -> None:
    policy = RetryPolicy(initial_delay=0.25, max_delay=10.0)
    assert policy.next_delay(1, 0.0, 3.0, random.Random(seed)) == 3.0
    delay = policy.next_delay(5, 0.0, 0.1, random.Random(seed))
    assert delay is not None
    assert 2.0 <= delay <= 4.0


class _ShortestJitter(random.Random):
    """A jitter that always draws the shortest wait."""

    def uniform(self, a: float, b: float) -> float:
        return a


#: How long a failover may take (chaos/run.py's target for that round).
FAILOVER_SECONDS = 30.0


@pytest.mark.parametrize("retry_after", [None, 1.0])
def test_the_default_policy_rides_out_a_failover(retry_after: float | None) -> None:
    # A call keeps trying past a failover whatever the jitter draws, with or without the
    # Retry-After of 1 s that the service's 503 sends: its shortest waits add up to more.
    policy, rng = RetryPolicy(), _ShortestJitter()
    attempts, elapsed = 1, 0.0
    while (delay := policy.next_delay(attempts, elapsed, retry_after, rng)) is not None:
        attempts, elapsed = attempts + 1, elapsed + delay
    assert elapsed > FAILOVER_SECONDS


def test_a_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Sat, 05 Dec 2026 12:00:07 GMT", now=now) == 7.0
    assert retry_after_seconds("Sat, 05 Dec 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None


def test_a_policy_that_cannot_be_followed_is_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="delays"):
        RetryPolicy(initial_delay=2, max_delay=1)


def test_every_try_of_a_post_carries_one_key_and_a_get_none() -> None:
    policy, rng = RetryPolicy(), random.Random(0)
    post = _calls.Tries(_calls.operate("w", "DEPOSIT", 1), None, policy, rng)
    first, _ = post.begin()
    second, _ = post.begin()
    assert first["Idempotency-Key"] == second["Idempotency-Key"] == post.key
    assert post.key is not None
    assert post.key.startswith("wac-")
    chosen = _calls.Tries(_calls.operate("w", "DEPOSIT", 1), "order-42", policy, rng)
    assert chosen.begin()[0]["Idempotency-Key"] == "order-42"
    read = _calls.Tries(_calls.get_wallet("w"), None, policy, rng)
    assert "Idempotency-Key" not in read.begin()[0]


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("12.50"), "12.5"),
        (7, "7"),
        ("0.07", "0.07"),
        ("100", "100"),
        (Decimal("1E+2"), "100"),
        (Decimal("10.00") * Decimal("1.5"), "15"),
        ("-1", "-1"),  # the service's to refuse, with its own words
    ],
)
def test_amounts_go_out_as_exact_decimal_text(amount: _calls.Amount, text: str) -> None:
    assert _calls.amount_text(amount) == text


@pytest.mark.parametrize("amount", [0.1, True, None, [1]])
def test_an_amount_of_an_inexact_type_is_refused(amount: object) -> None:
    with pytest.raises(TypeError):
        _calls.amount_text(amount)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "amount",
    [
        "ten",
        "NaN",
        "Infinity",
        " 1",
        "+1",
        "1_000",
        "\uff11\uff12",
        "1e5",
        "1.",
        Decimal("1e50000000"),
    ],
)
def test_an_amount_that_is_not_a_number_is_refused(amount: str | Decimal) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        _calls.amount_text(amount)


def _failed(tries: _calls.Tries, error: Exception) -> float | errors.WalletApiError:
    tries.begin()
    try:
        return tries.failed(error)
    except errors.WalletApiError as raised:
        return raised


def _problem(status: int, code: str) -> errors.ApiError:
    return errors.error_class(status, code)(
        {"code": code}, status=status, method="POST", path="/api/v1/transfers"
    )


def test_an_error_after_a_try_that_went_unanswered_is_not_settled() -> None:
    policy = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.01)
    tries = _calls.Tries(_calls.create_wallet(), None, policy, random.Random(0))
    assert isinstance(_failed(tries, httpx.ReadTimeout("lost")), float)
    last = _failed(tries, _problem(503, "database_unavailable"))
    assert isinstance(last, errors.DatabaseUnavailable)
    assert last.attempts == 2
    assert not last.settled  # the first try may have been applied
    alone = _calls.Tries(_calls.create_wallet(), None, NO_RETRIES, random.Random(0))
    assert _failed(alone, _problem(503, "database_unavailable")).settled  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "code", "settled"),
    [
        (400, "insufficient_funds", True),
        (409, "hold_captured", True),
        (500, "internal_error", True),
        (503, "wallet_busy", True),
        (500, "outcome_unknown", False),
        (502, "", False),
        (504, "", False),
        (507, "", False),
    ],
)
def test_which_answers_settle_a_call(status: int, code: str, settled: bool) -> None:
    tries = _calls.Tries(_calls.create_wallet(), None, NO_RETRIES, random.Random(0))
    raised = _failed(tries, _problem(status, code))
    assert isinstance(raised, errors.ApiError)
    assert raised.settled is settled


def test_a_post_spelt_in_lower_case_carries_a_key_too() -> None:
    call = _calls.Call("post", "/api/v1/wallets/create_wallet", dict)
    tries = _calls.Tries(call, None, RetryPolicy(), random.Random(0))
    assert tries.begin()[0]["Idempotency-Key"].startswith("wac-")


def test_the_sync_and_the_async_client_offer_the_same_calls() -> None:
    """`AsyncClient` is `Client` awaited: the same methods, with the same parameters (the
    two are written side by side; every rule they apply lives in `_calls`)."""

    def calls(cls: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(method).parameters)
            for name, method in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") and name not in ("close", "aclose")
        }

    assert calls(Client) == calls(AsyncClient)
    assert len(calls(Client)) == 32  # 31 endpoints and iterators, and send()
