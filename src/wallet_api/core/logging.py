"""Logging set-up: one JSON object per line (or a readable console line), every record
carrying the id of the request it was written for."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from wallet_api.core.request_context import current_request_id

LogFormat = Literal["json", "console"]

CONSOLE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s%(fields)s"

# Attributes every LogRecord has; anything else was passed with `extra=` and is a field
# (but for Uvicorn's `color_message`, the same message with terminal colour codes).
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
    "fields",
}


class RequestIdFilter(logging.Filter):
    """Stamp each record with the current request id (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


class ClosedSocketNoise(logging.Filter):
    """Drop Gunicorn's "Error while closing socket [Errno 9] Bad file descriptor", which
    every Uvicorn worker logs at every clean stop: the asyncio server owns the listening
    socket and has closed it already when Gunicorn closes it again (an upstream ordering,
    gunicorn#3013). Any other error while closing a socket is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (
            record.msg == "Error while closing socket %s"
            and str(args[:1] and args[0]).startswith("[Errno 9]")
        )


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD_ATTRIBUTES and key != "request_id"
    }


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "request_id", ...fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current_request_id(),
            "pid": record.process,
            **_fields(record),
        }
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """A readable line for a terminal (`make run`), with the extra fields as key=value."""

    def __init__(self) -> None:
        super().__init__(CONSOLE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        record.fields = "".join(f" {key}={value}" for key, value in fields.items())
        record.request_id = getattr(record, "request_id", None) or current_request_id() or "-"
        return super().format(record)


def make_handler(log_format: LogFormat) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    return handler


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Send the service's logs to stderr at `level`, in `log_format`, with request ids."""
    root = logging.getLogger("wallet_api")
    root.handlers[:] = [make_handler(log_format)]
    root.setLevel(level.upper())
    root.propagate = False
