"""Receiving the service's webhooks: check that a delivery is the service's, and fresh.

    from wallet_api_client.webhooks import InvalidSignature, verify

    try:
        event = verify(secret, request.headers["Wallet-Signature"], raw_body)
    except InvalidSignature:
        return 400
    # drop a duplicate by event["id"] (a delivery may come more than once), then act

The body must be the bytes as received, before any JSON parsing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

#: Deliveries older than this are refused: a recorded one cannot be replayed later.
TOLERANCE_SECONDS = 300


class InvalidSignature(Exception):
    """The delivery was not signed with the secret, or is too old (or from the future)."""


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event a delivery carries, once its `Wallet-Signature` header proves that the
    service holding `secret` sent this very body within `tolerance` seconds of `now`."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        raise InvalidSignature("no timestamp in the signature header") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature("the delivery is older than the tolerance (a replay?)")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    if not any(
        hmac.compare_digest(expected.encode(), given.encode()) for given in fields.get("v1", [])
    ):
        raise InvalidSignature("the signature does not match the body")
    event: dict[str, Any] = json.loads(body)
    return event
