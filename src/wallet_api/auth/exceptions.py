"""How a request is refused before it reaches a wallet: no valid key, no scope, too fast.

401s carry `WWW-Authenticate` (RFC 6750's Bearer scheme). None of them repeats the key
it was sent: problem documents and logs never hold key material.
"""

from __future__ import annotations

from collections.abc import Sequence

from wallet_api.core.errors import AppError

REALM = 'Bearer realm="wallet-api"'


class Unauthenticated(AppError):
    """No usable key: the base of the 401s."""

    status = 401
    code = "api_key_required"
    title = "API key required"
    example = "Send an API key: Authorization: Bearer wk_…"

    def __init__(self, detail: str | None = None, *, error: str | None = None) -> None:
        challenge = REALM if error is None else f'{REALM}, error="{error}"'
        super().__init__(detail or self.example, headers={"WWW-Authenticate": challenge})


class ApiKeyRequired(Unauthenticated):
    pass


class InvalidApiKey(Unauthenticated):
    code = "invalid_api_key"
    title = "Invalid API key"
    example = "The API key is malformed or unknown."

    def __init__(self) -> None:
        super().__init__(self.example, error="invalid_token")


class ApiKeyRevoked(Unauthenticated):
    code = "api_key_revoked"
    title = "API key revoked"
    example = "The API key was revoked; ask the operator for a new one."

    def __init__(self) -> None:
        super().__init__(self.example, error="invalid_token")


class ApiKeyExpired(Unauthenticated):
    code = "api_key_expired"
    title = "API key expired"
    example = "The API key has expired; ask the operator for a new one."

    def __init__(self) -> None:
        super().__init__(self.example, error="invalid_token")


class InsufficientScope(AppError):
    status = 403
    code = "insufficient_scope"
    title = "Insufficient scope"
    example = "This request needs an API key with the scope `write`."

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"This request needs an API key with the scope `{scope}`.",
            headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'},
        )


class RateLimited(AppError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"
    example = "This API key sent more requests than its limit (100 a second, 200 at once)."

    def __init__(self, detail: str, headers: Sequence[tuple[bytes, bytes]]) -> None:
        super().__init__(detail, headers={name.decode(): value.decode() for name, value in headers})


#: Every refusal of this package, for the published contract.
AUTH_ERRORS: tuple[type[AppError], ...] = (
    ApiKeyRequired,
    InvalidApiKey,
    ApiKeyRevoked,
    ApiKeyExpired,
    InsufficientScope,
    RateLimited,
)
