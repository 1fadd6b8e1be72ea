"""Feed cursors: a position in the feed, (transaction id, event id), as the text a reader
passes back. Every position a page ends at is final (events/repository.py): a reader that
goes on from it misses nothing."""

from __future__ import annotations

import re

from wallet_api.core.errors import ValidationFailed

#: Two numbers in lowercase hex, without leading zeros (one text per position): a
#: transaction id (64 bits) and an event id (a BIGINT: at most 2**63 - 1). Every text of
#: this form is a valid cursor, and no other is (the published schema carries it).
CURSOR_PATTERN = r"^(?:0|[1-9a-f][0-9a-f]{0,15})-(?:0|[1-9a-f][0-9a-f]{0,14}|[1-7][0-9a-f]{15})$"
_CURSOR = re.compile(CURSOR_PATTERN)
#: The position before every event.
START = (0, 0)


def encode_cursor(position: tuple[int, int]) -> str:
    xid, event_id = position
    return f"{xid:x}-{event_id:x}"


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The position a cursor stands for, or a 422 when it is not one of ours."""
    if _CURSOR.fullmatch(cursor) is not None:
        xid, _, event_id = cursor.partition("-")
        return int(xid, 16), int(event_id, 16)
    raise ValidationFailed(
        "after is not valid: pass back the next_cursor of a previous page.",
        errors=[{"loc": ["query", "after"], "message": "not a cursor of this feed"}],
    )
