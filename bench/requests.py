"""What one request costs, on its own (`python -m bench.requests`): the runs whose CPU per
request docs/PERFORMANCE.md follows (a hot-wallet operation, operations spread over 10,000
wallets, the batch endpoint, GET balance, GET /health/live), each with the service's and
PostgreSQL's CPU per request beside its rate. With `--baseline DIR` (another checkout), each
is measured for both codes, interleaved baseline, current, current, baseline, on two services
beside each other on one database. Prints the JSON; `make bench` runs the same loads among
its others."""

from __future__ import annotations

import argparse
from typing import Any

from bench.hot_wallet import (
    AB,
    Bench,
    _file,
    baseline_service,
    batch_run,
    create_wallets,
    holds_run,
    run_on_its_own,
    run_wrk,
    running_service,
    write_run,
)

#: The loads run by default; `--runs holds_pairs` adds holds created then captured on
#: the 10,000 wallets (pairs a second, as `make bench` runs them).
RUNS = ("hot_wallet", "spread_wallets", "batch_endpoint", "get_balance", "health_live")
OPTIONAL_RUNS = ("holds_pairs",)


def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
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
        "holds_pairs": lambda on: _pairs(holds_run(bench, on, spread, duration=duration)),
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


def _pairs(run: dict[str, Any]) -> dict[str, Any]:
    """A holds run with its pairs as its operations (its rate, what was acknowledged)."""
    return run | {"ops_per_s": run["pairs_per_s"], "acknowledged": run["captures_done"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=RUNS + OPTIONAL_RUNS,
        default=list(RUNS),
        help="which loads (by default: all but holds_pairs)",
    )
    run_on_its_own("requests", parser, measure, duration=10)


if __name__ == "__main__":
    main()
