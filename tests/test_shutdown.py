"""SIGTERM drains: requests in flight when it arrives are answered and stored, what was
acknowledged is stored, nothing is applied after an error response, nothing is
half-applied."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
import uuid
from collections.abc import Callable

import httpx

from tests.faults import wait_for_backends
from tests.support import TestDatabase, assert_ledger_consistent, operation, queued_operations
from wallet_api.devtools.server import ServiceProcess

BURST = 300


def test_sigterm_during_a_burst_keeps_every_acknowledged_operation(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    service = start_service(fresh=True)
    wallet = str(
        httpx.post(f"{service.base_url}/api/v1/wallets/create_wallet").json()["wallet_uuid"]
    )
    keys = [f"drain-{uuid.uuid4()}" for _ in range(BURST)]

    async def burst() -> list[httpx.Response | BaseException]:
        limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=service.base_url, limits=limits, timeout=60
        ) as client:
            tasks = [
                asyncio.create_task(
                    client.post(
                        f"/api/v1/wallets/{wallet}/operation",
                        json=operation("DEPOSIT", 1),
                        headers={"Idempotency-Key": key},
                    )
                )
                for key in keys
            ]
            # Signal once the burst is under way: some answered, most still in flight.
            deadline = asyncio.get_running_loop().time() + 30
            while sum(task.done() for task in tasks) < BURST // 10:
                assert asyncio.get_running_loop().time() < deadline, "the burst never started"
                await asyncio.sleep(0.002)
            service.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(burst())
    assert service.process.wait(timeout=60) == 0, service.log_text()[-3000:]

    acknowledged = {k for k, r in zip(keys, outcomes, strict=True) if _status(r) == 200}
    answered_otherwise = {
        k for k, r in zip(keys, outcomes, strict=True) if _status(r) not in (None, 200)
    }
    cut_off = {k for k, r in zip(keys, outcomes, strict=True) if _status(r) is None}
    stored = {
        row["idempotency_key"]
        for row in database.fetch(
            "SELECT idempotency_key FROM wallet_operations WHERE wallet_id = $1", uuid.UUID(wallet)
        )
    }
    assert len(acknowledged) >= BURST // 10
    assert acknowledged <= stored, "an acknowledged operation was lost"
    assert stored <= acknowledged | cut_off, "an operation was applied after an error response"
    assert not stored & answered_otherwise
    assert len(assert_ledger_consistent(database, wallet)) == len(stored)


def test_requests_in_flight_at_sigterm_are_completed_and_answered(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    """Every request is held in flight by a row lock of the test's when SIGTERM arrives
    (so none can have finished before it); the lock is released a second later. A drain
    answers them all and stores them all; a kill, or no drain, answers none."""
    # One operation per batch: each worker has exactly one in flight (blocked on the lock)
    # and the rest queued, so the test can count that every request has arrived.
    service = start_service(fresh=True, COALESCING_MAX_BATCH="1")
    wallet = str(
        httpx.post(f"{service.base_url}/api/v1/wallets/create_wallet").json()["wallet_uuid"]
    )
    keys = [f"held-{uuid.uuid4()}" for _ in range(40)]

    def arrived() -> int:
        in_flight = len(wait_for_backends(database, wait_event_type="Lock", timeout=30))
        return in_flight + queued_operations(service)

    async def held_at_sigterm() -> list[httpx.Response | BaseException]:
        limits = httpx.Limits(max_connections=len(keys), max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=service.base_url, limits=limits, timeout=60
        ) as client:
            async with database.row_locked(wallet):
                tasks = [
                    asyncio.create_task(
                        client.post(
                            f"/api/v1/wallets/{wallet}/operation",
                            json=operation("DEPOSIT", 1),
                            headers={"Idempotency-Key": key},
                        )
                    )
                    for key in keys
                ]
                deadline = asyncio.get_running_loop().time() + 30
                while await asyncio.to_thread(arrived) < len(keys):
                    assert asyncio.get_running_loop().time() < deadline, "requests missing"
                    await asyncio.sleep(0.2)
                assert not any(task.done() for task in tasks)
                service.process.send_signal(signal.SIGTERM)
                await asyncio.sleep(1.0)  # draining, still held
                assert not any(task.done() for task in tasks)
            return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(held_at_sigterm())
    assert service.process.wait(timeout=60) == 0, service.log_text()[-3000:]
    assert [_status(outcome) for outcome in outcomes] == [200] * len(keys), outcomes
    balances = sorted(
        int(outcome.json()["balance"])
        for outcome in outcomes
        if isinstance(outcome, httpx.Response)
    )
    assert balances == list(range(1, len(keys) + 1))
    stored = {
        row["idempotency_key"]
        for row in database.fetch(
            "SELECT idempotency_key FROM wallet_operations WHERE wallet_id = $1", uuid.UUID(wallet)
        )
    }
    assert stored == set(keys)
    assert_ledger_consistent(database, wallet)


def test_a_request_not_read_at_sigterm_gets_a_closed_connection_and_is_not_applied(
    start_service: Callable[..., ServiceProcess], database: TestDatabase
) -> None:
    """Requests the server had not read when SIGTERM arrived, on connections it had
    accepted (each answered a request first): two deposits whose bodies were still
    arriving (the server asked for them with `100 Continue`; each client sent a whole JSON
    object, but not the rest its Content-Length promised), one client then giving up, the
    other waiting; and a deposit sent on an idle kept-alive connection once the drain
    began. Each gets a closed connection (no HTTP answer) and none is applied; the drain
    waits for the waiting client no longer than GRACEFUL_TIMEOUT. Nothing here is timed:
    the drain is seen begun when new connections are refused."""
    service = start_service(fresh=True, GRACEFUL_TIMEOUT="3")
    wallet = str(
        httpx.post(f"{service.base_url}/api/v1/wallets/create_wallet").json()["wallet_uuid"]
    )
    path = f"/api/v1/wallets/{wallet}/operation"
    abandoned, waiting, idle = (_accepted(service) for _ in range(3))
    for connection in (abandoned, waiting):
        _send_partial(connection, path, b'{"operation": "DEPOSIT", "amount": 5}', missing=16)

    service.process.send_signal(signal.SIGTERM)
    try:
        deadline = time.monotonic() + 30
        while _accepts(service):  # every worker has stopped accepting: the drain has begun
            assert time.monotonic() < deadline, "new connections still accepted"
            time.sleep(0.05)

        assert _answer(idle) == b""  # the idle connection is closed
        key = f"unread-{uuid.uuid4()}"
        body = b'{"operation": "DEPOSIT", "amount": 7}'
        with contextlib.suppress(OSError):  # the peer may have reset it already
            idle.sendall(_request(path, body, len(body), key=key))
        assert _answer(idle) == b""
        abandoned.shutdown(socket.SHUT_WR)  # the client gives up on the rest of its body
        assert _answer(abandoned) == b""
        assert _answer(waiting) == b""  # closed by the server, GRACEFUL_TIMEOUT after SIGTERM
        assert service.process.wait(timeout=20) == 0, service.log_text()[-3000:]
    finally:  # a server that does not drain is killed, not waited for (30 s) by stop()
        if service.process.poll() is None:
            service.process.kill()
    for connection in (abandoned, waiting, idle):
        connection.close()

    assert database.ledger(wallet) == []
    assert database.stored_balance(wallet) == 0
    assert not database.fetch("SELECT 1 FROM idempotency_keys WHERE key = $1", key)
    # A client gone before its body was read is an ordinary event, not an error of ours.
    assert "Traceback" not in service.log_text(), service.log_text()[-3000:]


def _accepted(service: ServiceProcess) -> socket.socket:
    """A connection that a worker has accepted and served once: kept alive, idle."""
    # Each read waits for at most GRACEFUL_TIMEOUT (3 s) when the drain works.
    connection = socket.create_connection(("127.0.0.1", service.port), timeout=15)
    connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: wallet-api\r\n\r\n")
    received = b""
    while not received.endswith(b'{"status":"ok"}'):
        chunk = connection.recv(65536)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200 "), received
    return connection


def _request(path: str, body: bytes, length: int, *, key: str | None = None) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: wallet-api\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n"
    )
    if key is not None:
        head += f"Idempotency-Key: {key}\r\n"
    return (head + "\r\n").encode() + body


def _send_partial(connection: socket.socket, path: str, body: bytes, *, missing: int) -> None:
    """A plain deposit, its body short of its Content-Length by `missing` bytes, sent once
    the server is reading it: its headers ask `Expect: 100-continue`, and the server says
    `100 Continue` when the application first asks for the body."""
    head = _request(path, b"", len(body) + missing)
    connection.sendall(head[: -len(b"\r\n")] + b"Expect: 100-continue\r\n\r\n")
    interim = b""
    while not interim.endswith(b"\r\n\r\n"):
        chunk = connection.recv(1)
        assert chunk, interim
        interim += chunk
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim
    connection.sendall(body)


def _accepts(service: ServiceProcess) -> bool:
    try:
        socket.create_connection(("127.0.0.1", service.port), timeout=5).close()
    except OSError:
        return False
    return True


def _answer(connection: socket.socket) -> bytes:
    """Whatever the server sends until it closes the connection (b"": no answer)."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _status(outcome: httpx.Response | BaseException) -> int | None:
    return outcome.status_code if isinstance(outcome, httpx.Response) else None
