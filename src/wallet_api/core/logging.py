"""Logging set-up: every record carries the id of the request it was written for."""

from __future__ import annotations

import logging
import sys

from wallet_api.core.request_context import current_request_id

LOG_FORMAT = (
    "%(asctime)s %(levelname)s [%(process)d] %(name)s request_id=%(request_id)s %(message)s"
)


class RequestIdFilter(logging.Filter):
    """Stamp each record with the current request id (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True


def configure_logging(level: str) -> None:
    """Send the service's logs to stderr at `level`, with request ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger("wallet_api")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
