"""Money at the edge, as pure functions: what an amount may be, and how minor units render.
The same rules over HTTP are in tests/test_money.py and tests/test_validation.py."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from wallet_api.core.money import (
    MAX_MINOR_UNITS,
    JsonExponentNumber,
    currency_exponent,
    format_minor_units,
    parse_amount,
    parse_json_constant,
    parse_json_float,
    to_minor_units,
)

MAX_BALANCE = "9999999999999.99"


@pytest.mark.parametrize(
    ("minor", "text"),
    [
        (0, "0"),
        (1, "0.01"),
        (10, "0.1"),
        (30, "0.3"),
        (99, "0.99"),
        (100, "1"),
        (101, "1.01"),
        (110, "1.1"),
        (100_000, "1000"),
        (123_456, "1234.56"),
        (MAX_MINOR_UNITS, MAX_BALANCE),
    ],
)
def test_minor_units_render_as_the_shortest_exact_number(minor: int, text: str) -> None:
    assert format_minor_units(minor) == text
    if minor:
        assert to_minor_units(text) == minor


def parsed(text: str) -> object:
    """`text` as the service's JSON decoder reads a number (core/requests.py)."""
    decoder = json.JSONDecoder(
        parse_float=parse_json_float, parse_int=Decimal, parse_constant=parse_json_constant
    )
    return decoder.decode(text)


@pytest.mark.parametrize(
    ("amount", "minor"),
    [
        (Decimal(1), 100),
        (Decimal("0.01"), 1),
        (Decimal("0.1"), 10),
        (Decimal("12.50"), 1250),
        (Decimal("1.0"), 100),
        ("100", 10_000),
        ("100.00", 10_000),
        ("0.5", 50),
        ("007", 700),
        (MAX_BALANCE, MAX_MINOR_UNITS),
        (Decimal(MAX_BALANCE), MAX_MINOR_UNITS),
        (parsed("0.3"), 30),
        (parsed("42"), 4200),
        (5, 500),
    ],
)
def test_an_amount_becomes_exact_minor_units(amount: object, minor: int) -> None:
    assert to_minor_units(amount) == minor


NOT_A_NUMBER = "amount must be a JSON number or a numeric string"
EXPONENT = "amount must be written without an exponent"
NOT_PLAIN = "amount must be a plain decimal such as 100 or 12.50"
NOT_FINITE = "amount must be a finite number"
TOO_PRECISE = "amount must have at most 2 fractional digits"
NOT_POSITIVE = "amount must be greater than zero"
TOO_LARGE = "amount must be at most 9999999999999.99"


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (Decimal(0), NOT_POSITIVE),
        ("0", NOT_POSITIVE),
        ("0.00", NOT_POSITIVE),
        (Decimal("-1"), NOT_POSITIVE),
        (Decimal("-0.001"), NOT_POSITIVE),
        (Decimal("0.001"), TOO_PRECISE),
        ("1.001", TOO_PRECISE),
        ("1.00001", NOT_PLAIN),
        (Decimal("1.000"), TOO_PRECISE),
        ("10000000000000", TOO_LARGE),
        (Decimal("10000000000000.00"), TOO_LARGE),
        (MAX_MINOR_UNITS, TOO_LARGE),
        ("1e3", NOT_PLAIN),
        (parsed("1e3"), EXPONENT),
        (parsed("1E-2"), EXPONENT),
        (JsonExponentNumber("5e0"), EXPONENT),
        (Decimal("NaN"), NOT_FINITE),
        (Decimal("Infinity"), NOT_FINITE),
        (" 1", NOT_PLAIN),
        ("+1", NOT_PLAIN),
        ("-1", NOT_PLAIN),
        ("1.", NOT_PLAIN),
        (".5", NOT_PLAIN),
        ("", NOT_PLAIN),
        (True, NOT_A_NUMBER),
        (None, NOT_A_NUMBER),
        (1.5, NOT_A_NUMBER),
        ([1], NOT_A_NUMBER),
        ({"amount": 1}, NOT_A_NUMBER),
    ],
)
def test_anything_else_is_refused_saying_why(amount: object, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        to_minor_units(amount)


def test_json_numbers_are_read_from_their_exact_text() -> None:
    assert parsed("0.1") == Decimal("0.1")
    assert isinstance(parsed("0.1"), Decimal)
    assert parsed("1e3") == JsonExponentNumber("1e3")
    assert not isinstance(parsed("1e3"), str)  # a string field refuses it
    assert isinstance(parsed("1E3"), JsonExponentNumber)
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValueError, match=f"{constant} is not valid JSON"):
            parsed(constant)


@pytest.mark.parametrize(
    ("code", "exponent"), [("JPY", 0), ("USD", 2), ("EUR", 2), ("KWD", 3), ("CLF", 4)]
)
def test_a_currencys_exponent_is_the_standards(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("XAU", "XAU has no minor unit: it cannot be a wallet's currency"),
        ("ABC", "ABC is not an ISO 4217 currency"),
        ("usd", "currency must be an ISO 4217 code of three capital letters"),
        ("USDX", "currency must be an ISO 4217 code of three capital letters"),
    ],
)
def test_a_code_that_is_no_wallets_currency_is_refused_saying_why(code: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        currency_exponent(code)


@pytest.mark.parametrize(
    ("amount", "exponent", "minor"),
    [
        ("1000", 0, 1000),
        ("12.5", 2, 1250),
        ("1.234", 3, 1234),
        ("0.001", 3, 1),
        ("1.2345", 4, 12345),
        ("999999999999999", 0, MAX_MINOR_UNITS),
        ("999999999999.999", 3, MAX_MINOR_UNITS),
    ],
)
def test_an_amount_is_read_in_its_currencys_minor_unit(
    amount: str, exponent: int, minor: int
) -> None:
    assert to_minor_units(amount, exponent) == minor
    assert format_minor_units(minor, exponent) == amount


@pytest.mark.parametrize(
    ("amount", "exponent", "reason"),
    [
        ("0.5", 0, "amount must have at most 0 fractional digits"),
        ("1.2345", 3, "amount must have at most 3 fractional digits"),
        ("1000000000000", 3, "amount must be at most 999999999999.999"),
        ("10000000000000", 2, "amount must be at most 9999999999999.99"),
    ],
)
def test_an_amount_beyond_its_currencys_digits_or_maximum_is_refused(
    amount: str, exponent: int, reason: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        to_minor_units(amount, exponent)


@pytest.mark.parametrize(
    ("amounts", "canonical"),
    [(("1000", "1000.00", "1000.0000"), "100000"), (("0.001", "0.0010"), "0.1")],
)
def test_one_amount_has_one_canonical_text_and_two_digits_keep_their_cents(
    amounts: tuple[str, ...], canonical: str
) -> None:
    """An Idempotency-Key's fingerprint holds an amount of two digits as its cents, as it
    did before currencies existed (a key stored then still replays)."""
    assert {parse_amount(amount).canonical() for amount in amounts} == {canonical}
