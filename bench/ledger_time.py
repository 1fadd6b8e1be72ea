"""The ledger in time on a long ledger (`python -m bench.ledger_time`, on its own:
`make bench` does not run it): a wallet of 1,000,000 entries (written by SQL, dated a
second apart, balances that add up), then, one request at a time, the latency of a balance
at a random time, of a history page filtered by kind within a random time window, of one
bounded by time alone, of a page of a kind the ledger lacks (it examines its 2,000
entries), and of the entries of a random order (by a metadata key and value); then the
whole statement streamed in CSV and in JSON: entries a second, and how much the service's
memory grew meanwhile (its workers' resident sets, sampled)."""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.hot_wallet import (
    PROJECT_DIR,
    Bench,
    machine,
    postgres_server,
    running_service,
)
from wallet_api.devtools.postgres import drop_database, ensure_database
from wallet_api.devtools.server import ServiceProcess, run_alembic

#: Entries of the long wallet.
ENTRIES = 1_000_000
#: Requests per latency run.
REQUESTS = 1_000
#: The first entry's time; each next one a second later.
START = datetime(2026, 1, 1, tzinfo=UTC)


def seed(bench: Bench, entries: int) -> str:
    """A wallet of `entries` rows: every 10th a withdrawal of 1.00, the others deposits of
    1.00, dated a second apart from START; each with metadata, an order id (4 entries an
    order) and a channel."""
    wallet = str(uuid.uuid4())
    bench.sql(
        """
        WITH wallet AS (
            INSERT INTO wallets (id, currency, currency_exponent, balance, seq, last_entry_at)
            VALUES ($1::uuid, 'USD', 2, 100 * ($2 - 2 * ($2 / 10)), $2,
                    $3::timestamptz + $2 * interval '1 second')
        )
        INSERT INTO wallet_operations (
            wallet_id, operation, amount, balance_after, created_at, seq, metadata
        )
        SELECT $1::uuid, CASE WHEN g % 10 = 0 THEN 'WITHDRAW' ELSE 'DEPOSIT' END, 100,
               100 * (g - 2 * (g / 10)), $3::timestamptz + g * interval '1 second', g,
               jsonb_build_object(
                   'order_id', (g / 4)::text,
                   'channel', CASE WHEN g % 3 = 0 THEN 'app' ELSE 'web' END
               )
        FROM generate_series(1, $2::bigint) AS g
        """,
        wallet,
        entries,
        START,
    )
    bench.sql("ANALYZE wallet_operations")
    return wallet


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 2)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1] * 1000, 2)}


def latencies(
    client: httpx.Client, requests: int, request: Callable[[random.Random], httpx.Response]
) -> dict[str, Any]:
    """`requests` requests one after another (after 50 unmeasured): their latency."""
    rng = random.Random(23)
    measured: list[float] = []
    for n in range(requests + 50):
        began = time.perf_counter()
        response = request(rng)
        took = time.perf_counter() - began
        assert response.status_code == 200, response.text
        if n >= 50:
            measured.append(took)
    return {"requests": requests, "latency_ms": _percentiles(measured)}


def _resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _workers(service: ServiceProcess) -> list[int]:
    children = Path(f"/proc/{service.process.pid}/task/{service.process.pid}/children")
    return [int(pid) for pid in children.read_text().split()]


