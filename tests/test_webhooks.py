"""Webhooks over HTTP, against real PostgreSQL, the service (Gunicorn, 2 workers), sender
processes (`wallet-api deliver`) and receivers listening on loopback: each event signed
and sent to the endpoints of its owner that take its type; failures retried with backoff,
a Retry-After honoured, attempts capped, a failing endpoint disabled, every attempt
readable; refused connections, time-outs and redirects are failures; private addresses
refused unless allowed; two senders never send one attempt twice, and a sender killed
mid-send loses nothing; endpoints are their owner's alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    EVERY_SCOPE,
    OPERATION_PATH,
    ROOT,
    TestDatabase,
    create_key,
    operation,
)
from wallet_api.devtools.server import ServiceProcess
from wallet_api_client.webhooks import InvalidSignature, verify

ENDPOINTS = "/api/v1/webhook_endpoints"
EVENTS = "/api/v1/events"
#: A sender's settings in these tests: loopback receivers, quick retries and time-outs.
SENDER = {
    "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
    "WEBHOOK_BACKOFF_SECONDS": "0.1",
    "WEBHOOK_TIMEOUT_SECONDS": "1",
    "WEBHOOK_METRICS_PORT": "0",
    "LOG_LEVEL": "info",
}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


#: What a receiver answers the n-th request it gets (from 0): status, headers, seconds to
#: wait first.
Answer = Callable[[int, Received], tuple[int, dict[str, str], float]]


@dataclass
class Receiver:
    """An HTTP server on loopback recording every request it gets."""

    answer: Answer
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(each.body) for each in self.got]

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= count:
                return events
            time.sleep(0.05)
        raise AssertionError(f"{len(self.events())} requests received, {count} expected")


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # a sender opens many connections at once (the default: 5)


@pytest.fixture
def receivers() -> Iterator[Callable[[Answer], Receiver]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> Receiver:
        receiver = Receiver(answer)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:
                    return  # its sender was gone before the body arrived: no delivery
                got = Received(dict(self.headers), body, time.time())
                with receiver.lock:
                    number = len(receiver.got)
                    receiver.got.append(got)
                status, headers, delay = receiver.answer(number, got)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *_: Any) -> None:
                pass

        server = _Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        receiver.server = server
        servers.append(server)
        return receiver

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def always(status: int = 200, **headers: str) -> Answer:
    return lambda _n, _r: (status, headers, 0)


@dataclass
class Sender:
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def senders(database: TestDatabase, tmp_path: Path) -> Iterator[Callable[..., Sender]]:
    started: list[Sender] = []

    def start(**settings: str) -> Sender:
        log = tmp_path / f"sender-{len(started)}.log"
        environment = {**os.environ, **database.environment(), **SENDER, **settings}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "wallet_api.cli", "deliver"],
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        sender = Sender(process, log)
        started.append(sender)
        return sender

    yield start
    for sender in started:
        sender.stop()


@pytest.fixture(scope="module")
def keyed(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service(AUTH_MODE="keys", RATE_LIMIT_RATE="100000", RATE_LIMIT_BURST="100000")


def owner(service: ServiceProcess, database: TestDatabase) -> httpx.Client:
    key = create_key(database, f"hooks-{uuid.uuid4().hex[:12]}", *EVERY_SCOPE)
    return httpx.Client(base_url=service.base_url, timeout=30, headers=key.headers)


def endpoint(client: httpx.Client, url: str, **extra: Any) -> dict[str, Any]:
    response = client.post(ENDPOINTS, json={"url": url, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def wallet(client: httpx.Client, deposit: object = 0) -> str:
    made = str(client.post("/api/v1/wallets/create_wallet").json()["wallet_uuid"])
    if deposit:
        response = client.post(OPERATION_PATH.format(made), json=operation("DEPOSIT", deposit))
        assert response.status_code == 200, response.text
    return made


def tries(client: httpx.Client, event_id: int) -> list[dict[str, Any]]:
    response = client.get(f"{EVENTS}/{event_id}/deliveries")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def settled(client: httpx.Client, event_id: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The event's deliveries once none is pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = tries(client, event_id)
        if items and all(item["status"] != "pending" for item in items):
            return items
        time.sleep(0.1)
    raise AssertionError(f"still pending: {tries(client, event_id)}")


def test_each_event_is_sent_signed_to_the_endpoints_that_take_it(
    keyed: ServiceProcess,
    database: TestDatabase,
    receivers: Callable[[Answer], Receiver],
    senders: Callable[..., Sender],
) -> None:
    everything, transfers = receivers(always()), receivers(always())
    senders()
    with owner(keyed, database) as alice, owner(keyed, database) as bob:
        all_hook = endpoint(alice, everything.url, description="all")
        endpoint(alice, transfers.url, types=["transfer.created"])
        bobs = receivers(always())
        endpoint(bob, bobs.url)
        payer = wallet(alice, 10)
        payee = wallet(bob)
        assert alice.post(
            "/api/v1/transfers",
            json={"from_wallet_uuid": payer, "to_wallet_uuid": payee, "amount": 4},
        ).is_success
        # Deliveries go out concurrently: they arrive in any order (a receiver orders them
        # by id, and a wallet's by `seq`).
        got = sorted(everything.wait_for(3), key=lambda event: event["id"])
        assert [event["type"] for event in got] == [
            "wallet.created",
            "operation.applied",
            "transfer.created",
        ]
        assert [event["type"] for event in transfers.wait_for(1)] == ["transfer.created"]
        # Bob's endpoint: his wallet, and his side of the transfer, nothing of Alice's.
        bob_got = sorted(bobs.wait_for(2), key=lambda event: event["id"])
        assert [event["type"] for event in bob_got] == ["wallet.created", "transfer.created"]
        assert [e["operation"] for e in bob_got[1]["data"]["entries"]] == ["TRANSFER_IN"]
        time.sleep(0.5)  # nothing more comes
        assert (len(everything.got), len(transfers.got), len(bobs.got)) == (3, 1, 2)
        for received in everything.got:
            event = verify(all_hook["secret"], received.headers["Wallet-Signature"], received.body)
            assert received.headers["Wallet-Event-Id"] == str(event["id"])
            # The event as the feed shows it.
            assert alice.get(f"{EVENTS}/{event['id']}").json() == event
            with pytest.raises(InvalidSignature):
                verify(
                    all_hook["secret"], received.headers["Wallet-Signature"], received.body + b" "
                )
            with pytest.raises(InvalidSignature):
                verify("whsec_another", received.headers["Wallet-Signature"], received.body)
            with pytest.raises(InvalidSignature):  # a replay, 6 minutes later
                verify(
                    all_hook["secret"],
                    received.headers["Wallet-Signature"],
                    received.body,
                    now=received.at + 360,
                )
        # The README's receiver, as written, accepts these deliveries and refuses a change.
        readme = (ROOT / "README.md").read_text()
        (snippet,) = [
            block.split("```", 1)[0]
            for block in readme.split("```python\n")[1:]
            if "def receive(" in block
        ]
        receiver: dict[str, Any] = {}
        exec(snippet, receiver)  # noqa: S102 (the README's own code)
        for received in everything.got:
            secret = all_hook["secret"]
            assert receiver["receive"](secret, received.headers, received.body) == 204
            assert receiver["receive"](secret, received.headers, received.body + b" ") == 400
            assert receiver["receive"](secret, {}, received.body) == 400
        # Every attempt is on record.
        first = everything.events()[0]["id"]
        (delivery,) = [d for d in tries(alice, first) if d["endpoint_id"] == all_hook["id"]]
        assert delivery["status"] == "succeeded"
        assert [t["status_code"] for t in delivery["tries"]] == [200]


def test_failures_are_retried_with_backoff_honouring_retry_after(
    keyed: ServiceProcess,
    database: TestDatabase,
    receivers: Callable[[Answer], Receiver],
    senders: Callable[..., Sender],
) -> None:
    script = [(500, {}), (503, {}), (429, {"Retry-After": "2"}), (200, {})]
    flaky = receivers(lambda n, _: (*script[min(n, 3)], 0))
    senders()
    with owner(keyed, database) as alice:
        endpoint(alice, flaky.url)
        wallet(alice)
        got = flaky.wait_for(4)
        assert len({event["id"] for event in got}) == 1
        (delivery,) = settled(alice, got[0]["id"])
    assert delivery["status"] == "succeeded"
    assert [t["status_code"] for t in delivery["tries"]] == [500, 503, 429, 200]
    assert [t["error"] for t in delivery["tries"]] == [
        "answered 500",
        "answered 503",
        "answered 429",
        None,
    ]
    # The receiver asked for 2 seconds: the next attempt did not come sooner.
    assert flaky.got[3].at - flaky.got[2].at >= 2


def test_an_endpoint_back_from_an_outage_gets_its_waiting_deliveries_at_once(
    keyed: ServiceProcess,
    database: TestDatabase,
    receivers: Callable[[Answer], Receiver],
    senders: Callable[..., Sender],
) -> None:
    # The first event fails, and waits 5 to 10 minutes for its retry; the second is
    # refused with a Retry-After of 10 minutes; the third is answered slowly; the fourth at
    # once. That success brings the first again at once; not the second (its receiver asked
    # to wait), nor the third, still on its way (never sent twice at once).
    script: dict[int, tuple[int, dict[str, str], float]] = {
        0: (503, {}, 0.0),
        1: (429, {"Retry-After": "600"}, 0.0),
        2: (200, {}, 3.0),
    }
    receiver = receivers(lambda n, _: script.get(n, (200, {}, 0.0)))
    senders(WEBHOOK_BACKOFF_SECONDS="600", WEBHOOK_TIMEOUT_SECONDS="10")
    with owner(keyed, database) as alice:
        endpoint(alice, receiver.url)
        for made in range(1, 5):
            wallet(alice)
            receiver.wait_for(made)
        # The first four requests (the first event's second try may follow at once).
        first, asked_to_wait, slow, _ = (event["id"] for event in receiver.events()[:4])
        got = receiver.wait_for(5, timeout=20)
        assert got[4]["id"] == first
        (delivery,) = settled(alice, first)
        assert [t["status_code"] for t in delivery["tries"]] == [503, 200]
        (delivery,) = settled(alice, slow)
        assert [t["status_code"] for t in delivery["tries"]] == [200]
        (delivery,) = tries(alice, asked_to_wait)
        assert delivery["status"] == "pending"
        assert [t["status_code"] for t in delivery["tries"]] == [429]
    sent = [event["id"] for event in receiver.events()]
    assert (sent.count(slow), sent.count(asked_to_wait)) == (1, 1)


def test_refusals_time_outs_and_redirects_fail_and_attempts_stop_at_the_cap(
    keyed: ServiceProcess,
    database: TestDatabase,
    receivers: Callable[[Answer], Receiver],
    senders: Callable[..., Sender],
) -> None:
    target = receivers(always())
    slow = receivers(lambda _n, _r: (200, {}, 3))
    moved = receivers(always(302, Location=target.url))
    closed = receivers(always())
    assert closed.server is not None
    closed_url = closed.url
    closed.server.shutdown()
    closed.server.server_close()
    # Attempts at 0 s, 0.2-0.4 s, then 0.6 s or later: the third fails after 0.5 s of failing.
    senders(
        WEBHOOK_MAX_ATTEMPTS="3",
        WEBHOOK_BACKOFF_SECONDS="0.4",
        WEBHOOK_DISABLE_AFTER_SECONDS="0.5",
    )
    with owner(keyed, database) as alice:
        hooks = {
            "refused": endpoint(alice, closed_url),
            "slow": endpoint(alice, slow.url),
            "redirect": endpoint(alice, moved.url),
        }
        wallet(alice)
        (event,) = alice.get(EVENTS).json()["items"]
        deliveries = {d["endpoint_id"]: d for d in settled(alice, event["id"], timeout=60)}
        for name, hook in hooks.items():
            delivery = deliveries[hook["id"]]
            assert delivery["status"] == "failed", name
            assert delivery["attempts"] == 3, name
            # Until the endpoint is disabled (then the delivery is failed without a send).
            sent = [t for t in delivery["tries"] if t["error"] != "the endpoint is disabled"]
            errors = {t["error"] for t in sent}
            statuses = {t["status_code"] for t in sent}
            if name == "refused":
                assert statuses == {None}
                assert all("ConnectError" in e for e in errors)
            elif name == "slow":
                assert (statuses, errors) == ({None}, {"timed out"})
            else:
                assert (statuses, errors) == ({302}, {"a redirect (never followed)"})
        assert target.got == []  # the redirect was never followed
        # Failing for longer than WEBHOOK_DISABLE_AFTER_SECONDS: disabled.
        listed = {e["id"]: e for e in alice.get(ENDPOINTS).json()["items"]}
        assert {listed[hook["id"]]["status"] for hook in hooks.values()} == {"disabled"}
        # Enabled again by its owner, its failures forgotten.
        again = alice.patch(f"{ENDPOINTS}/{hooks['slow']['id']}", json={"status": "enabled"})
        assert again.json()["status"] == "enabled"
        assert again.json()["failing_since"] is None


def test_private_addresses_are_refused_unless_allowed(
    keyed: ServiceProcess,
    database: TestDatabase,
    receivers: Callable[[Answer], Receiver],
    senders: Callable[..., Sender],
) -> None:
    inside = receivers(always())
    senders(WEBHOOK_ALLOW_PRIVATE_ADDRESSES="false", WEBHOOK_MAX_ATTEMPTS="1")
    with owner(keyed, database) as alice:
        endpoint(alice, inside.url.replace("127.0.0.1", "localhost"))
        wallet(alice)
        (event,) = alice.get(EVENTS).json()["items"]
        (delivery,) = settled(alice, event["id"])
    assert delivery["status"] == "failed"
    (attempt,) = delivery["tries"]
    assert "private or special address" in attempt["error"]
    assert inside.got == []


def test_senders_share_the_work_and_a_killed_one_loses_nothing(
    keyed: ServiceProcess,
    database: TestDatabase,
    receivers: Callable[[Answer], Receiver],
    senders: Callable[..., Sender],
) -> None:
    """Two senders while 100 events are made: each delivery's attempts are exactly the
    requests its receiver got (no attempt sent twice). Then one sender is killed (-9)
    while its requests are on their way: the other sends them again once their lease
    ends, and every event arrives."""
    quick = receivers(always())
    first, second = senders(), senders()
    with owner(keyed, database) as alice:
        endpoint(alice, quick.url)
        made = wallet(alice)
        for _ in range(99):
            assert alice.post(OPERATION_PATH.format(made), json=operation("DEPOSIT", 1)).is_success
        got = quick.wait_for(100)
        time.sleep(0.5)
        received = [event["id"] for event in quick.events()]
        assert sorted(received) == sorted(set(received))  # none twice
        (attempts,) = database.fetch(
            "SELECT sum(d.attempts) AS claimed, "
            "(SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries e "
            " ON e.id = a.delivery_id WHERE e.endpoint_id = w.id) AS sent "
            "FROM webhook_deliveries d JOIN webhook_endpoints w "
            "ON w.id = d.endpoint_id WHERE w.url = $1 GROUP BY w.id",
            quick.url,
        )
        assert attempts["claimed"] == attempts["sent"] == len(got) == 100

        # The kill: a receiver that holds every request 0.8 s; one sender, killed while its
        # requests wait there.
        second.stop()
        held = receivers(lambda _n, _r: (200, {}, 0.8))
        endpoint(alice, held.url, types=["operation.applied"])
        for _ in range(10):
            assert alice.post(OPERATION_PATH.format(made), json=operation("DEPOSIT", 1)).is_success
        held.wait_for(1)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        senders()
        deadline = time.monotonic() + 60
        while len({event["id"] for event in held.events()}) < 10:
            assert time.monotonic() < deadline, held.events()
            time.sleep(0.1)


def test_endpoints_are_their_owners_alone_and_bounded(
    keyed: ServiceProcess,
    database: TestDatabase,
    receivers: Callable[[Answer], Receiver],
    senders: Callable[..., Sender],
) -> None:
    with owner(keyed, database) as alice, owner(keyed, database) as bob:
        hook = endpoint(alice, "https://example.com/hook", types=["hold.captured"])
        assert hook["secret"].startswith("whsec_")
        assert hook["status"] == "enabled"
        path = f"{ENDPOINTS}/{hook['id']}"
        shown = alice.get(path).json()
        assert "secret" not in shown
        assert [e["id"] for e in alice.get(ENDPOINTS).json()["items"]] == [hook["id"]]
        assert bob.get(ENDPOINTS).json()["items"] == []
        for method in ("GET", "PATCH", "DELETE"):
            refused = bob.request(method, path, json={} if method == "PATCH" else None)
            assert refused.status_code == 404, method
            assert refused.json()["code"] == "webhook_endpoint_not_found"
        changed = alice.patch(path, json={"types": None, "description": "all now"}).json()
        assert (changed["types"], changed["description"], changed["url"]) == (
            None,
            "all now",
            "https://example.com/hook",
        )
        for bad in (
            {"url": "ftp://example.com/hook"},
            {"url": "https://user:pw@example.com/"},
            {"url": "https:///nohost"},
            {"url": "https://example.com/", "types": ["wallet.deleted"]},
            {"url": "https://example.com/", "types": ["hold.voided", "hold.voided"]},
            {"url": "https://example.com/", "colour": "red"},
        ):
            response = alice.post(ENDPOINTS, json=bad)
            assert response.status_code == 422, (bad, response.text)
        for _ in range(15):
            endpoint(alice, "https://example.com/more")
        over = alice.post(ENDPOINTS, json={"url": "https://example.com/one-more"})
        assert (over.status_code, over.json()["code"]) == (422, "too_many_webhook_endpoints")
        assert alice.delete(path).status_code == 204
        assert alice.get(path).status_code == 404


def test_an_event_is_sent_again_on_request(
    keyed: ServiceProcess,
    database: TestDatabase,
    receivers: Callable[[Answer], Receiver],
    senders: Callable[..., Sender],
) -> None:
    hooked = receivers(always())
    senders()
    with owner(keyed, database) as alice, owner(keyed, database) as bob:
        hook = endpoint(alice, hooked.url)
        wallet(alice)
        (event,) = hooked.wait_for(1)
        again = alice.post(f"{EVENTS}/{event['id']}/redeliver", json={"endpoint_id": hook["id"]})
        assert again.status_code == 202, again.text
        (made,) = again.json()["items"]
        assert made["status"] == "pending"
        first, second = hooked.wait_for(2)
        assert first == second
        assert len(settled(alice, event["id"])) == 2
        for path in (f"{EVENTS}/{event['id']}/deliveries", f"{EVENTS}/{event['id']}/redeliver"):
            foreign = bob.request("GET" if path.endswith("s") else "POST", path, json={})
            assert foreign.status_code == 404
            assert foreign.json()["code"] == "event_not_found"
