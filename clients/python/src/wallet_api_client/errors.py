"""The errors a call raises: one class per problem `code` the service answers with, and
`ConnectionFailed` when no answer came at all.

Every error says whether its outcome is settled (`settled`): `True` when the request was
refused or not applied, for sure (a 4xx, a 503 of the service, a 500 `internal_error`, and
no earlier try of the call went unanswered), `False` when it may have been applied (no
answer, a 500 `outcome_unknown`, a 502 or 504 of a proxy in between, another 5xx; or any
error after such a try: the service may have applied that one). A POST that ends
unsettled is settled by sending it again with the same `idempotency_key` (the error carries
it): the service then replays its outcome or applies it once.
"""

from __future__ import annotations

from typing import Any, ClassVar


class WalletApiError(Exception):
    """A call that did not succeed, after `attempts` tries."""

    #: Whether this kind of answer says for sure that the request changed nothing (or was
    #: refused); an instance's `settled` also counts the call's earlier tries.
    settled_by_answer: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        attempts: int = 1,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.attempts = attempts
        self.idempotency_key = idempotency_key
        #: Whether the call's outcome is known: nothing applied (or refused), for sure.
        self.settled = self.settled_by_answer

    def __str__(self) -> str:
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return f"{self.method} {self.path}: {self.args[0]} ({tries})"


class ConnectionFailed(WalletApiError):
    """No answer came (a refused or dropped connection, a time-out) on any attempt: a POST
    may have been applied. Send it again with `idempotency_key` to settle it."""

    settled_by_answer = False


class UnexpectedAnswer(WalletApiError):
    """A success whose body is not the answer this client knows (a proxy's page, a newer
    service's incompatible answer): whether the request was applied is not known. Not
    retried."""

    settled_by_answer = False


