"""Webhook delivery lag under load (part of `make bench`): the hot wallet at full speed
(wrk, as in its own run) while a transfer is made every 100 ms between two other wallets,
and an endpoint that takes `transfer.created` receives them from a sender process
(`wallet-api deliver`) on a local receiver. Lag: from the event's time (its transaction's
start, a little before its commit: the figure errs high) to its arrival at the receiver."""

from __future__ import annotations

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
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


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
    with httpx.Client(base_url=service.base_url, timeout=30) as client:
        made = client.post(
            "/api/v1/webhook_endpoints", json={"url": url, "types": ["transfer.created"]}
        )
        made.raise_for_status()
        endpoint_id = made.json()["id"]
    log = (workdir / "sender.log").open("wb")
    sender = subprocess.Popen(
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
    stop = threading.Event()
    sent = [0]

    def transfers() -> None:
        source, destination = wallets
        with httpx.Client(base_url=service.base_url, timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    "/api/v1/transfers",
                    json={"from_wallet_uuid": source, "to_wallet_uuid": destination, "amount": 1},
                )
                if response.status_code == 201:
                    sent[0] += 1
                time.sleep(1 / TRANSFERS_PER_SECOND)

    try:
        _wait_for_start(workdir / "sender.log")
        maker = threading.Thread(target=transfers, daemon=True)
        maker.start()
        figures = load()
        stop.set()
        maker.join()
        deadline = time.monotonic() + 30
        while len(receiver.lags) < sent[0] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sender.send_signal(signal.SIGTERM)
        sender.wait(30)
        log.close()
        receiver.shutdown()
        receiver.server_close()
        with httpx.Client(base_url=service.base_url, timeout=30) as client:
            client.delete(f"/api/v1/webhook_endpoints/{endpoint_id}")
    lags = receiver.lags
    return {
        "hot_wallet_ops_per_s": figures["ops_per_s"],
        "transfers_sent": sent[0],
        "events_delivered": len(lags),
        "lag_ms": {
            "p50": round(_percentile(lags, 0.5) * 1000, 1) if lags else None,
            "p99": round(_percentile(lags, 0.99) * 1000, 1) if lags else None,
            "max": round(max(lags) * 1000, 1) if lags else None,
        },
    }
