"""Gunicorn configuration, from the service's settings (environment and `.env`)."""

import contextlib
import os
import shutil
import sys
import tempfile
from typing import Any

# Light modules only: Prometheus's client must not be imported before on_starting.
from wallet_api.auth.limits import RATE_TABLE_VARIABLE, create_table
from wallet_api.core.config import is_loopback, load_settings_or_exit

_settings = load_settings_or_exit()  # a bad value stops the server here, before any worker

wsgi_app = "wallet_api.main:app"
worker_class = "uvicorn_worker.UvicornWorker"  # uvloop and httptools when installed
# An IPv6 literal (`::`, `::1`) is bracketed, as Gunicorn's address parser wants it.
bind = [
    f"[{_settings.host}]:{_settings.port}"
    if ":" in _settings.host
    else f"{_settings.host}:{_settings.port}"
]
workers = _settings.workers_count
# Uvicorn workers serve every request on one event loop; Gunicorn's `threads` does not
# apply to them. Kept so that THREADS_COUNT is validated and visible, as the spec lists it.
threads = _settings.threads_count
loglevel = _settings.log_level
# SIGTERM: stop accepting, let in-flight requests and queued batches finish, then exit.
graceful_timeout = _settings.graceful_timeout
timeout = 60
keepalive = 5
backlog = 2048
accesslog = None  # the service writes its own access log line (wallet_api.access)
proc_name = "wallet-api"
# No runtime control socket: several servers may run side by side (tests, benchmarks).
control_socket_disable = True

# Gunicorn's and Uvicorn's own records in the service's format (JSON or console).
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "service": {
            "()": "wallet_api.core.logging.JsonFormatter"
            if _settings.log_format == "json"
            else "wallet_api.core.logging.ConsoleFormatter"
        }
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "service",
            "stream": "ext://sys.stderr",
            "filters": ["request_id", "closed_socket"],
        }
    },
    "filters": {
        "request_id": {"()": "wallet_api.core.logging.RequestIdFilter"},
        "closed_socket": {"()": "wallet_api.core.logging.ClosedSocketNoise"},
    },
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": _settings.log_level.upper(), "handlers": ["stderr"]},
        "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
    },
}

# Prometheus metrics across workers: every worker writes its samples into one directory,
# `/metrics` in any worker reads them all. Made empty at start, removed at exit.
_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def _refuse_to_serve_everyone(server: Any) -> None:
    """Without authentication, listen on loopback addresses only, unless allowed: the
    addresses Gunicorn will bind are checked (HOST, or -b / GUNICORN_CMD_ARGS)."""
    if _settings.auth_mode != "none":
        return
    exposed = [address for address in server.cfg.bind if not _is_local(address)]
    if not exposed:
        return
    if _settings.auth_open_to_network:
        server.log.warning(
            "running without authentication (AUTH_MODE=none) on %s: anyone who can reach "
            "it can read and move the money of any wallet",
            ", ".join(exposed),
        )
        return
    sys.exit(
        f"wallet-api: AUTH_MODE=none on {', '.join(exposed)}: anyone who reaches that "
        "address could move any wallet's money. Set AUTH_MODE=keys (docs/SECURITY.md), "
        "listen on a loopback address, or set AUTH_OPEN_TO_NETWORK=true to accept it."
    )


def _is_local(address: str) -> bool:
    if address.startswith(("unix:", "fd://")):
        return True
    host = address.rpartition(":")[0] if ":" in address else address
    return is_loopback(host)


def on_starting(server: Any) -> None:
    _refuse_to_serve_everyone(server)
    directory = os.environ.get(_METRICS_DIR)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
    else:
        os.environ[_METRICS_DIR] = tempfile.mkdtemp(prefix="wallet-api-metrics-")
    if _settings.auth_mode == "keys":
        # One rate-limit table for every worker of this instance (auth/limits.py).
        os.environ[RATE_TABLE_VARIABLE] = create_table()
    elif not any(not _is_local(address) for address in server.cfg.bind):
        server.log.warning(
            "running without authentication (AUTH_MODE=none): anyone who can reach "
            "%s can read and move the money of any wallet",
            ", ".join(server.cfg.bind),
        )


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    shutil.rmtree(os.environ.get(_METRICS_DIR, ""), ignore_errors=True)
    table = os.environ.get(RATE_TABLE_VARIABLE)
    if table:
        with contextlib.suppress(OSError):
            os.remove(table)
