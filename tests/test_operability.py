"""Start-up and failure behaviour: bad settings fail fast, a missing database is a 503."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.faults import wait_for_backends
from tests.support import ROOT, TestDatabase, operation
from tests.test_wallet_contract import assert_problem
from wallet_api.devtools.server import ServiceProcess, free_port


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DB_PORT", "not-a-port"),
        ("WORKERS_COUNT", "0"),
        ("DB_POOL_SIZE", "-1"),
        ("LOG_LEVEL", "loud"),
        ("COALESCING_ENABLED", "maybe"),
    ],
)
def test_a_bad_setting_stops_the_server_at_start_with_a_clear_message(
    variable: str, value: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"],
        cwd=ROOT,
        env={**os.environ, variable: value, "PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "invalid configuration" in result.stderr
    assert f"{variable}={value!r}" in result.stderr


@pytest.fixture(scope="module")
def service_without_database(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service(
        wait_path="/health/live",
        DB_HOST="127.0.0.1",
        DB_PORT=str(free_port()),  # nothing listens there
        DB_CONNECT_TIMEOUT="1",
    )


def test_without_a_database_the_service_is_live_but_not_ready(
    service_without_database: ServiceProcess,
) -> None:
    base = service_without_database.base_url
    assert httpx.get(base + "/health/live").status_code == 200
    response = httpx.get(base + "/health/ready", timeout=10)
    assert_problem(response, 503, "database_unavailable")
    assert response.headers["retry-after"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/wallets/create_wallet", None),
        ("GET", "/api/v1/wallets/00000000-0000-4000-8000-000000000000", None),
        (
            "POST",
            "/api/v1/wallets/00000000-0000-4000-8000-000000000000/operation",
            {"operation": "DEPOSIT", "amount": 1},
        ),
    ],
)
def test_without_a_database_requests_get_503_without_internals(
    service_without_database: ServiceProcess, method: str, path: str, body: object
) -> None:
    response = httpx.request(
        method, service_without_database.base_url + path, json=body, timeout=10
    )
    problem = assert_problem(response, 503, "database_unavailable")
    assert response.headers["retry-after"]
    assert "Connect" not in str(problem["detail"])
    assert str(problem["request_id"]) in service_without_database.log_text()


def test_a_body_over_the_limit_is_413_before_it_is_read(client: httpx.Client, wallet: str) -> None:
    big = b'{"operation": "DEPOSIT", "amount": 1, "pad": "' + b"x" * 70_000 + b'"}'
    declared = client.post(
        f"/api/v1/wallets/{wallet}/operation",
        content=big,
        headers={"Content-Type": "application/json"},
    )
    assert_problem(declared, 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    streamed = client.post(
        f"/api/v1/wallets/{wallet}/operation",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert_problem(streamed, 413, "body_too_large")
    assert client.get(f"/api/v1/wallets/{wallet}").json() == {"balance": 0}


def test_metrics_count_requests_and_operations_across_workers(
    client: httpx.Client, wallet: str
) -> None:
    def sample(text: str, name: str, **labels: str) -> float:
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{{wanted}}} "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = client.get("/metrics").text
    for _ in range(20):  # spread over both workers by separate connections
        httpx.post(
            f"{client.base_url}/api/v1/wallets/{wallet}/operation",
            json={"operation": "DEPOSIT", "amount": 1},
        )
    httpx.post(
        f"{client.base_url}/api/v1/wallets/{wallet}/operation",
        json={"operation": "WITHDRAW", "amount": 1000},
    )
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    route = "/api/v1/wallets/{wallet_uuid}/operation"
    requests = {"method": "POST", "route": route, "status": "200"}
    counted = "wallet_http_request_duration_seconds_count"  # the request counter
    assert sample(after.text, counted, **requests) - sample(before, counted, **requests) == 20
    applied = {"operation": "DEPOSIT", "outcome": "applied"}
    assert (
        sample(after.text, "wallet_operations_total", **applied)
        - sample(before, "wallet_operations_total", **applied)
        == 20
    )
    refused = {"operation": "WITHDRAW", "outcome": "insufficient_funds"}
    assert (
        sample(after.text, "wallet_operations_total", **refused)
        - sample(before, "wallet_operations_total", **refused)
        == 1
    )
    for name in (
        "wallet_http_request_duration_seconds_bucket",
        "wallet_coalesced_batch_size_bucket",
        "wallet_coalescing_queue_depth",
        "wallet_db_pool_connections",
    ):
        assert name in after.text


def test_every_operation_outcome_has_a_series_at_zero_on_a_fresh_instance(
    start_service: Callable[..., ServiceProcess],
) -> None:
    """An alert on, say, the rate of `insufficient_funds` has a series to evaluate before
    the first refusal (Prometheus's advice: initialise the known label values)."""
    fresh = start_service(fresh=True)
    text = httpx.get(fresh.base_url + "/metrics").text
    outcomes = (
        "applied",
        "replayed",
        "insufficient_funds",
        "balance_limit_exceeded",
        "wallet_not_found",
        "idempotency_key_reused",
        "wallet_busy",
        "database_unavailable",
        "outcome_unknown",
        "internal_error",
    )
    for kind in ("DEPOSIT", "WITHDRAW"):
        for outcome in outcomes:
            series = f'wallet_operations_total{{operation="{kind}",outcome="{outcome}"}}'
            assert f"{series} 0.0\n" in text, series


def test_every_request_gets_one_json_access_log_line_with_its_request_id_and_duration(
    service: ServiceProcess, client: httpx.Client, wallet: str, database: TestDatabase
) -> None:
    """The line's duration is the request's: one held up by a row lock for a second logs
    at least that, and no longer than the client waited. By construction: the second is
    counted from the moment its statement waits on the lock (seen in pg_stat_activity),
    so the request had reached the service before it, however slowly it came."""
    request_id = f"access-{uuid.uuid4().hex}"
    held = 1.0

    async def held_up() -> float:
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as http:
            async with database.row_locked(wallet):
                started = time.monotonic()
                deposit = asyncio.create_task(
                    http.post(
                        f"/api/v1/wallets/{wallet}/operation",
                        json=operation("DEPOSIT", 1),
                        headers={"X-Request-ID": request_id},
                    )
                )
                await asyncio.to_thread(
                    wait_for_backends, database, wait_event_type="Lock", timeout=60
                )
                await asyncio.sleep(held)
            response = await deposit
            elapsed = time.monotonic() - started
            assert response.status_code == 200
            return elapsed

    elapsed = asyncio.run(held_up())
    deadline = time.monotonic() + 30  # polled: a generous deadline costs nothing
    while True:
        lines = [line for line in service.log_text().splitlines() if request_id in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["logger"] == "wallet_api.access"
    assert record["request_id"] == request_id
    assert record["method"] == "POST"
    assert record["route"] == "/api/v1/wallets/{wallet_uuid}/operation"
    assert record["path"] == f"/api/v1/wallets/{wallet}/operation"
    assert record["status"] == 200
    assert held * 1000 <= record["duration_ms"] <= elapsed * 1000


def test_an_exhausted_pool_gives_503_after_db_pool_timeout_not_a_hang(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    service = start_service(
        WORKERS_COUNT="1",
        DB_POOL_SIZE="1",
        DB_MAX_OVERFLOW="0",
        DB_POOL_TIMEOUT="0.5",
        COALESCING_ENABLED="false",  # every operation needs a connection of its own
    )
    wallet = str(
        httpx.post(f"{service.base_url}/api/v1/wallets/create_wallet").json()["wallet_uuid"]
    )

    # By construction: the holder's statement is seen waiting on the lock (so it holds
    # the only connection) before the second request is sent, and the lock is released
    # only once that one is answered: its 503 can only come from the pool's timeout. It
    # waited that long at least (measured around it); a service that ignored
    # DB_POOL_TIMEOUT (30 s by default) or waited for the connection would not answer
    # within the client's 20 s.
    async def scenario() -> tuple[httpx.Response, httpx.Response, float]:
        async with httpx.AsyncClient(base_url=service.base_url, timeout=20) as client:
            path = f"/api/v1/wallets/{wallet}/operation"
            async with database.row_locked(wallet):
                holder = asyncio.create_task(client.post(path, json=operation("DEPOSIT", 1)))
                await asyncio.to_thread(
                    wait_for_backends, database, wait_event_type="Lock", timeout=60
                )
                started = time.monotonic()
                starved = await client.post(path, json=operation("DEPOSIT", 2))
                waited = time.monotonic() - started
            return await holder, starved, waited

    held, starved, waited = asyncio.run(scenario())
    assert held.json() == {"status": "success", "balance": 1}
    assert_problem(starved, 503, "database_unavailable")
    assert starved.headers["retry-after"]
    assert 0.5 <= waited < 20


def metric_sample(text: str, name: str, **labels: str) -> float:
    """The value of one series of a Prometheus text exposition (0 if absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_transfers_and_reversals_are_counted_with_their_outcomes(client: httpx.Client) -> None:
    """docs/OPERATIONS.md, Metrics: `wallet_operations_total` has `TRANSFER` and
    `REVERSAL` series, each with its outcomes (a reversal's own: `already_reversed`)."""
    payer, payee = (
        str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"]) for _ in range(2)
    )
    funded = client.post(f"/api/v1/wallets/{payer}/operation", json=operation("DEPOSIT", 10))
    assert funded.status_code == 200, funded.text
    before = client.get("/metrics").text
    paid = client.post(
        "/api/v1/transfers",
        json={"from_wallet_uuid": payer, "to_wallet_uuid": payee, "amount": 4},
    )
    assert paid.status_code == 201, paid.text
    short = client.post(
        "/api/v1/transfers",
        json={"from_wallet_uuid": payer, "to_wallet_uuid": payee, "amount": 100},
    )
    assert_problem(short, 400, "insufficient_funds")
    refund = {"transfer_id": paid.json()["transfer_id"]}
    assert client.post("/api/v1/reversals", json=refund).status_code == 201
    assert_problem(client.post("/api/v1/reversals", json=refund), 409, "already_reversed")
    after = client.get("/metrics").text
    counted = {
        (kind, outcome): metric_sample(
            after, "wallet_operations_total", operation=kind, outcome=outcome
        )
        - metric_sample(before, "wallet_operations_total", operation=kind, outcome=outcome)
        for kind in ("TRANSFER", "REVERSAL", "DEPOSIT", "WITHDRAW")
        for outcome in ("applied", "insufficient_funds", "already_reversed")
    }
    assert {series: n for series, n in counted.items() if n} == {
        ("TRANSFER", "applied"): 1,
        ("TRANSFER", "insufficient_funds"): 1,
        ("REVERSAL", "applied"): 1,
        ("REVERSAL", "already_reversed"): 1,
    }


#: The fields docs/OPERATIONS.md ("Logs") promises on every record.
RECORD_FIELDS = {"time", "level", "logger", "message", "request_id", "pid"}


def test_every_log_record_has_time_level_logger_message_request_id_and_pid(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    """Every line the service writes in LOG_FORMAT=json, from its start to its stop, is a
    JSON object with the documented fields: Gunicorn's, Uvicorn's and the service's own
    (the access log, a 503's warning), `time` in UTC, `request_id` the request's or `-`
    outside one. Lines `wallet-api: warning: ...` are not records but the settings'
    warnings (docs/OPERATIONS.md, "The command line")."""
    service = start_service(fresh=True, LOG_FORMAT="json", DB_LOCK_TIMEOUT_MS="100")
    request_id = f"fields-{uuid.uuid4().hex}"
    with httpx.Client(base_url=service.base_url, timeout=30) as http:
        wallet = str(http.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
        assert http.post(f"/api/v1/wallets/{wallet}/operation", json={}).status_code == 422

    async def busy() -> httpx.Response:  # held past DB_LOCK_TIMEOUT_MS: 503, a warning
        async with (
            httpx.AsyncClient(base_url=service.base_url, timeout=30) as http,
            database.row_locked(wallet),
        ):
            return await http.post(
                f"/api/v1/wallets/{wallet}/operation",
                json=operation("DEPOSIT", 1),
                headers={"X-Request-ID": request_id},
            )

    assert_problem(asyncio.run(busy()), 503, "wallet_busy")
    assert service.stop() == 0
    records = []
    for line in service.log_text().splitlines():
        if line.startswith("wallet-api: warning: "):
            continue
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert set(record) >= RECORD_FIELDS, line
        assert isinstance(record["request_id"], str), line
        assert record["request_id"], line
        assert isinstance(record["pid"], int), line
        assert datetime.fromisoformat(record["time"]).utcoffset() == timedelta(0), line
        records.append(record)
    loggers = {record["logger"] for record in records}
    assert {"gunicorn.error", "uvicorn.error", "wallet_api.access"} <= loggers, loggers
    outside = [r for r in records if r["logger"] == "gunicorn.error"]
    assert all(r["request_id"] == "-" for r in outside), outside
    warned = [r for r in records if r["request_id"] == request_id and r["level"] == "warning"]
    assert warned, records


def test_log_level_warning_turns_the_access_log_off(
    start_service: Callable[..., ServiceProcess],
) -> None:
    """docs/OPERATIONS.md, Logs. By construction: one worker, one connection; a request's
    access line is written before the worker reads the next request, so once the last
    one is answered, the lines of every request before it would be in the log."""
    service = start_service(fresh=True, WORKERS_COUNT="1", LOG_LEVEL="warning")
    sent = [f"quiet-{uuid.uuid4().hex}" for _ in range(5)]
    with httpx.Client(base_url=service.base_url, timeout=30) as http:
        for request_id in sent:
            response = http.get("/health/live", headers={"X-Request-ID": request_id})
            assert response.headers["x-request-id"] == request_id
        assert http.get("/health/live").status_code == 200
    log = service.log_text()
    for request_id in sent:
        assert request_id not in log, log


def test_the_metrics_directory_is_emptied_at_start_and_removed_at_exit(
    start_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    """docs/OPERATIONS.md, Metrics: what a previous run left in PROMETHEUS_MULTIPROC_DIR
    (another process's counter, any other file) is gone when the service serves, and
    counts nothing; after a clean stop the directory is gone too."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from prometheus_client import Counter; "
            "Counter('wallet_operations_total', 'left over', ['operation', 'outcome'])"
            ".labels('DEPOSIT', 'applied').inc(1000)",
        ],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        check=True,
        timeout=60,
    )
    (directory / "left-over.txt").write_text("from an earlier run")
    stale = set(directory.iterdir())
    assert any(path.name.startswith("counter_") for path in stale), stale
    service = start_service(fresh=True, PROMETHEUS_MULTIPROC_DIR=str(directory))
    text = httpx.get(service.base_url + "/metrics", timeout=30).text
    applied = {"operation": "DEPOSIT", "outcome": "applied"}
    assert metric_sample(text, "wallet_operations_total", **applied) == 0
    assert directory.is_dir()
    assert not stale & set(directory.iterdir())
    assert service.stop() == 0
    assert not directory.exists()
