"""Domain errors and the one place that turns every error into an RFC 9457 problem document."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

import asyncpg
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from wallet_api.core.database import is_lock_timeout, is_transient_error
from wallet_api.core.request_context import current_request_id

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:wallet-api:problem:"


class AppError(Exception):
    """An error with a stable machine-readable `code` and the HTTP status it maps to."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"
    #: A typical `detail`, for the examples of the published contract (core/openapi.py).
    example: ClassVar[str] = (
        "The server could not complete the request. Quote the request id when reporting it."
    )

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers: Mapping[str, str] = headers or {}


class ValidationFailed(AppError):
    """The request is malformed: bad JSON, wrong content type, a field out of range."""

    status = 422
    code = "validation_error"
    title = "Validation error"
    example = "body.amount: Value error, amount must have at most 2 fractional digits"

    def __init__(self, detail: str, *, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(detail)
        self.errors = list(errors)

    @classmethod
    def from_errors(cls, errors: Sequence[Mapping[str, Any]]) -> ValidationFailed:
        """Summarise pydantic-style errors (`loc`, `msg`) without echoing the input back
        (a location may name a key the client chose, a metadata key: cut to
        LOCATION_PART_LENGTH characters)."""
        items = [
            {
                "loc": [_location_part(part) for part in error.get("loc", ())],
                "message": str(error.get("msg", "invalid")),
            }
            for error in errors
        ]
        detail = "; ".join(error_text(item) for item in items)
        return cls(detail or "The request is not valid.", errors=items)


def error_text(error: Mapping[str, Any]) -> str:
    """One error of a `validation_error` (`loc`, `message`) as its `detail` says it."""
    return f"{'.'.join(map(str, error['loc']))}: {error['message']}"


#: Characters of a location's part a problem document shows (a metadata key has at most 40).
LOCATION_PART_LENGTH = 40


def _location_part(part: object) -> object:
    if isinstance(part, str) and len(part) > LOCATION_PART_LENGTH:
        return part[:LOCATION_PART_LENGTH] + "…"
    return part


class BodyTooLarge(AppError):
    status = 413
    code = "body_too_large"
    title = "Request body too large"
    example = "The request body is larger than 65536 bytes."

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes.")


class ServiceUnavailable(AppError):
    """A temporary condition: the caller may retry after `retry_after` seconds."""

    status = 503
    code = "service_unavailable"
    title = "Service unavailable"
    example = "The service is unavailable; retry shortly."

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    example = "The database is unavailable; retry shortly."


class WalletBusy(AppError):
    """Too many operations wait for this wallet in this process, or this one waited past
    its deadline: it was not applied."""

    status = 503
    code = "wallet_busy"
    title = "Wallet busy"
    example = "The operation waited too long for its wallet; it was not applied."

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


#: The detail of an operation whose wallet another transaction held past DB_LOCK_TIMEOUT_MS.
WALLET_HELD = "Another transaction holds the wallet; the operation was not applied. Retry shortly."


def wallet_held(cause: BaseException | None = None) -> WalletBusy:
    """503 `wallet_busy` for an operation whose statement gave up waiting for its wallet's
    row lock (PostgreSQL's lock_not_available, after DB_LOCK_TIMEOUT_MS): another
    transaction holds the row, and nothing of the statement was applied."""
    busy = WalletBusy(WALLET_HELD)
    busy.__cause__ = cause
    return busy


class OutcomeUnknown(AppError):
    """The database stopped answering while a commit was in flight: it may have landed."""

    status = 500
    code = "outcome_unknown"
    title = "Outcome unknown"
    example = (
        "The database did not confirm the commit: the operation may or may not have been "
        "applied. Retry with the same Idempotency-Key, or read the wallet's history first."
    )

    def __init__(self) -> None:
        super().__init__(self.example)


class InternalError(AppError):
    """A failure of ours. Its detail is generic; the cause goes to the log only."""


def problem_document(*, status: int, code: str, title: str, detail: str) -> dict[str, Any]:
    """The RFC 9457 fields of a problem, without the request id."""
    return {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }


def error_document(error: AppError) -> dict[str, Any]:
    return problem_document(
        status=error.status, code=error.code, title=error.title, detail=error.detail
    )


def problem_response(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """Build an `application/problem+json` response carrying the request id."""
    request_id = current_request_id()
    body = problem_document(status=status, code=code, title=title, detail=detail)
    if request_id:
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    all_headers = dict(headers or {})
    if request_id:
        all_headers["X-Request-ID"] = request_id
    return Response(
        orjson.dumps(body), status_code=status, headers=all_headers, media_type=PROBLEM_CONTENT_TYPE
    )


def error_response(error: AppError) -> Response:
    """The problem document of `error`, with its headers (Retry-After, ...)."""
    extra = (
        {"errors": error.errors} if isinstance(error, ValidationFailed) and error.errors else None
    )
    return problem_response(
        status=error.status,
        code=error.code,
        title=error.title,
        detail=error.detail,
        headers=error.headers,
        extra=extra,
    )


def describe(exc: BaseException) -> str:
    """An exception in a few words for a log line: its type and message, first line only."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def log_unavailable(error: AppError) -> None:
    """The log line of a 503. Expected while the database is away or a wallet is busy, for
    every request (they come in bursts): one WARNING line each, its cause in a few words,
    the traceback only at LOG_LEVEL=debug."""
    logger.warning(
        "%s: %s%s",
        error.code,
        error.detail,
        f" ({describe(error.__cause__)})" if error.__cause__ else "",
        exc_info=error.__cause__ if logger.isEnabledFor(logging.DEBUG) else None,
    )


def exception_response(exc: Exception) -> Response:
    """The problem response for any exception a request ended with (and its log line):
    the one mapping behind the application's error handlers, and behind the fast paths
    (`core/fast_path.py`), which answer outside FastAPI's routing."""
    if isinstance(exc, AppError) and exc.status == 503:
        log_unavailable(exc)
        return error_response(exc)
    if isinstance(exc, AppError):
        if exc.status >= 500:
            logger.error("%s: %s", exc.code, exc.detail, exc_info=exc.__cause__ or exc)
        return error_response(exc)
    if is_lock_timeout(exc):
        # Another transaction held a row the request needed (an atomic batch's wallet, the
        # key of a request still running): it is busy, not the database away.
        busy = WalletBusy(
            "Another transaction holds a wallet the request needs; nothing of it was "
            "applied. Retry shortly."
        )
        busy.__cause__ = exc
        return exception_response(busy)
    if is_transient_error(exc):
        unavailable = DatabaseUnavailable("The database is unavailable; retry shortly.")
        unavailable.__cause__ = exc
        return exception_response(unavailable)
    logger.error("unhandled error", exc_info=exc)
    return problem_response(
        status=500,
        code=InternalError.code,
        title=InternalError.title,
        detail="The server could not complete the request. Quote the request id when reporting it.",
    )


def _request_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return exception_response(ValidationFailed.from_errors(exc.errors()))


def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    code = {404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, phrase.lower().replace(" ", "_").replace("-", "_")
    )
    return problem_response(
        status=exc.status_code,
        code=code,
        title=phrase,
        detail=str(exc.detail) if exc.detail != phrase else f"{phrase}.",
        headers=exc.headers,
    )


def _other_error(_: Request, exc: Exception) -> Response:
    return exception_response(exc)


#: The exceptions answered where they are raised (by FastAPI's exception middleware, or
#: by the fast paths). Any other one reaches Starlette's server-error middleware,
#: which answers the same 500 document through the `Exception` handler, then re-raises it
#: for the server to log and close the connection.
ANSWERED_ERRORS: tuple[type[Exception], ...] = (
    AppError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


def install_error_handlers(app: FastAPI) -> None:
    """Route every kind of error through the problem-document renderers above."""
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error in (*ANSWERED_ERRORS, Exception):
        app.add_exception_handler(error, _other_error)


#: The methods a path may be asked with, besides those it serves.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


def refuse_other_methods(router: APIRouter, path: str, served: Collection[str]) -> None:
    """Answer every method `path` does not serve with a 405 whose `Allow` names all it
    serves. (A path served by several routes, one per method, would otherwise be answered
    by Starlette with the `Allow` of the first route it tried.)"""
    allowed = {*served, *(["HEAD"] if "GET" in served else [])}
    header = {"Allow": ", ".join(sorted(allowed))}

    async def refuse() -> None:
        raise StarletteHTTPException(405, headers=header)

    router.add_api_route(
        path,
        refuse,
        methods=sorted(_METHODS - allowed),
        include_in_schema=False,
        name=f"refuse_other_methods:{path}",
    )
