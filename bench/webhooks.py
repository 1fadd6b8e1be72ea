"""Webhooks under load (part of `make bench`). In both runs the hot wallet runs at full
speed (wrk, as in its own run) while a transfer is made every 100 ms between two other
wallets, and an endpoint that takes `transfer.created` receives them from a sender process
(`wallet-api deliver`) on a local receiver.

- The lag: from the event's time (its transaction's start, a little before its commit:
  the figure errs high) to its arrival at the receiver, once the sender has caught up
  with the feed (a first transfer delivered before the load starts).
- An outage: the receiver is down (its port refuses connections) while the load runs,
  then up; how long the backlog takes to drain, and whether every transfer's event
  arrived, at least once, each id always with the same body.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from wallet_api.devtools.server import ServiceProcess

#: Transfers a second while the hot wallet runs.
TRANSFERS_PER_SECOND = 10


class _Receiver(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True

    def __init__(self) -> None:
        self.lags: list[float] = []
        #: (the event's time, its lag) of each event received.
        self.arrivals: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                arrived = time.time()
                event = json.loads(body)
                committed = datetime.fromisoformat(event["created_at"]).timestamp()
                with receiver.lock:
                    receiver.lags.append(arrived - committed)
                    receiver.arrivals.append((committed, arrived - committed))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def add_outage_option(parser: Any) -> None:
    """The `--webhook-outage` option of the benchmarks that run `webhook_outage_run`."""
    parser.add_argument(
        "--webhook-outage",
        type=int,
        default=600,
        metavar="SECONDS",
        help="how long the webhook receiver is down under load (0: that run is skipped)",
    )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _wait_for_start(log: Path, timeout: float = 60) -> None:
    """Until the sender says it started (its imports take a while on a slow machine: the
    first events would otherwise wait for them, and that is not delivery lag)."""
    deadline = time.monotonic() + timeout
    while b"webhook sender started" not in log.read_bytes():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sender did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def _sender(environment: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    with (workdir / "sender.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "wallet_api.cli", "deliver"],
            env={
                **os.environ,
                **environment,
                "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
                "WEBHOOK_METRICS_PORT": "0",
                "LOG_LEVEL": "info",
                "LOG_FORMAT": "console",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _transfer(client: httpx.Client, wallets: tuple[str, str]) -> httpx.Response:
    """A transfer of 1 from the first of `wallets` to the second."""
    source, destination = wallets
    return client.post(
        "/api/v1/transfers",
        json={"from_wallet_uuid": source, "to_wallet_uuid": destination, "amount": 1},
    )


def _warm_up(base_url: str, wallets: tuple[str, str], receiver: _Receiver) -> None:
    """One transfer, waited for at the receiver, then forgotten: the sender that runs
    beside a service has caught up with the feed, and this one, just started, must first
    pass over the events the earlier runs wrote (hundreds of thousands, in about a second:
    not the lag of a sender that keeps up, which is what this run measures)."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        _transfer(client, wallets).raise_for_status()
    deadline = time.monotonic() + 120
    while not receiver.lags:
        if time.monotonic() > deadline:
            raise RuntimeError("the sender delivered nothing in 120 s")
        time.sleep(0.05)
    with receiver.lock:
        receiver.lags.clear()
        receiver.arrivals.clear()


class _Transfers:
    """Transfers between two wallets, TRANSFERS_PER_SECOND, in a thread, until stopped;
    the ids of those made."""

    def __init__(self, base_url: str, wallets: tuple[str, str]) -> None:
        self.made: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(base_url, wallets), daemon=True)
        self._thread.start()

    def _run(self, base_url: str, wallets: tuple[str, str]) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while not self._stop.is_set():
                response = _transfer(client, wallets)
                if response.status_code == 201:
                    self.made.append(response.json()["transfer_id"])
                time.sleep(1 / TRANSFERS_PER_SECOND)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _endpoint(base_url: str, url: str) -> str:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        made = client.post(
            "/api/v1/webhook_endpoints", json={"url": url, "types": ["transfer.created"]}
        )
        made.raise_for_status()
        return str(made.json()["id"])


