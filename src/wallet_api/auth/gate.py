"""The gate every `/api/` request passes when keys are required: who the caller is (a
verified key), whether the key's scopes allow the request, and whether the key is within
its rate limit. Run by the front door before the fast paths, so that they are guarded too.

The verified caller is left in the ASGI scope for the routes (`principal_of`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from starlette.types import Scope

from wallet_api.auth import repository
from wallet_api.auth.exceptions import (
    ApiKeyExpired,
    ApiKeyRequired,
    ApiKeyRevoked,
    InsufficientScope,
    InvalidApiKey,
    RateLimited,
)
from wallet_api.auth.keys import ApiKey, Principal, parse_key, secret_matches
from wallet_api.auth.keys import Scope as KeyScope
from wallet_api.auth.limits import (
    RATE_TABLE_VARIABLE,
    Decision,
    Limiter,
    LocalLimiter,
    RedisLimiter,
    rate_limit_headers,
)
from wallet_api.auth.store import KeyStore
from wallet_api.core.config import Settings
from wallet_api.core.database import Database

API_PREFIX = "/api/"
#: A worker takes a key's tokens from the shared bucket a lease at a time (at most 1/100 of
#: the burst, at most 64, kept at most a second): the shared table is locked once per
#: lease, not once per request. A small burst (under 200) leases one token: exact.
LEASE_SHARE = 100
LEASE_MAX = 64
LEASE_SECONDS = 1.0
#: Verified Authorization headers a worker remembers (forgotten all at once when full).
VERIFIED_KEPT = 10_000
_PRINCIPAL = "wallet_api.principal"
_AUTHORIZATION = b"authorization"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class Gate:
    """Admit a request or raise the refusal (401, 403, 429)."""

    def __init__(
        self,
        keys: KeyStore,
        limiter: Limiter,
        local: LocalLimiter,
        *,
        default_rate: float,
        default_burst: int,
    ) -> None:
        """`limiter`: `local` (the instance's table), or Redis falling back to it."""
        self.keys = keys
        self._limiter = limiter
        self._local = local
        self._leases: dict[str, _Lease] = {}
        #: Authorization headers verified, with their key's row as it was then: used while
        #: that row is the store's current one (a refresh or a revocation replaces it).
        self._verified: dict[bytes, tuple[ApiKey, Principal]] = {}
        self._default_rate = default_rate
        self._default_burst = default_burst

    async def close(self) -> None:
        await self._limiter.aclose()
        if self._local is not self._limiter:
            await self._local.aclose()

    async def admit(self, scope: Scope) -> tuple[Principal, list[tuple[bytes, bytes]]]:
        """The caller, and the rate-limit headers for its response."""
        authorization = _authorization(scope)
        verified = self._verified.get(authorization)
        if verified is not None and self.keys.is_current(verified[0]):
            key, principal = verified  # this header was verified against this very row
        else:
            key = await self._verify(authorization)
            principal = Principal(
                owner=key.owner, key_id=key.id, may_deposit=KeyScope.DEPOSIT in key.scopes
            )
            if len(self._verified) >= VERIFIED_KEPT:
                self._verified.clear()
            self._verified[authorization] = (key, principal)
        if key.revoked_at is not None:
            raise ApiKeyRevoked()
        if key.expires_at is not None and key.expires_at.timestamp() <= time.time():
            raise ApiKeyExpired()
        needed = KeyScope.READ if scope["method"] in _READS else KeyScope.WRITE
        if needed not in key.scopes:
            raise InsufficientScope(needed.value)
        rate = key.rate or self._default_rate
        burst = key.burst or self._default_burst
        decision = await self._count(key.id, rate, burst)
        headers = rate_limit_headers(decision, rate, burst)
        if not decision.allowed:
            raise RateLimited(
                f"This API key sent more requests than its limit ({rate:g} a second, "
                f"{burst} at once); retry after the Retry-After seconds.",
                headers,
            )
        return principal, headers

    async def _verify(self, authorization: bytes) -> ApiKey:
        """The key an Authorization header names, if its secret is the key's."""
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            raise InvalidApiKey()
        parsed = parse_key(token.strip())
        if parsed is None:
            raise InvalidApiKey()
        key_id, secret = parsed
        key = await self.keys.lookup(key_id)
        if key is None or not secret_matches(secret, key.secret_sha256):
            raise InvalidApiKey()
        return key

    async def _count(self, key_id: str, rate: float, burst: int) -> Decision:
        """Count one request of the key: from this worker's lease of its tokens while it
        lasts, else from the shared bucket (a new lease when the bucket has room for it)."""
        size = max(1, min(LEASE_MAX, burst // LEASE_SHARE))
        if size == 1:
            return await self._limiter.acquire(key_id, rate, burst)
        now = time.monotonic()
        lease = self._leases.get(key_id)
        if lease is not None and lease.tokens > 0 and now < lease.until:
            lease.tokens -= 1
            leased = lease.decision
            return Decision(True, leased.remaining + lease.tokens, leased.reset, 0.0)
        decision = await self._limiter.acquire(key_id, rate, burst, cost=size)
        if not decision.allowed:  # no room for a lease: one request, or the refusal
            return await self._limiter.acquire(key_id, rate, burst)
        self._leases[key_id] = _Lease(size - 1, now + LEASE_SECONDS, decision)
        return Decision(True, decision.remaining + size - 1, decision.reset, 0.0)


@dataclass(slots=True)
class _Lease:
    """Tokens of a key taken from the shared bucket, for this worker to spend."""

    tokens: int
    until: float
    decision: Decision


def open_gate(settings: Settings, database: Database) -> Gate:
    """The gate of one worker: its copy of the key table, and the rate limiter shared
    with the other workers of the instance (or, with REDIS_URL, with every instance)."""

    async def load_all() -> list[ApiKey]:
        async with database.autocommit() as connection:
            return await repository.all_keys(connection)

    async def load_one(key_id: str) -> ApiKey | None:
        async with database.autocommit() as connection:
            return await repository.find_key(connection, key_id)

    local = LocalLimiter(os.environ.get(RATE_TABLE_VARIABLE))
    limiter = local if settings.redis_url is None else RedisLimiter(settings.redis_url, local)
    return Gate(
        KeyStore(load_all, load_one, refresh_every=settings.auth_keys_refresh_seconds),
        limiter,
        local,
        default_rate=settings.rate_limit_rate,
        default_burst=settings.rate_limit_burst,
    )


def _authorization(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == _AUTHORIZATION:
            found: bytes = value
            return found
    raise ApiKeyRequired()


async def admit(scope: Scope) -> list[tuple[bytes, bytes]]:
    """Admit an `/api/` request through the application's gate (`app.state.gate`, set by
    the lifespan): its caller is left in the scope; the rate-limit headers its answer
    carries are returned. A refusal (401, 403, 429; 503 if the keys are unreadable) is
    raised. The front door calls it (`core/front_door.py`)."""
    gate: Gate = scope["app"].state.gate
    principal, headers = await gate.admit(scope)
    scope[_PRINCIPAL] = principal
    return headers


def principal_of(scope: Scope) -> Principal | None:
    """The verified caller of a request; None when keys are not required."""
    principal: Principal | None = scope.get(_PRINCIPAL)
    return principal


def require_deposit(scope: Scope) -> None:
    """Refuse (403) a request that creates money by `DEPOSIT` from a key without the
    scope `deposit`; with keys not required, anyone may."""
    principal = principal_of(scope)
    if principal is not None and not principal.may_deposit:
        raise InsufficientScope(KeyScope.DEPOSIT.value)


def owner_of(scope: Scope) -> str | None:
    """The owner the request acts for; None when keys are not required."""
    principal = principal_of(scope)
    return None if principal is None else principal.owner


def key_id_of(scope: Scope) -> str | None:
    """The id of the API key that sent the request (kept on its ledger rows)."""
    principal = principal_of(scope)
    return None if principal is None else principal.key_id
