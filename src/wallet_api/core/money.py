"""Exact money at the edge: JSON text in, integer minor units inside, JSON numbers out.

Every amount and balance inside the service is an `int` count of minor units (cents).
This module is the one place that converts between that and what clients send and read.
"""

from __future__ import annotations

import re
from decimal import Decimal

MINOR_UNITS_PER_UNIT = 100
FRACTION_DIGITS = 2

#: The largest balance a wallet may hold, and so the largest amount: 9,999,999,999,999.99.
#: Fifteen significant digits, so every value is exact as an IEEE 754 double too and a
#: JavaScript client reads it back unchanged.
MAX_MINOR_UNITS = 10**15 - 1

_PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]{1,2})?")


class JsonExponentNumber:
    """A JSON number written with an exponent (`1e3`), kept as its text so it can be
    refused. Neither a number nor a `str`: a string field refuses it as a number (a
    subclass of `str`, it passed as the string "1e3" where a string was expected)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"JsonExponentNumber({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonExponentNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def parse_json_float(text: str) -> Decimal | JsonExponentNumber:
    """`json.loads` hook for non-integer numbers: exact `Decimal`, never a binary float."""
    if "e" in text or "E" in text:
        return JsonExponentNumber(text)
    return Decimal(text)


def parse_json_constant(name: str) -> None:
    """`json.loads` hook for `NaN`, `Infinity` and `-Infinity`, which JSON does not allow."""
    raise ValueError(f"{name} is not valid JSON")


def to_minor_units(value: object) -> int:
    """Convert a client-sent amount to minor units, or raise `ValueError` saying why not.

    Accepts a JSON number (as parsed with the hooks above) or a numeric string in plain
    decimal notation, positive, with at most two fractional digits, at most the maximum.
    """
    if isinstance(value, JsonExponentNumber):
        raise ValueError("amount must be written without an exponent")
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError("amount must be a JSON number or a numeric string")
    if isinstance(value, str):
        if _PLAIN_DECIMAL.fullmatch(value) is None:
            raise ValueError("amount must be a plain decimal such as 100 or 12.50")
        value = Decimal(value)
    amount = Decimal(value)
    exponent = amount.as_tuple().exponent
    if not isinstance(exponent, int):  # NaN or Infinity from a Decimal passed in directly
        raise ValueError("amount must be a finite number")
    if exponent < -FRACTION_DIGITS:
        raise ValueError(f"amount must have at most {FRACTION_DIGITS} fractional digits")
    if amount <= 0:
        raise ValueError("amount must be greater than zero")
    minor = int(amount * MINOR_UNITS_PER_UNIT)
    if minor > MAX_MINOR_UNITS:
        raise ValueError(f"amount must be at most {format_minor_units(MAX_MINOR_UNITS)}")
    return minor


def format_minor_units(minor: int) -> str:
    """Render minor units as the shortest exact JSON number: 100000 -> `1000`, 30 -> `0.3`."""
    units, cents = divmod(minor, MINOR_UNITS_PER_UNIT)
    if cents == 0:
        return str(units)
    # Not mutated: mutmut's only mutant here turns "0" into "XX0XX", which strips the same
    # characters (rstrip takes a set of characters, and a number has no X).
    return f"{units}.{cents:02d}".rstrip("0")  # pragma: no mutate


def money_text(minor_units_sql: str) -> str:
    """A SQL expression that writes the minor units `minor_units_sql` evaluates to as
    `format_minor_units` does (`trim_scale` drops the cents' trailing zeros): for the
    bodies a statement renders itself (tests/test_idempotency.py compares the two)."""
    return f"trim_scale(({minor_units_sql})::numeric / {MINOR_UNITS_PER_UNIT})::text"
