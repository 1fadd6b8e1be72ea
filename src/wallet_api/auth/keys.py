"""API keys: their form, their secret's hash, and who a verified key makes the caller.

A key reads `wk_<id>_<secret>`: `id` is 12 lowercase hex digits, public, the row the
key is looked up by (and what the ledger and the logs may name); `secret` is 32 random
bytes in URL-safe base64. Only the secret's SHA-256 is stored: the secret has 256 bits
of entropy, so a plain hash is as strong as a slow one here (slow hashes protect
guessable passwords), and it costs about a microsecond to check.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

PREFIX = "wk"
#: Owners are names an operator chooses: short, printable, no spaces.
OWNER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_KEY = re.compile(r"wk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


class Scope(enum.StrEnum):
    """What a key may do: `read` for GET; `write` for POST, whose answers show what the
    write did to the owner's own wallets (their balances); `deposit`, with `write`, to
    create money by `DEPOSIT` (docs/SECURITY.md)."""

    READ = "read"
    WRITE = "write"
    DEPOSIT = "deposit"


#: The scopes of a key created without naming any: everything but creating money.
DEFAULT_SCOPES = (Scope.READ, Scope.WRITE)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: everything but the secret."""

    id: str
    owner: str
    scopes: frozenset[Scope]
    secret_sha256: str
    rate: float | None
    burst: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: a verified key's owner and id, and whether the key may
    create money."""

    owner: str
    key_id: str
    may_deposit: bool = False


def new_key() -> tuple[str, str, str]:
    """A fresh key: (the whole key, to hand out once; its id; its secret's hash)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}_{key_id}_{secret}", key_id, hash_secret(secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    match = _KEY.fullmatch(token)
    return None if match is None else (match.group(1), match.group(2))


def secret_matches(secret: str, stored_sha256: str) -> bool:
    """Compared in constant time: the comparison tells nothing about how close it was."""
    return hmac.compare_digest(hash_secret(secret), stored_sha256)
