"""Exact money at the edge: JSON text in, integer minor units inside, JSON numbers out.

Every amount and balance inside the service is an `int` count of its wallet's currency's
minor unit (cents of a USD wallet, yen of a JPY one, fils of a KWD one: ISO 4217's
exponent, from the `iso4217` package). This module is the one place that converts between
that and what clients send and read.

An amount is read in two steps, because its wallet's currency is not known when its body
is parsed: `parse_amount` reads what any currency could accept (a `UnitAmount`), and
`UnitAmount.minor_units` turns it into the minor units of one currency, or says why not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

import iso4217

#: The minor unit of the specification's money (two fractional digits), which
#: DEFAULT_CURRENCY must have.
FRACTION_DIGITS = 2
MINOR_UNITS_PER_UNIT = 10**FRACTION_DIGITS
#: The most fractional digits a currency of ISO 4217 has (CLF and UYW: 4).
MAX_FRACTION_DIGITS = 4

#: The largest balance a wallet may hold, and so the largest amount, in minor units:
#: 9,999,999,999,999.99 of a currency of two digits, 999,999,999,999,999 of one of none.
#: Fifteen significant digits, so every value is exact as an IEEE 754 double too and a
#: JavaScript client reads it back unchanged.
MAX_MINOR_UNITS = 10**15 - 1

_PLAIN_DECIMAL = re.compile(rf"[0-9]+(?:\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?")
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class Currency:
    """A wallet's currency: its ISO 4217 code and exponent (its minor unit's digits).
    `implicit` is true for DEFAULT_CURRENCY, which the specification's own bodies
    (`{"balance": ...}`) leave unsaid so that they stay exactly as it defines them."""

    code: str
    exponent: int
    implicit: bool = False


@cache
def currency_exponent(code: str) -> int:
    """The exponent of ISO 4217 currency `code` (JPY 0, USD 2, KWD 3), or `ValueError`
    saying why it cannot be a wallet's: not a code of the standard, or a code without a
    minor unit (gold, special drawing rights)."""
    if _CURRENCY_CODE.fullmatch(code) is None:
        raise ValueError("currency must be an ISO 4217 code of three capital letters")
    try:
        exponent = iso4217.Currency(code).exponent
    except ValueError:
        raise ValueError(f"{code} is not an ISO 4217 currency") from None
    if exponent is None:
        raise ValueError(f"{code} has no minor unit: it cannot be a wallet's currency")
    return exponent


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


#: The codes of ISO 4217 a wallet may have: the currencies with a minor unit.
WALLET_CURRENCIES = tuple(
    sorted(currency.value for currency in iso4217.Currency if currency.exponent is not None)
)


class UnitAmount:
    """An amount as a client sent it, in currency units, before its currency is known:
    positive, finite, with at most MAX_FRACTION_DIGITS fractional digits."""

    __slots__ = ("value",)

    def __init__(self, value: Decimal) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"UnitAmount({str(self.value)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnitAmount) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def minor_units(self, exponent: int = FRACTION_DIGITS) -> int:
        """The amount in minor units of a currency of `exponent` digits, or `ValueError`
        saying why it is not one of that currency's amounts."""
        digits = self.value.as_tuple().exponent
        assert isinstance(digits, int)  # finite: parse_amount refused the others
        if digits < -exponent:
            raise ValueError(f"amount must have at most {exponent} fractional digits")
        minor = int(self.value.scaleb(exponent))
        if minor > MAX_MINOR_UNITS:
            raise ValueError(
                f"amount must be at most {format_minor_units(MAX_MINOR_UNITS, exponent)}"
            )
        return minor

    def canonical(self) -> str:
        """The amount in an Idempotency-Key's fingerprint: one text for one value (`100`
        and `"100.00"` are one amount), and for an amount of two digits at most the text
        of its cents, which is what fingerprints held before currencies existed."""
        cents = self.value.scaleb(FRACTION_DIGITS)
        if cents == cents.to_integral_value():
            return str(int(cents))
        return format(cents.normalize(), "f")


def parse_amount(value: object) -> UnitAmount:
    """Read a client-sent amount, or raise `ValueError` saying why it is none.

    Accepts a JSON number (as parsed with the hooks above) or a numeric string in plain
    decimal notation, positive, with at most MAX_FRACTION_DIGITS fractional digits, at
    most the maximum of a currency without a minor unit. Its currency judges the rest
    (`UnitAmount.minor_units`).
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
    if exponent < -MAX_FRACTION_DIGITS:
        raise ValueError(f"amount must have at most {MAX_FRACTION_DIGITS} fractional digits")
    if amount <= 0:
        raise ValueError("amount must be greater than zero")
    if amount > MAX_MINOR_UNITS:
        raise ValueError(f"amount must be at most {MAX_MINOR_UNITS}")
    return UnitAmount(amount)


def to_minor_units(value: object, exponent: int = FRACTION_DIGITS) -> int:
    """Convert a client-sent amount to minor units of a currency of `exponent` digits,
    or raise `ValueError` saying why not."""
    return parse_amount(value).minor_units(exponent)


def format_minor_units(minor: int, exponent: int = FRACTION_DIGITS) -> str:
    """Render minor units as the shortest exact JSON number: 100000 -> `1000`, 30 -> `0.3`
    (of a currency of two digits; of JPY, 30 -> `30`)."""
    if exponent == 0:
        return str(minor)
    units, cents = divmod(minor, 10**exponent)
    if cents == 0:
        return str(units)
    # Not mutated: mutmut's only mutant here turns "0" into "XX0XX", which strips the same
    # characters (rstrip takes a set of characters, and a number has no X).
    return f"{units}.{cents:0{exponent}d}".rstrip("0")  # pragma: no mutate


def money_text(minor_units_sql: str, exponent: int = FRACTION_DIGITS) -> str:
    """A SQL expression that writes the minor units `minor_units_sql` evaluates to as
    `format_minor_units` does (`trim_scale` drops the cents' trailing zeros): for the
    bodies a statement renders itself (tests/test_idempotency.py compares the two)."""
    return f"trim_scale(({minor_units_sql})::numeric / {10**exponent})::text"
