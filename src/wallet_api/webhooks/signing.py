"""How a delivery is signed: HMAC-SHA256, keyed by the endpoint's secret, over the
timestamp and the body, sent as `Wallet-Signature: t=<unix seconds>,v1=<hex>`. A receiver
recomputes it (wallet_api_client.webhooks.verify does) and refuses a timestamp older than
5 minutes, so that a recorded delivery cannot be replayed later."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "Wallet-Signature"
EVENT_ID_HEADER = "Wallet-Event-Id"
DELIVERY_ID_HEADER = "Wallet-Delivery-Id"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def new_secret() -> str:
    """A signing secret: 32 random bytes, URL-safe base64, with a prefix that says what it is."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Wallet-Signature` header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"
