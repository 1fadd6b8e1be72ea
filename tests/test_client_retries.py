"""The Python client's retries (clients/python) against the real service, through a proxy
that makes the faults a client meets on a network: an answer lost after the request was
applied (the connection dropped), a 503 or a 429 from in front of the service, a 500
`outcome_unknown` after a real commit. A call applies once whatever the client sees, and
says how many tries it took; a refusal is never tried again. The rules themselves:
tests/unit/test_client_retry.py."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import pytest

from tests.support import TestDatabase
from wallet_api.devtools.server import ServiceProcess
from wallet_api_client import AsyncClient, Client, RetryPolicy, errors
from wallet_api_client._calls import USER_AGENT

#: Retries as fast as the rules allow, so that exhausting them takes well under a second.
QUICK = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05)

# What the proxy does with a request: forward it and relay the answer; forward it and
# drop the connection without an answer (applied, answer lost); drop it unsent; answer
# by itself (the status line and headers given, nothing forwarded); forward it, then
# answer 500 outcome_unknown instead of the service's answer.
PASS = "pass"
DROP_AFTER = "drop after"
DROP_BEFORE = "drop before"
OUTCOME_UNKNOWN = "outcome unknown after"
_UNKNOWN_BODY = (
    b'{"type":"urn:wallet-api:problem:outcome_unknown","title":"Outcome unknown",'
    b'"status":500,"detail":"The database did not confirm the commit.",'
    b'"code":"outcome_unknown"}'
)


def problem(status: int, code: str, *headers: str) -> str:
    """An answer the proxy makes itself: `status` with the problem `code`."""
    return "\r\n".join([f"answer {status} {code}", *headers])


@dataclass
class Seen:
    """A request that reached the proxy, and what was done with it."""

    method: str
    path: str
    headers: dict[str, str]
    action: str
    replayed: bool = False


@dataclass
class FaultProxy:
    """An HTTP/1.1 proxy in front of the service: each request (one a connection) gets
    the next action of `script`, then `PASS` once the script is spent."""

    upstream: str
    script: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_action(self) -> str:
        with self.lock:
            return self.script.pop(0) if self.script else PASS

    def handle(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb")
        request_line = reader.readline().decode("latin-1").rstrip("\r\n")
        if not request_line:
            return
        method, path, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        while (line := reader.readline().decode("latin-1").rstrip("\r\n")) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = reader.read(int(headers.get("content-length", "0")))
        action = self.next_action()
        seen = Seen(method, path, headers, action)
        with self.lock:
            self.seen.append(seen)
        if action == DROP_BEFORE:
            return
        if action.startswith("answer "):
            status_line, *extra = action.split("\r\n")
            _, status, code = status_line.split(" ")
            document = f'{{"status":{status},"code":"{code}","detail":"from the proxy"}}'
            self._answer(connection, int(status), extra, document.encode())
            return
        upstream = urlsplit(self.upstream)
        forward = http.client.HTTPConnection(str(upstream.hostname), upstream.port, timeout=30)
        sent = {k: v for k, v in headers.items() if k not in ("host", "connection")}
        forward.request(method, path, body=body or None, headers=sent)
        response = forward.getresponse()
        answer = response.read()
        seen.replayed = response.getheader("idempotent-replayed") == "true"
        forward.close()
        if action == DROP_AFTER:
            return
        if action == OUTCOME_UNKNOWN:
            self._answer(connection, 500, [], _UNKNOWN_BODY)
            return
        relayed = [
            f"{name}: {value}"
            for name, value in response.getheaders()
            if name.lower() not in ("connection", "transfer-encoding", "content-length")
        ]
        self._answer(connection, response.status, relayed, answer)

    @staticmethod
    def _answer(connection: socket.socket, status: int, headers: list[str], body: bytes) -> None:
        head = [
            f"HTTP/1.1 {status} {http.client.responses.get(status, 'Status')}",
            *headers,
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        if not any(h.lower().startswith("content-type:") for h in headers):
            head.append("Content-Type: application/problem+json")
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def posts(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.method == "POST"]


@pytest.fixture
def proxy(service: ServiceProcess) -> Iterator[tuple[FaultProxy, str]]:
    faults = FaultProxy(service.base_url)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            faults.handle(self.request)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield faults, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def ledger_rows(database: TestDatabase, wallet: object) -> list[dict[str, Any]]:
    return [dict(row) for row in database.ledger(str(wallet))]


def new_wallet(service: ServiceProcess, balance: int = 0) -> str:
    with Client(service.base_url) as direct:
        wallet = direct.create_wallet().wallet_uuid
        if balance:
            direct.deposit(wallet, balance)
    return str(wallet)


def test_a_deposit_whose_answer_was_lost_is_applied_once(
    proxy: tuple[FaultProxy, str],
    service: ServiceProcess,
    database: TestDatabase,
    caplog: pytest.LogCaptureFixture,
) -> None:
    faults, url = proxy
    wallet = new_wallet(service)
    faults.script = [DROP_AFTER, DROP_AFTER]
    with caplog.at_level(logging.WARNING, "wallet_api_client"), Client(url) as wallets:
        result = wallets.deposit(wallet, "12.34")
    assert result.balance == Decimal("12.34")
    assert [row["amount"] for row in ledger_rows(database, wallet)] == [1234]
    tries = faults.posts()
    assert [seen.action for seen in tries] == [DROP_AFTER, DROP_AFTER, PASS]
    assert len({seen.headers["idempotency-key"] for seen in tries}) == 1
    assert [seen.replayed for seen in tries] == [False, True, True]
    assert tries[0].headers["user-agent"] == USER_AGENT
    retries = [r.getMessage() for r in caplog.records if r.name == "wallet_api_client"]
    assert len(retries) == 2
    assert f"try 2 of {RetryPolicy().max_attempts}" in retries[0]
    assert tries[0].headers["idempotency-key"] in retries[0]


def test_a_request_that_never_reached_the_service_is_sent_again(
    proxy: tuple[FaultProxy, str], service: ServiceProcess, database: TestDatabase
) -> None:
    faults, url = proxy
    wallet = new_wallet(service, 10)
    faults.script = [DROP_BEFORE]
    with Client(url) as wallets:
        assert wallets.withdraw(wallet, 4).balance == 6
    assert [seen.action for seen in faults.posts()] == [DROP_BEFORE, PASS]
    assert [row["operation"] for row in ledger_rows(database, wallet)] == ["DEPOSIT", "WITHDRAW"]


def test_503s_are_retried_until_the_service_answers(
    proxy: tuple[FaultProxy, str], service: ServiceProcess, database: TestDatabase
) -> None:
    faults, url = proxy
    wallet = new_wallet(service)
    faults.script = [problem(503, "wallet_busy", "Retry-After: 0"), problem(503, "wallet_busy")]
    with Client(url, retry=QUICK) as wallets:
        assert wallets.deposit(wallet, 1).balance == 1
    assert len(faults.posts()) == 3
    assert len(ledger_rows(database, wallet)) == 1


def test_a_429_is_retried_after_its_retry_after(
    proxy: tuple[FaultProxy, str], service: ServiceProcess
) -> None:
    faults, url = proxy
    wallet = new_wallet(service)
    faults.script = [problem(429, "rate_limited", "Retry-After: 1")]
    with Client(url, retry=QUICK) as wallets:
        started = time.monotonic()
        assert wallets.deposit(wallet, 1).balance == 1
        assert time.monotonic() - started >= 1.0  # not before the service said
    assert len(faults.posts()) == 2


def test_an_outcome_unknown_after_a_real_commit_is_settled_by_the_retry(
    proxy: tuple[FaultProxy, str], service: ServiceProcess, database: TestDatabase
) -> None:
    faults, url = proxy
    wallet = new_wallet(service, 10)
    faults.script = [OUTCOME_UNKNOWN]
    with Client(url, retry=QUICK) as wallets:
        assert wallets.withdraw(wallet, 3).balance == 7
    assert [seen.replayed for seen in faults.posts()] == [False, True]
    assert [row["operation"] for row in ledger_rows(database, wallet)] == ["DEPOSIT", "WITHDRAW"]


def test_a_refusal_is_never_tried_again(
    proxy: tuple[FaultProxy, str], service: ServiceProcess, database: TestDatabase
) -> None:
    faults, url = proxy
    wallet = new_wallet(service, 5)
    with Client(url, retry=QUICK) as wallets, pytest.raises(errors.InsufficientFunds) as caught:
        wallets.withdraw(wallet, 6)
    assert caught.value.attempts == 1
    assert len(faults.posts()) == 1
    key = f"client-{uuid4()}"
    with Client(url, retry=QUICK) as wallets:
        wallets.deposit(wallet, 1, idempotency_key=key)
        with pytest.raises(errors.IdempotencyKeyReused) as reused:
            wallets.deposit(wallet, 2, idempotency_key=key)
    assert reused.value.attempts == 1
    assert reused.value.settled
    assert len(faults.posts()) == 3
    assert [row["amount"] for row in ledger_rows(database, wallet)] == [500, 100]


def test_retries_that_run_out_say_whether_the_outcome_is_settled(
    proxy: tuple[FaultProxy, str], service: ServiceProcess, database: TestDatabase
) -> None:
    faults, url = proxy
    wallet = new_wallet(service)
    faults.script = [problem(503, "database_unavailable")] * QUICK.max_attempts
    with Client(url, retry=QUICK) as wallets, pytest.raises(errors.DatabaseUnavailable) as busy:
        wallets.deposit(wallet, 1)
    assert (busy.value.attempts, busy.value.settled) == (QUICK.max_attempts, True)

    faults.script = [DROP_AFTER] * QUICK.max_attempts
    with Client(url, retry=QUICK) as wallets:
        with pytest.raises(errors.ConnectionFailed) as lost:
            wallets.deposit(wallet, 2)
        assert (lost.value.attempts, lost.value.settled) == (QUICK.max_attempts, False)
        assert len(ledger_rows(database, wallet)) == 1  # applied by the first try
        # Settled by sending it again with the error's key: replayed, not applied again.
        again = wallets.deposit(wallet, 2, idempotency_key=lost.value.idempotency_key)
    assert again.balance == 2
    assert faults.posts()[-1].replayed
    assert len(ledger_rows(database, wallet)) == 1

    # A 503 after a try that went unanswered does not settle the call: that try applied.
    faults.script = [DROP_AFTER] + [problem(503, "database_unavailable")] * QUICK.max_attempts
    with Client(url, retry=QUICK) as wallets:
        with pytest.raises(errors.DatabaseUnavailable) as after_a_loss:
            wallets.deposit(wallet, 3)
        assert not after_a_loss.value.settled
        assert len(ledger_rows(database, wallet)) == 2
        settled = wallets.deposit(wallet, 3, idempotency_key=after_a_loss.value.idempotency_key)
    assert settled.balance == 5
    assert len(ledger_rows(database, wallet)) == 2


def test_the_async_client_retries_alike(
    proxy: tuple[FaultProxy, str], service: ServiceProcess, database: TestDatabase
) -> None:
    faults, url = proxy
    wallet = new_wallet(service, 10)
    # The hold's answer is lost once; its capture meets a 503, then a real commit
    # answered outcome_unknown.
    faults.script = [DROP_AFTER, PASS, problem(503, "service_unavailable"), OUTCOME_UNKNOWN]

    async def capture_a_hold() -> Decimal:
        async with AsyncClient(url, retry=QUICK) as wallets:
            hold = await wallets.create_hold(wallet, 4)
            return (await wallets.capture_hold(hold.hold_id)).captured

    assert asyncio.run(capture_a_hold()) == 4
    kinds = [row["operation"] for row in ledger_rows(database, wallet)]
    assert kinds == ["DEPOSIT", "HOLD", "CAPTURE"]
    assert [seen.action for seen in faults.posts()][-3:] == [
        problem(503, "service_unavailable"),
        OUTCOME_UNKNOWN,
        PASS,
    ]
    assert [seen.replayed for seen in faults.posts()] == [False, True, False, False, True]
