"""Idempotency-Key plumbing: the header's form, request fingerprints, replay responses."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import Header
from fastapi.responses import Response

from wallet_api.core.errors import PROBLEM_CONTENT_TYPE, AppError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: 1 to 255 visible ASCII characters (no spaces, no control characters).
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"

#: The optional header of every POST endpoint.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        pattern=KEY_PATTERN,
        description=(
            "1 to 255 visible ASCII characters. The first request with a key is executed and "
            "its outcome kept; a later one with the same key and the same request gets that "
            "outcome again (header Idempotent-Replayed: true) and changes nothing."
        ),
    ),
]


def scoped_key(owner: str | None, key: str | None) -> str | None:
    """An Idempotency-Key in its owner's namespace, as stored: two owners' equal keys
    are two keys. A tab separates them (no client key holds one); without an owner (no
    authentication) the key is kept as sent."""
    if key is None or owner is None:
        return key
    return f"{owner}\t{key}"


def client_key(stored: str | None) -> str | None:
    """A stored key as its client sent it."""
    return None if stored is None else stored.rpartition("\t")[2]


def fingerprint(method: str, path: str, canonical_body: str) -> str:
    """What makes two requests the same request: method, path and canonical body."""
    return hashlib.sha256(f"{method} {path}\n{canonical_body}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored outcome of the first request sent with a key, to be sent again."""

    status: int
    body: str

    def response(self) -> Response:
        media_type = PROBLEM_CONTENT_TYPE if self.status >= 400 else "application/json"
        return Response(
            self.body,
            status_code=self.status,
            media_type=media_type,
            headers={REPLAYED_HEADER: "true"},
        )


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What was kept for a key: its first request's fingerprint and response."""

    fingerprint: str
    status: int
    body: str


class IdempotencyKeyReused(AppError):
    """The key was first sent with another request (another body, wallet or endpoint)."""

    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency key reused"
    example = (
        "This Idempotency-Key was already used for a different request; "
        "use a new key for a new request."
    )

    def __init__(self) -> None:
        super().__init__(self.example)


def replay(stored: StoredResponse, fingerprint: str) -> Replay | IdempotencyKeyReused:
    """The stored outcome of a key's first request, for a request with that key."""
    if stored.fingerprint != fingerprint:
        return IdempotencyKeyReused()
    return Replay(stored.status, stored.body)
