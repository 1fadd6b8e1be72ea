"""Start-up and failure behaviour: bad settings fail fast, a missing database is a 503."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from tests.support import ROOT
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
