"""History cursors: the ledger id a page starts below, as the text a client passes back."""

from __future__ import annotations

import re

from wallet_api.core.errors import ValidationFailed

#: The largest ledger id (BIGINT) a cursor can name.
MAX_LEDGER_ID = 2**63 - 1
#: A cursor names a ledger id from 1 to MAX_LEDGER_ID in lowercase hex, without leading
#: zeros: every string of this form is a valid cursor, and no other string is (the
#: published schema carries the pattern, so that tools generate only valid ones).
CURSOR_PATTERN = r"^(?:[1-9a-f][0-9a-f]{0,14}|[1-7][0-9a-f]{15})$"
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(before_id: int) -> str:
    """The cursor of the page that starts below ledger id `before_id`."""
    if not 0 < before_id <= MAX_LEDGER_ID:
        raise ValueError(f"not a ledger id: {before_id}")
    return f"{before_id:x}"


def decode_cursor(cursor: str) -> int:
    """The ledger id a cursor stands for, or a 422 when it is not one of ours."""
    if _CURSOR.fullmatch(cursor) is None:
        raise ValidationFailed(
            "cursor is not valid: pass back the next_cursor of a previous page.",
            errors=[{"loc": ["query", "cursor"], "message": "not a cursor of this API"}],
        )
    return int(cursor, 16)
