"""JSON responses rendered by orjson, with money as exact JSON numbers."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from wallet_api.core.money import format_minor_units


def json_number(minor_units: int, exponent: int) -> orjson.Fragment:
    """An amount in minor units of a currency of `exponent` digits as a JSON number token
    in its units, exact: `1000`, `0.3`, never `1000.0`."""
    return orjson.Fragment(format_minor_units(minor_units, exponent))


def stored_json(text: str | None) -> orjson.Fragment | None:
    """JSON text as the database stored it (a `jsonb` column read as text: metadata), put
    in a body as it is, not parsed and written again; None stays None."""
    return None if text is None else orjson.Fragment(text)


def json_response(content: dict[str, Any], *, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")