def streamed(
    client: httpx.Client, service: ServiceProcess, path: str, **params: str
) -> dict[str, Any]:
    """A statement read to its end: its size, entries a second, and the largest growth of
    any worker's resident set while it was sent."""
    workers = _workers(service)
    before = {pid: _resident_kib(pid) for pid in workers}
    peak = dict(before)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid in workers:
                peak[pid] = max(peak[pid], _resident_kib(pid))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    size = 0
    lines = 0
    # What marks an entry: a CSV line's end, a JSON entry's first key (counted across the
    # chunks' edges: the last few bytes of one go before the next).
    mark = b"\n" if params.get("format") == "csv" else b'{"id":'
    tail = b""
    began = time.perf_counter()
    try:
        with client.stream("GET", path, params=params) as response:
            assert response.status_code == 200, response.read()
            for chunk in response.iter_bytes():
                size += len(chunk)
                joined = tail + chunk
                lines += joined.count(mark)
                tail = joined[1 - len(mark) :] if len(mark) > 1 else b""
    finally:
        done.set()
        watcher.join()
    took = time.perf_counter() - began
    entries = lines - 3 if params.get("format") == "csv" else lines  # header, opening, closing
    return {
        "entries": entries,
        "bytes": size,
        "seconds": round(took, 2),
        "entries_per_s": round(entries / took),
        "worker_memory_growth_mib": round(
            max(peak[pid] - before[pid] for pid in workers) / 1024, 1
        ),
    }


def measure(bench: Bench, *, entries: int, requests: int) -> dict[str, Any]:
    """The runs on a wallet of `entries` entries (its own service)."""
    wallet = seed(bench, entries)
    span = entries  # seconds between the first entry and the last

    def at(rng: random.Random) -> str:
        return (START + timedelta(seconds=rng.uniform(0, span))).isoformat()

    def window(rng: random.Random) -> dict[str, str]:
        since = START + timedelta(seconds=rng.uniform(0, span - 3600))
        return {"from": since.isoformat(), "to": (since + timedelta(hours=1)).isoformat()}

    results: dict[str, Any] = {"entries": entries}
    with (
        running_service(bench) as service,
        httpx.Client(base_url=service.base_url, timeout=600) as client,
    ):
        history = f"/api/v1/wallets/{wallet}/operations"
        print("bench: ledger in time, a balance at a time", file=sys.stderr)
        results["balance_at_a_time"] = latencies(
            client,
            requests,
            lambda rng: client.get(f"/api/v1/wallets/{wallet}", params={"at": at(rng)}),
        )
        print("bench: ledger in time, history pages", file=sys.stderr)
        results["history_by_kind_in_an_hour"] = latencies(
            client,
            requests,
            lambda rng: client.get(history, params={"operation": "WITHDRAW", **window(rng)}),
        )
        results["history_in_an_hour"] = latencies(
            client, requests, lambda rng: client.get(history, params=window(rng))
        )
        results["history_of_a_kind_it_lacks"] = latencies(
            client,
            requests,
            lambda rng: client.get(history, params={"operation": "REVERSAL_IN", "to": at(rng)}),
        )
        results["history_of_an_order"] = latencies(
            client,
            requests,
            lambda rng: client.get(
                history,
                params={
                    "metadata_key": "order_id",
                    "metadata_value": str(rng.randrange(span // 4)),
                },
            ),
        )
        statement = f"/api/v1/wallets/{wallet}/statement"
        print("bench: ledger in time, statements", file=sys.stderr)
        results["statement_csv"] = streamed(client, service, statement, format="csv")
        results["statement_json"] = streamed(client, service, statement, format="json")
    for name in ("statement_csv", "statement_json"):
        assert results[name]["entries"] == entries, results[name]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=ENTRIES)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    args = parser.parse_args()
    with postgres_server() as (address, where), tempfile.TemporaryDirectory() as workdir:
        database = f"wallet_bench_{uuid.uuid4().hex[:8]}"
        ensure_database(address, database)
        bench = Bench(address, database, 0, 1, 1, Path(workdir))
        try:
            migrated = run_alembic(PROJECT_DIR, address.environment(database), "upgrade", "head")
            if migrated.returncode != 0:
                sys.exit(f"bench: migrations failed:\n{migrated.stderr}")
            results = measure(bench, entries=args.entries, requests=args.requests)
        finally:
            drop_database(address, database)
    report = {
        "benchmark": "ledger_time",
        "command": "python -m bench.ledger_time " + " ".join(sys.argv[1:]),
        "machine": {**machine(), "postgresql": where},
        "runs": results,
    }
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
