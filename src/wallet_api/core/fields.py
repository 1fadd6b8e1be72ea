"""Field types shared by the request bodies of every endpoint: an amount, a wallet id,
metadata."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

import orjson
from asyncpg.pgproto import pgproto
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from wallet_api.core.errors import ValidationFailed
from wallet_api.core.money import (
    MAX_MINOR_UNITS,
    WALLET_CURRENCIES,
    Currency,
    UnitAmount,
    currency_exponent,
    format_minor_units,
    parse_amount,
)


def _amount(value: object) -> UnitAmount:
    try:
        return parse_amount(value)
    except ValueError as exc:
        raise PydanticCustomError("amount", str(exc)) from None


_MAX = format_minor_units(MAX_MINOR_UNITS)

#: A positive amount of at most four fractional digits (the most a currency has) and at
#: most the largest of any currency, as a string: leading zeros are allowed, an exponent
#: or a sign is not. Its wallet's currency judges the rest.
AMOUNT_STRING_PATTERN = (
    r"^0*(?:[1-9][0-9]{0,13}(?:\.[0-9]{1,4})?|[1-9][0-9]{14}"
    r"|0\.(?:[1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9]))$"
)

Amount = Annotated[
    UnitAmount,
    PlainValidator(_amount),
    WithJsonSchema(
        {
            "title": "Amount",
            "description": (
                "Positive amount in units of the wallet's currency, with at most as many "
                "fractional digits as the currency's minor unit has (two for "
                "DEFAULT_CURRENCY and USD, none for JPY, three for KWD), as a JSON number "
                "or a numeric string; at most 9999999999999.99 of a currency of two "
                f"digits ({MAX_MINOR_UNITS} minor units). A number is read from its exact "
                "text (never through a binary float) and must be written without an "
                "exponent: `12.5`, not `1.25e1`. (The schema's keywords cannot say this "
                "of a number portably, nor depend on the wallet's currency: "
                "`multipleOf: 0.01` is computed in binary floating point by common "
                "validators, which would refuse 0.07; anything else is a 422.)"
            ),
            "oneOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_MINOR_UNITS},
                {"type": "string", "pattern": AMOUNT_STRING_PATTERN},
            ],
            "examples": [1000, 12.5, "100.00"],
        }
    ),
]


def minor_units(amount: UnitAmount, currency: Currency, loc: tuple[str | int, ...]) -> int:
    """`amount` in minor units of `currency`, or 422 `validation_error` at `loc` saying
    why it is not one of its amounts (too many fractional digits, beyond the maximum)."""
    try:
        return amount.minor_units(currency.exponent)
    except ValueError as exc:
        where = ".".join(str(part) for part in loc)
        raise ValidationFailed(
            f"{where}: {exc}", errors=[{"loc": list(loc), "message": str(exc)}]
        ) from None


def canonical_amount(amount: UnitAmount | None) -> orjson.Fragment | None:
    """An amount in a request's canonical JSON (its Idempotency-Key's fingerprint): the
    number its `canonical` text is, as fingerprints held it before currencies existed."""
    return None if amount is None else orjson.Fragment(amount.canonical())


def _currency_code(value: str) -> str:
    try:
        currency_exponent(value)
    except ValueError as exc:
        raise PydanticCustomError("currency", str(exc)) from None
    return value


#: An ISO 4217 currency code of a currency with a minor unit (`JPY`, `USD`, `KWD`).
CurrencyCode = Annotated[
    str,
    AfterValidator(_currency_code),
    WithJsonSchema(
        {
            "type": "string",
            "enum": list(WALLET_CURRENCIES),
            "description": (
                "An ISO 4217 currency code of a currency with a minor unit; its "
                "exponent sets the fractional digits of the wallet's amounts."
            ),
            "examples": ["USD", "JPY", "KWD"],
        }
    ),
]


#: A UUID in its canonical hyphenated form, as a regular expression (also the fast paths'
#: path parameters, core/fast_path.py).
CANONICAL_UUID = r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
_CANONICAL_UUID = re.compile(CANONICAL_UUID)


def parse_uuid(text: str) -> UUID:
    """A UUID from text already known to be one: asyncpg's UUID, a `uuid.UUID` whose
    parsing and hashing are written in C (a wallet id is a key of many dicts on the write
    path; Python's own UUID costs a function call per hash, and 3 µs to parse)."""
    return pgproto.UUID(text)


def _canonical_uuid(value: object) -> object:
    """A UUID in its canonical hyphenated form only (JSON Schema's `uuid` format), not the
    other forms Python's UUID would also read (32 digits, braces, a URN)."""
    if isinstance(value, str):
        if _CANONICAL_UUID.fullmatch(value) is None:
            raise PydanticCustomError("uuid", "Input should be a UUID in its hyphenated form")
        return parse_uuid(value)
    return value


#: A UUID in its canonical hyphenated form.
CanonicalUUID = Annotated[UUID, BeforeValidator(_canonical_uuid)]


#: Metadata's bounds (Stripe's): keys, a key's characters, a value's characters.
METADATA_MAX_KEYS = 50
METADATA_KEY_MAX_LENGTH = 40
METADATA_VALUE_MAX_LENGTH = 500
#: No NUL character: PostgreSQL's jsonb cannot store one.
NO_NUL = r"^[^\u0000]*$"


def _none_when_empty(value: dict[str, str]) -> dict[str, str] | None:
    """`{}` is no metadata: stored, fingerprinted and answered as none."""
    return value or None


#: The client's own references on what it writes: a JSON object of string keys and string
#: values, within Stripe's bounds; `{}` is none.
Metadata = Annotated[
    dict[
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=METADATA_KEY_MAX_LENGTH, pattern=NO_NUL),
        ],
        Annotated[str, StringConstraints(max_length=METADATA_VALUE_MAX_LENGTH, pattern=NO_NUL)],
    ],
    Field(max_length=METADATA_MAX_KEYS),
    AfterValidator(_none_when_empty),
    WithJsonSchema(
        {
            "title": "Metadata",
            "description": (
                "Your own references, kept with what is written and returned with it: at "
                f"most {METADATA_MAX_KEYS} keys of 1 to {METADATA_KEY_MAX_LENGTH} "
                f"characters, each with a string value of at most {METADATA_VALUE_MAX_LENGTH} "
                "characters (no NUL character). `{}` is none. Part of the request an "
                "Idempotency-Key stands for."
            ),
            "type": "object",
            "maxProperties": METADATA_MAX_KEYS,
            "propertyNames": {
                "minLength": 1,
                "maxLength": METADATA_KEY_MAX_LENGTH,
                "pattern": NO_NUL,
            },
            "additionalProperties": {
                "type": "string",
                "maxLength": METADATA_VALUE_MAX_LENGTH,
                "pattern": NO_NUL,
            },
            "examples": [{"order_id": "42", "channel": "web"}],
        }
    ),
]


