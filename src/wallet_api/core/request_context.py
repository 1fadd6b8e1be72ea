"""The id of the request being served, visible to logs and error documents."""

from __future__ import annotations

from contextvars import ContextVar

#: What a client-sent `X-Request-ID` must look like to be kept (otherwise one is made).
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:-]{1,128}"

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request this code runs for, or None outside a request."""
    return _request_id.get()


def set_request_id(request_id: str | None) -> None:
    """Bind a request id to the current context (the ASGI middleware does this)."""
    _request_id.set(request_id)
