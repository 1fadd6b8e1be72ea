"""What one request costs, on its own (`python -m bench.requests`): the runs whose CPU per
request docs/PERFORMANCE.md follows (a hot-wallet operation, operations spread over 10,000
wallets, the batch endpoint, GET balance, GET /health/live), each with the service's and
PostgreSQL's CPU per request beside its rate. With `--baseline DIR` (another checkout), each
is measured for both codes, interleaved baseline, current, current, baseline, on two services
beside each other on one database. Prints the JSON; `make bench` runs the same loads among
its others."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.hot_wallet import (
    AB,
    PROJECT_DIR,
    Bench,
    _file,
    baseline_service,
    batch_run,
    check_baseline,
    create_wallets,
    find_postmaster,
    machine,
    postgres_server,
    run_wrk,
    running_service,
    write_run,
)
from wallet_api.devtools.postgres import drop_database, ensure_database
from wallet_api.devtools.server import run_alembic

RUNS = ("hot_wallet", "spread_wallets", "batch_endpoint", "get_balance", "health_live")


def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    migrated = run_alembic(
        PROJECT_DIR, bench.address.environment(bench.database), "upgrade", "head"
    )
    if migrated.returncode != 0:
        sys.exit(f"bench: migrations failed:\n{migrated.stderr}")
    (hot,) = create_wallets(bench, 1)
    spread = create_wallets(bench, args.wallets)
    warmup = max(2, args.duration // 5)
    duration = args.duration
    loads = {
        "hot_wallet": lambda on: write_run(bench, on, [hot], duration=duration),
        "spread_wallets": lambda on: write_run(bench, on, spread, duration=duration),
        "batch_endpoint": lambda on: batch_run(bench, on, spread, duration=duration),
        "get_balance": lambda on: run_wrk(
            bench, on, duration=duration, mode="get", target=f"/api/v1/wallets/{hot}"
        ),
        "health_live": lambda on: run_wrk(
            bench, on, duration=duration, mode="get", target="/health/live"
        ),
    }
    results: dict[str, Any] = {}
    with running_service(bench) as service, baseline_service(bench, args.baseline) as old:
        for each in (service, old):
            if each is not None:  # both codes warmed up alike: every wallet met once
                run_wrk(
                    bench, each, duration=warmup, mode="operations", target=_file(bench, spread)
                )
        ab = AB(service, old)
        for name in args.runs:
            results[name] = ab.run(name, loads[name])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR")
    parser.add_argument(
        "--runs", nargs="+", choices=RUNS, default=list(RUNS), help="which loads (all of them)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk not found; install it with `apt-get install wrk`")
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        check_baseline(args.baseline)
    with postgres_server() as (address, where), tempfile.TemporaryDirectory() as workdir:
        database = f"wallet_bench_{uuid.uuid4().hex[:8]}"
        ensure_database(address, database)
        postmaster, unmeasured = find_postmaster(address, database)
        bench = Bench(
            address,
            database,
            args.duration,
            args.connections,
            1,
            Path(workdir),
            postmaster=postmaster,
            postmaster_unmeasured=unmeasured,
        )
        try:
            results = measure(bench, args)
        finally:
            drop_database(address, database)
    report = {
        "benchmark": "requests",
        "command": "python -m bench.requests " + " ".join(sys.argv[1:]),
        "machine": {**machine(), "postgresql": where},
        "runs": results,
    }
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
