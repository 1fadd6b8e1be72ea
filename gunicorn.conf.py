"""Gunicorn configuration, from the service's settings (environment and `.env`)."""

import contextlib
import os
import shutil
import socket
import sys
import tempfile
from typing import Any

from pydantic import ValidationError

# Light modules only: Prometheus's client must not be imported before on_starting.
from wallet_api.auth.limits import RATE_TABLE_VARIABLE, create_table
from wallet_api.core.config import Settings, is_loopback, load_settings_or_exit

_settings = load_settings_or_exit()  # a bad value stops the server here, before any worker

wsgi_app = "wallet_api.main:app"
worker_class = "wallet_api.core.worker.Worker"  # Uvicorn's, each answer in one write
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
        # No handler: Uvicorn's workers then write no access line of their own (the service
        # writes one, wallet_api.access) and skip building one for every request.
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
    },
}

# Prometheus metrics across workers: every worker writes its samples into one directory,
# `/metrics` in any worker reads them all. Made empty at start, removed at exit.
_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def _exposed(sockets: list[socket.socket]) -> list[str]:
    """The addresses among `sockets` that another host could reach: every one but Unix
    sockets and loopback addresses. Judged on the sockets themselves (`getsockname()`),
    however they came: `bind`, `-b fd://N`, systemd's `LISTEN_FDS`, a reload, or the
    workers' own sockets under `reuse_port`."""
    return [
        _name(listener)
        for listener in sockets
        if listener.family != socket.AF_UNIX and not is_loopback(_host(listener))
    ]


def _host(listener: socket.socket) -> str:
    address = listener.getsockname()
    return str(address[0]) if isinstance(address, tuple) else str(address)


def _name(listener: socket.socket) -> str:
    """`host:port` (IPv6 bracketed), or `unix:path`."""
    address = listener.getsockname()
    if not isinstance(address, tuple):
        return f"unix:{address}"
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _refuse_to_serve_everyone(server: Any, sockets: list[socket.socket]) -> bool:
    """Without authentication, serve on loopback addresses and Unix sockets only, unless
    allowed. False when `sockets` may not be served (the caller stops); a warning at
    every start that serves without authentication."""
    if _settings.auth_mode != "none":
        return True
    exposed = _exposed(sockets)
    if exposed and not _settings.auth_open_to_network:
        server.log.error(
            "AUTH_MODE=none on %s: anyone who reaches that address could move any wallet's "
            "money. Set AUTH_MODE=keys (docs/SECURITY.md), listen on a loopback address, "
            "or set AUTH_OPEN_TO_NETWORK=true to accept it.",
            ", ".join(exposed),
        )
        return False
    server.log.warning(
        "running without authentication (AUTH_MODE=none): anyone who can reach %s can "
        "read and move the money of any wallet",
        ", ".join(exposed or map(_name, sockets)),
    )
    return True


def on_starting(server: Any) -> None:
    directory = os.environ.get(_METRICS_DIR)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
    else:
        os.environ[_METRICS_DIR] = tempfile.mkdtemp(prefix="wallet-api-metrics-")
    if _settings.auth_mode == "keys":
        # One rate-limit table for every worker of this instance (auth/limits.py).
        os.environ[RATE_TABLE_VARIABLE] = create_table()


def when_ready(server: Any) -> None:
    # The arbiter's sockets are bound now (under `reuse_port` each worker binds its own:
    # post_fork judges those).
    if server.LISTENERS and not _refuse_to_serve_everyone(
        server, [listener.sock for listener in server.LISTENERS]
    ):
        on_exit(server)
        sys.exit(2)


def post_fork(server: Any, worker: Any) -> None:
    # The sockets this worker will accept on, whatever made them: the arbiter's (checked
    # in when_ready, but a reload may rebind them without it) or its own (`reuse_port`).
    # And the settings it will run with: its application reads the environment and `.env`
    # again (a `.env` edited since the start counts), so they are read here, judged, and
    # pinned in its environment, which wins over `.env` for the application.
    # A worker that exits with Gunicorn's boot-error status stops the whole server.
    try:
        settings = Settings()
    except ValidationError:
        worker.log.error("invalid configuration: this worker refuses to serve")
        sys.exit(server.WORKER_BOOT_ERROR)
    os.environ["AUTH_MODE"] = settings.auth_mode
    os.environ["AUTH_OPEN_TO_NETWORK"] = "true" if settings.auth_open_to_network else "false"
    if (
        settings.auth_mode == "none"
        and not settings.auth_open_to_network
        and _exposed([listener.sock for listener in worker.sockets])
    ):
        worker.log.error("AUTH_MODE=none on a network address: this worker refuses to serve")
        sys.exit(server.WORKER_BOOT_ERROR)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    shutil.rmtree(os.environ.get(_METRICS_DIR, ""), ignore_errors=True)
    table = os.environ.get(RATE_TABLE_VARIABLE)
    if table:
        with contextlib.suppress(OSError):
            os.remove(table)
