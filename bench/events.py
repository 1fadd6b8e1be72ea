"""The events' part of `make bench`, on its own (`python -m bench.events`): the hot wallet
with events written against EVENTS_ENABLED=false, the webhook delivery lag while the hot
wallet runs, a webhook receiver down under load then up (`--webhook-outage`), and, with
`--baseline DIR`, the hot wallet and 10,000 wallets against another checkout's code in the
same run (ABBA). Prints the JSON; `make bench` runs the same functions among its others."""

from __future__ import annotations

import argparse
from typing import Any

from bench.hot_wallet import (
    AB,
    Bench,
    _file,
    baseline_service,
    create_wallets,
    events_on_and_off,
    metadata_run,
    run_on_its_own,
    run_wrk,
    running_service,
    webhook_runs,
    write_run,
)
from bench.webhooks import add_outage_option


def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    (hot,) = create_wallets(bench, 1)
    spread = create_wallets(bench, args.wallets)
    warmup = max(2, args.duration // 5)
    results: dict[str, Any] = {}
    if args.baseline is not None:
        with (
            running_service(bench) as service,
            baseline_service(bench, args.baseline) as old,
        ):
            for each in (service, old):
                assert each is not None
                run_wrk(bench, each, duration=warmup, mode="operations", target=_file(bench, [hot]))
            ab = AB(service, old)
            results["hot_wallet"] = ab.run(
                "hot wallet, coalescing on",
                lambda on: write_run(bench, on, [hot], duration=args.duration),
            )
            results["hot_wallet_metadata"] = metadata_run(ab, bench, hot, duration=args.duration)
            results["spread_wallets"] = ab.run(
                f"{len(spread)} wallets, coalescing on",
                lambda on: write_run(bench, on, spread, duration=args.duration),
            )
    results.update(events_on_and_off(bench, hot, duration=args.duration, warmup=warmup))
    results.update(webhook_runs(bench, hot, duration=args.duration, outage=args.webhook_outage))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_outage_option(parser)
    run_on_its_own("events", parser, measure, duration=15)


if __name__ == "__main__":
    main()
