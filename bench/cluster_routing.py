"""What wallet-affine routing buys: hot-wallet and spread figures through HAProxy, in one
run on the local Patroni cluster (`make cluster`'s), with 1 instance, 2 instances routed
by wallet id (`balance uri depth 4`), and 2 instances in round robin.

Prints JSON (and saves it under bench/results/). Needs what `make cluster` needs, and wrk;
skips, saying so, without them. The cluster's three PostgreSQL nodes, HAProxy, the
instances and wrk share this machine's CPUs: compare the figures within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from wallet_api.devtools.cluster import HTTP_PORT, Cluster, missing_requirements

BASE_URL = f"http://127.0.0.1:{HTTP_PORT}"
WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
RESULTS = Path(__file__).with_name("results")
SETUPS = {  # name: (instances, HAProxy balance)
    "1 instance": (1, "uri depth 4"),
    "2 instances, by wallet": (2, "uri depth 4"),
    "2 instances, round robin": (2, "roundrobin"),
}


async def funded_wallets(count: int) -> list[str]:
    """`count` new wallets holding 1,000.00 each (withdrawals of 1.00 then never fail)."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=BASE_URL, timeout=30, limits=limits) as http:
        gate = asyncio.Semaphore(32)

        async def one() -> str:
            async with gate:
                created = await http.post("/api/v1/wallets/create_wallet")
                wallet = str(created.json()["wallet_uuid"])
                funded = await http.post(
                    f"/api/v1/wallets/{wallet}/operation",
                    json={"operation": "DEPOSIT", "amount": 1000},
                )
                funded.raise_for_status()
                return wallet

        return list(await asyncio.gather(*(one() for _ in range(count))))


def wrk(wallets_file: Path, *, duration: int, connections: int) -> dict[str, Any]:
    result = subprocess.run(
        [
            "wrk", "--threads=1", f"--connections={connections}", f"--duration={duration}s",
            "--timeout=10s", f"--script={WRK_SCRIPT}", BASE_URL,
        ],
        capture_output=True, text=True, check=True, timeout=duration + 60,
        env={"BENCH_MODE": "operations", "WALLETS_FILE": str(wallets_file), "PATH": "/usr/bin"},
    )  # fmt: skip
    line = next(x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON "))
    raw: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    ok = raw["responses"] - raw["not_2xx_3xx"]
    return {
        "ops_per_s": round(ok / seconds, 1),
        "p50_ms": round(raw["latency_us"]["p50"] / 1000, 2),
        "p99_ms": round(raw["latency_us"]["p99"] / 1000, 2),
        "errors": raw["not_2xx_3xx"] + sum(raw["socket_errors"].values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=3, help="turns of every setup")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wallets", type=int, default=2000, help="wallets in the spread run")
    parser.add_argument("--dir", type=Path, default=Path(".cluster"))
    args = parser.parse_args()
    missing = missing_requirements() + ([] if shutil.which("wrk") else ["wrk (Debian: wrk)"])
    if missing:
        print("bench: skipped, this machine lacks " + ", ".join(missing))
        return 0
    cluster = Cluster(args.dir)
    runs: dict[str, dict[str, Any]] = {}
    try:
        cluster.up()
        hot = args.dir / "hot-wallet.txt"
        spread = args.dir / "spread-wallets.txt"
        hot.write_text(asyncio.run(funded_wallets(1))[0] + "\n")
        spread.write_text("\n".join(asyncio.run(funded_wallets(args.wallets))) + "\n")
        # The setups take turns, `--repeat` times, so that the machine's other work weighs
        # on each alike; each figure is the median of its repetitions.
        samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for _ in range(args.repeat):
            for name, (instances, balance) in SETUPS.items():
                cluster.start_haproxy(instances, balance)
                wrk(hot, duration=2, connections=args.connections)  # warm-up
                loads = (("hot wallet", hot), (f"{args.wallets} wallets", spread))
                for label, wallets in loads:
                    result = wrk(wallets, duration=args.duration, connections=args.connections)
                    samples.setdefault(name, {}).setdefault(label, []).append(result)
                    print(f"bench: {name}, {label}: {result}", flush=True)
        for name, by_load in samples.items():
            runs[name] = {}
            for label, results in by_load.items():
                ordered = sorted(results, key=lambda r: float(r["ops_per_s"]))
                runs[name][label] = {
                    **ordered[len(ordered) // 2],
                    "ops_per_s_all": [r["ops_per_s"] for r in results],
                }
    finally:
        cluster.down()
    document = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": args.duration,
        "repeat": args.repeat,
        "connections": args.connections,
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"cluster-routing-{int(time.time())}.json").write_text(json.dumps(document))
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