class ApiError(WalletApiError):
    """The service answered with a problem document (RFC 9457): its `status`, `code`,
    `title`, `detail`, `request_id` and, for a `validation_error`, `errors`."""

    #: The problem `code` this class stands for ("" for a code this client does not know).
    code_name: ClassVar[str] = ""

    def __init__(
        self,
        problem: dict[str, Any],
        *,
        status: int,
        method: str,
        path: str,
        attempts: int = 1,
        idempotency_key: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.problem = problem
        self.status = status
        self.code: str = str(problem.get("code") or self.code_name or f"http_{status}")
        self.title: str = str(problem.get("title", ""))
        self.detail: str = str(problem.get("detail", ""))
        self.request_id: str | None = problem.get("request_id")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.retry_after = retry_after
        super().__init__(
            f"{status} {self.code}: {self.detail or self.title}",
            method=method,
            path=path,
            attempts=attempts,
            idempotency_key=idempotency_key,
        )


class ClientError(ApiError):
    """A 4xx: the request was refused and changed nothing."""


class ServerError(ApiError):
    """A 5xx. Not settled unless its class says so (a 502 or a 504 of a proxy in between,
    or a 5xx this client does not know, may come after the request was applied)."""

    settled_by_answer = False


# The service's codes (docs/API.md, Errors), each a class of its own.


class InsufficientFunds(ClientError):
    """400: more than the balance."""

    code_name = "insufficient_funds"


class BalanceLimitExceeded(ClientError):
    """400: a credit past the largest balance."""

    code_name = "balance_limit_exceeded"


class NotFound(ClientError):
    """404: no such path."""

    code_name = "not_found"


class WalletNotFound(NotFound):
    """404: no such wallet."""

    code_name = "wallet_not_found"


class TransferNotFound(NotFound):
    """404: no such transfer."""

    code_name = "transfer_not_found"


class EntryNotFound(NotFound):
    """404: no such entry."""

    code_name = "entry_not_found"


class HoldNotFound(NotFound):
    """404: no such hold."""

    code_name = "hold_not_found"


class EventNotFound(NotFound):
    """404: no such event (or past its retention)."""

    code_name = "event_not_found"


class WebhookEndpointNotFound(NotFound):
    """404: no such webhook endpoint."""

    code_name = "webhook_endpoint_not_found"


class BalanceMonitorNotFound(NotFound):
    """404: no such balance monitor."""

    code_name = "balance_monitor_not_found"


class TooManyWebhookEndpoints(ClientError):
    """422: the owner has as many webhook endpoints as it may."""

    code_name = "too_many_webhook_endpoints"


class TooManyBalanceMonitors(ClientError):
    """422: the wallet has as many balance monitors as it may."""

    code_name = "too_many_balance_monitors"


class MethodNotAllowed(ClientError):
    """405: not with this method."""

    code_name = "method_not_allowed"


class AlreadyReversed(ClientError):
    """409: reversed already."""

    code_name = "already_reversed"


class HoldClosed(ClientError):
    """409: the hold is closed."""


class HoldCaptured(HoldClosed):
    """409: captured already."""

    code_name = "hold_captured"


class HoldVoided(HoldClosed):
    """409: voided already."""

    code_name = "hold_voided"


class HoldExpired(HoldClosed):
    """409: the hold expired."""

    code_name = "hold_expired"


class CaptureExceedsHold(ClientError):
    """422: more than it holds."""

    code_name = "capture_exceeds_hold"


class CurrencyMismatch(ClientError):
    """422: money asked to move between wallets of two currencies (nothing is converted)."""

    code_name = "currency_mismatch"


class ReversalExceedsEntry(ClientError):
    """422: more than the entry moved."""

    code_name = "reversal_exceeds_entry"


class EntryNotReversible(ClientError):
    """422: a reversal's entry."""

    code_name = "entry_not_reversible"


class IdempotencyKeyReused(ClientError):
    """422: the key was first used for another request; never retried."""

    code_name = "idempotency_key_reused"


class ValidationFailed(ClientError):
    """422: `errors` says what is wrong."""

    code_name = "validation_error"


class BodyTooLarge(ClientError):
    """413: too large a body."""

    code_name = "body_too_large"


class AuthenticationFailed(ClientError):
    """401: no usable API key."""


class ApiKeyRequired(AuthenticationFailed):
    """401: no key sent."""

    code_name = "api_key_required"


class InvalidApiKey(AuthenticationFailed):
    """401: a malformed or unknown key."""

    code_name = "invalid_api_key"


class ApiKeyRevoked(AuthenticationFailed):
    """401: revoked."""

    code_name = "api_key_revoked"


class ApiKeyExpired(AuthenticationFailed):
    """401: expired."""

    code_name = "api_key_expired"


class InsufficientScope(ClientError):
    """403: the key lacks the scope."""

    code_name = "insufficient_scope"


class RateLimited(ClientError):
    """429: over the key's rate (retried)."""

    code_name = "rate_limited"


class TooManyStatements(ClientError):
    """429: the worker is sending as many statements as it may (retried)."""

    code_name = "too_many_statements"


class TimeInTheFuture(ClientError):
    """422: a balance at a time later than now."""

    code_name = "time_in_the_future"


class InternalError(ServerError):
    """500: a failure of the service; not applied."""

    code_name = "internal_error"
    settled_by_answer = True


class WalletBusy(ServerError):
    """503: not applied (retried)."""

    code_name = "wallet_busy"
    settled_by_answer = True


class DatabaseUnavailable(ServerError):
    """503: not applied (retried)."""

    code_name = "database_unavailable"
    settled_by_answer = True


class ServiceUnavailable(ServerError):
    """503: not applied (retried)."""

    code_name = "service_unavailable"
    settled_by_answer = True


class OutcomeUnknown(ServerError):
    """500: the service could not tell whether the request was applied (its database did
    not confirm the commit). Send it again with `idempotency_key` to settle it."""

    code_name = "outcome_unknown"


#: Each code's class.
ERRORS: dict[str, type[ApiError]] = {
    cls.code_name: cls
    for cls in (
        InsufficientFunds,
        BalanceLimitExceeded,
        NotFound,
        WalletNotFound,
        TransferNotFound,
        EntryNotFound,
        HoldNotFound,
        EventNotFound,
        WebhookEndpointNotFound,
        BalanceMonitorNotFound,
        TooManyWebhookEndpoints,
        TooManyBalanceMonitors,
        MethodNotAllowed,
        AlreadyReversed,
        HoldCaptured,
        HoldVoided,
        HoldExpired,
        CaptureExceedsHold,
        CurrencyMismatch,
        ReversalExceedsEntry,
        EntryNotReversible,
        IdempotencyKeyReused,
        ValidationFailed,
        BodyTooLarge,
        ApiKeyRequired,
        InvalidApiKey,
        ApiKeyRevoked,
        ApiKeyExpired,
        InsufficientScope,
        RateLimited,
        TooManyStatements,
        TimeInTheFuture,
        InternalError,
        OutcomeUnknown,
        WalletBusy,
        DatabaseUnavailable,
        ServiceUnavailable,
    )
}


def error_class(status: int, code: str | None) -> type[ApiError]:
    """The class of a problem: its code's, else its status family's."""
    known = ERRORS.get(code or "")
    if known is not None:
        return known
    return ServerError if status >= 500 else ClientError