def metadata_text(metadata: dict[str, str] | None) -> str | None:
    """Metadata as the JSON text the ledger stores (None: none)."""
    return None if metadata is None else orjson.dumps(metadata).decode()


#: The rule between the history's two metadata parameters, which a schema states in words.
METADATA_FILTER_RULE = "metadata_key and metadata_value go together"


def metadata_filter(key: str | None, value: str | None) -> dict[str, str] | None:
    """The history's metadata filter (a key and its value), or None; one without the
    other is refused (422 `validation_error`)."""
    if key is None and value is None:
        return None
    if key is None or value is None:
        missing = "metadata_key" if key is None else "metadata_value"
        raise ValidationFailed(
            f"query.{missing}: {METADATA_FILTER_RULE}",
            errors=[{"loc": ["query", missing], "message": METADATA_FILTER_RULE}],
        )
    return {key: value}


def canonical_metadata(metadata: dict[str, str] | None) -> str:
    """Metadata's part of a request's canonical form (its Idempotency-Key's fingerprint):
    its keys in order, so that the same object written in another order is the same
    request; empty without metadata, so that a request without it keeps the fingerprint
    it had before metadata existed (a key stored then is still replayed)."""
    if metadata is None:
        return ""
    return orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS).decode()


#: An amount in a response: a JSON number in units of its wallet's currency, exact
#: (json_number).
Money = Annotated[Decimal, WithJsonSchema({"type": "number", "examples": [1000, 0.3]})]


_RFC3339_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]")


def _rfc3339_text(value: object) -> object:
    if not isinstance(value, str) or _RFC3339_DATE.match(value) is None:
        raise PydanticCustomError(
            "datetime", "must be an RFC 3339 time with its offset, such as 2026-12-01T00:00:00Z"
        )
    return value


#: A time in a query (`at`, `from`, `to`): RFC 3339 text with its offset. A number, which
#: pydantic would read as Unix seconds, is refused as the schema's `date-time` says.
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


#: The rule between the bounds of a period (`from`, `to`: a history, a statement), which a
#: schema states in words only.
PERIOD_RULE = "from must not be later than to"


def check_period(since: datetime | None, until: datetime | None) -> None:
    """Refuse a period that ends before it begins (422 `validation_error`)."""
    if since is not None and until is not None and since > until:
        raise ValidationFailed(
            f"query.from: {PERIOD_RULE}",
            errors=[{"loc": ["query", "from"], "message": PERIOD_RULE}],
        )
