"""History cursors, as pure functions: every ledger id round-trips, the pattern published in
the schema admits exactly the cursors the service accepts."""

from __future__ import annotations

import random
import re

import pytest

from wallet_api.core.errors import ValidationFailed
from wallet_api.events import cursors as events
from wallet_api.wallets.cursors import CURSOR_PATTERN, MAX_LEDGER_ID, decode_cursor, encode_cursor


@pytest.mark.parametrize(
    ("ledger_id", "cursor"),
    [(1, "1"), (10, "a"), (16, "10"), (255, "ff"), (MAX_LEDGER_ID, "7fffffffffffffff")],
)
def test_a_ledger_id_round_trips_through_its_cursor(ledger_id: int, cursor: str) -> None:
    assert encode_cursor(ledger_id) == cursor
    assert decode_cursor(cursor) == ledger_id
    assert re.fullmatch(CURSOR_PATTERN, cursor)


def test_random_ledger_ids_round_trip_and_match_the_pattern() -> None:
    rng = random.Random(16)
    for _ in range(2000):
        ledger_id = rng.randint(1, MAX_LEDGER_ID)
        cursor = encode_cursor(ledger_id)
        assert re.fullmatch(CURSOR_PATTERN, cursor)
        assert decode_cursor(cursor) == ledger_id


@pytest.mark.parametrize("ledger_id", [0, -1, MAX_LEDGER_ID + 1])
def test_only_ledger_ids_have_cursors(ledger_id: int) -> None:
    with pytest.raises(ValueError, match="not a ledger id"):
        encode_cursor(ledger_id)


@pytest.mark.parametrize(
    "cursor",
    ["", "0", "00", "01", "8000000000000000", "10000000000000000", "A", "g", "-1", " 1", "1 "],
)
def test_anything_else_is_a_422_and_not_matched_by_the_pattern(cursor: str) -> None:
    assert re.fullmatch(CURSOR_PATTERN, cursor) is None
    with pytest.raises(ValidationFailed) as refused:
        decode_cursor(cursor)
    assert refused.value.detail == (
        "cursor is not valid: pass back the next_cursor of a previous page."
    )
    assert refused.value.errors == [
        {"loc": ["query", "cursor"], "message": "not a cursor of this API"}
    ]


@pytest.mark.parametrize(
    ("position", "cursor"),
    [
        ((0, 0), "0-0"),
        ((255, 1), "ff-1"),
        ((2**64 - 1, MAX_LEDGER_ID), "ffffffffffffffff-7fffffffffffffff"),
    ],
)
def test_a_feed_position_round_trips_through_its_cursor(
    position: tuple[int, int], cursor: str
) -> None:
    assert events.encode_cursor(position) == cursor
    assert events.decode_cursor(cursor) == position
    assert re.fullmatch(events.CURSOR_PATTERN, cursor)


@pytest.mark.parametrize(
    "cursor",
    ["", "0", "0-", "-0", "00-1", "1-01", "1-8000000000000000", "10000000000000000-1", "A-1"],
)
def test_a_feed_cursor_the_pattern_refuses_is_a_422(cursor: str) -> None:
    # The fuzzer found one: an event id over a BIGINT's range, allowed by the pattern.
    assert re.fullmatch(events.CURSOR_PATTERN, cursor) is None
    with pytest.raises(ValidationFailed):
        events.decode_cursor(cursor)
