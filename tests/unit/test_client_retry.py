"""The client's retry rules (clients/python, `wallet_api_client.retry` and the request it
builds), as pure functions: when a call is tried again, after how long, with what key."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from wallet_api_client import _calls
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
    [(Decimal("12.50"), "12.50"), (7, "7"), ("0.07", "0.07"), (Decimal("1E+2"), "100")],
)
def test_amounts_go_out_as_exact_decimal_text(amount: _calls.Amount, text: str) -> None:
    assert _calls.amount_text(amount) == text


@pytest.mark.parametrize("amount", [0.1, True, None, [1]])
def test_an_amount_of_an_inexact_type_is_refused(amount: object) -> None:
    with pytest.raises(TypeError):
        _calls.amount_text(amount)  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", ["ten", "NaN", "Infinity"])
def test_an_amount_that_is_not_a_number_is_refused(amount: str) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        _calls.amount_text(amount)