def _delete_endpoint(base_url: str, endpoint_id: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.delete(f"/api/v1/webhook_endpoints/{endpoint_id}")


def webhook_lag_run(
    service: ServiceProcess,
    environment: dict[str, str],
    wallets: tuple[str, str],
    *,
    workdir: Path,
    load: Any,
) -> dict[str, Any]:
    """`load()` runs the hot wallet's wrk run and returns its figures; meanwhile transfers
    between `wallets` are made and delivered. The lag's percentiles and the load's rate."""
    receiver = _Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    endpoint_id = _endpoint(service.base_url, url)
    sender = _sender(environment, workdir)
    try:
        _wait_for_start(workdir / "sender.log")
        _warm_up(service.base_url, wallets, receiver)
        transfers = _Transfers(service.base_url, wallets)
        figures = load()
        transfers.stop()
        deadline = time.monotonic() + 30
        while len(receiver.lags) < len(transfers.made) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sender.send_signal(signal.SIGTERM)
        sender.wait(30)
        receiver.shutdown()
        receiver.server_close()
        _delete_endpoint(service.base_url, endpoint_id)
    lags = receiver.lags
    first = min((at for at, _ in receiver.arrivals), default=0.0)
    worst = sorted(receiver.arrivals, key=lambda arrival: arrival[1])[-5:]
    return {
        "hot_wallet_ops_per_s": figures["ops_per_s"],
        "transfers_sent": len(transfers.made),
        "events_delivered": len(lags),
        "lag_ms": {
            "p50": round(_percentile(lags, 0.5) * 1000, 1) if lags else None,
            "p99": round(_percentile(lags, 0.99) * 1000, 1) if lags else None,
            "max": round(max(lags) * 1000, 1) if lags else None,
        },
        # The five longest: when in the run (seconds after the first event) and how long.
        "worst": [
            {"at_s": round(at - first, 2), "lag_ms": round(lag * 1000, 1)}
            for at, lag in reversed(worst)
        ],
    }


class _Outage(ThreadingHTTPServer):
    """A receiver whose port is bound, refusing connections, until `up()`; then it records
    each event it gets: the bodies of each id, and when the last arrived."""

    request_queue_size = 256
    daemon_threads = True

    def __init__(self) -> None:
        self.bodies: dict[str, set[str]] = {}
        self.transfers: set[str] = set()
        self.requests = 0
        self.last_arrival = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event = json.loads(body)
                with receiver.lock:
                    receiver.requests += 1
                    receiver.last_arrival = time.monotonic()
                    digest = hashlib.sha256(body).hexdigest()
                    receiver.bodies.setdefault(str(event["id"]), set()).add(digest)
                    receiver.transfers.update(
                        entry["transfer_id"] for entry in event["data"]["entries"]
                    )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server_bind()  # bound, not listening: a connection is refused

    is_up = False

    def up(self) -> None:
        self.is_up = True
        self.server_activate()
        threading.Thread(target=self.serve_forever, daemon=True).start()


def webhook_outage_run(
    service: ServiceProcess,
    environment: dict[str, str],
    wallets: tuple[str, str],
    *,
    workdir: Path,
    load: Any,
    drain_timeout: float,
) -> dict[str, Any]:
    """`load()` runs the hot wallet's wrk run while the receiver is down and transfers
    between `wallets` are made; then the receiver comes up, and the run waits (at most
    `drain_timeout` seconds) until every transfer's event has arrived. The drain's time,
    and what arrived."""
    receiver = _Outage()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    started = time.monotonic()
    endpoint_id = _endpoint(service.base_url, url)
    sender = _sender(environment, workdir)
    try:
        _wait_for_start(workdir / "sender.log")
        transfers = _Transfers(service.base_url, wallets)
        figures = load()
        transfers.stop()
        made = set(transfers.made)
        down = time.monotonic() - started
        receiver.up()
        up = time.monotonic()
        deadline = up + drain_timeout
        while time.monotonic() < deadline:
            with receiver.lock:
                if made <= receiver.transfers:
                    break
            time.sleep(0.1)
        drained = receiver.last_arrival - up if made <= receiver.transfers else None
    finally:
        sender.send_signal(signal.SIGTERM)
        sender.wait(30)
        if receiver.is_up:
            receiver.shutdown()
        receiver.server_close()
        _delete_endpoint(service.base_url, endpoint_id)
    with receiver.lock:
        return {
            "receiver_down_s": round(down, 1),
            "hot_wallet_ops_per_s": figures["ops_per_s"],
            "transfers_made": len(made),
            "transfers_delivered": len(made & receiver.transfers),
            "events_received": len(receiver.bodies),
            "requests_received": receiver.requests,
            "ids_with_differing_bodies": sum(len(b) > 1 for b in receiver.bodies.values()),
            "drained_in_s": None if drained is None else round(drained, 1),
        }
