"""Prometheus metrics, correct across Gunicorn workers (prometheus-client multiprocess
mode when PROMETHEUS_MULTIPROC_DIR is set, as gunicorn.conf.py does), the access log,
and the `/metrics` endpoint."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Iterable

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import Scope

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

_pid = os.getpid()


def _forked() -> None:
    global _pid  # noqa: PLW0603 (the one value every metric update reads)
    _pid = os.getpid()


def process_id() -> int:
    """This process's id, read from memory and kept current across `os.fork()`: what
    Prometheus's multiprocess values file their samples under. Their default,
    `os.getpid()`, is a system call on every metric update (three or four a request)."""
    return _pid


os.register_at_fork(after_in_child=_forked)
if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
    # Before any metric is made: each takes its value class when it is made.
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue(process_id)  # type: ignore[no-untyped-call]

access_logger = logging.getLogger("wallet_api.access")

# One histogram serves as the request counter too (its `_count`, by status): every metric
# update in multiprocess mode writes to a shared file, so the hot path makes few.
HTTP_LATENCY = Histogram(
    "wallet_http_request_duration_seconds",
    "Requests answered and the time from arrival to the end of the response, by route "
    "template, method and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OPERATIONS = Counter(
    "wallet_operations_total",
    "Wallet operations by type and outcome (applied, insufficient_funds, replayed, ...).",
    ["operation", "outcome"],
)
IDEMPOTENT_REPLAYS = Counter(
    "wallet_idempotent_replays_total",
    "Requests answered from the stored outcome of an earlier request with their key.",
    ["endpoint"],
)
BATCH_SIZE = Histogram(
    "wallet_coalesced_batch_size",
    "Requests served together by one coalesced batch.",
    ["kind"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
QUEUE_DEPTH = Gauge(
    "wallet_coalescing_queue_depth",
    "Requests waiting in per-wallet queues, summed over live worker processes (sampled "
    "every second).",
    ["kind"],
    multiprocess_mode="livesum",
)
POOL_CONNECTIONS = Gauge(
    "wallet_db_pool_connections",
    "Database connections of the workers' pools, in use or idle (sampled every second).",
    ["state"],
    multiprocess_mode="livesum",
)


# Labelled children, looked up once per label set: `labels()` validates and locks on every
# call, a cost the hot path pays per request. The label sets are few (routes x methods x
# statuses, operations x outcomes), so the caches stay small.
request_duration = functools.cache(HTTP_LATENCY.labels)
operation_outcomes = functools.cache(OPERATIONS.labels)


def declare_operation_outcomes(operations: Iterable[str], outcomes: Iterable[str]) -> None:
    """Create every (operation, outcome) series at zero, so that a rate or an alert over
    any of them has something to evaluate on a fresh instance (Prometheus's advice)."""
    for operation in operations:
        for outcome in outcomes:
            operation_outcomes(operation, outcome)


def record_request(scope: Scope, status: int, elapsed: float) -> None:
    """Count and time an answered request by route template; write its access log line.
    (The front door calls it for every HTTP request, `core/front_door.py`.)"""
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    method = scope["method"]
    request_duration(route, method, str(status)).observe(elapsed)
    if access_logger.isEnabledFor(logging.INFO):
        access_logger.info(
            "request",
            extra={
                "method": method,
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )


async def sample_gauges(
    pool_usage: Callable[[], tuple[int, int]],
    queue_depths: Callable[[], dict[str, int]],
    every: float = 1.0,
) -> None:
    """Run until cancelled: publish this worker's pool usage and queue depths."""
    in_use, idle = POOL_CONNECTIONS.labels("in_use"), POOL_CONNECTIONS.labels("idle")
    while True:
        connections_in_use, connections_idle = pool_usage()
        in_use.set(connections_in_use)
        idle.set(connections_idle)
        for kind, depth in queue_depths().items():
            QUEUE_DEPTH.labels(kind).set(depth)
        await asyncio.sleep(every)


router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus text format, aggregated over all worker processes."""
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
