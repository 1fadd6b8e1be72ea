"""Run the Locust scenarios headless against a running server; exit 1 on unexpected failures."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
# Locust runs from here: it puts the working directory on sys.path, and the locustfiles
# import `load_tests.common`.
PROJECT_DIR = PACKAGE_DIR.parent
SCENARIOS = {
    "single": PACKAGE_DIR / "single_wallet_load_test.py",
    "multi": PACKAGE_DIR / "multi_wallet_load_test.py",
}
# Locust's exit code when a request failed or a task raised; distinct from its own 1 and 2
# (bad arguments, a broken locustfile), which mean the run itself did not work.
FAILURES_EXIT_CODE = 3
# Time on top of the run time for Locust to start, ramp up and write its reports.
LOCUST_GRACE_SECONDS = 120
_RUN_TIME = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def run_time_seconds(text: str) -> int:
    """Seconds of a Locust run time such as `30`, `30s`, `5m` or `1h30m`."""
    match = _RUN_TIME.fullmatch(text.strip())
    if text.strip().isdigit():
        seconds = int(text)
    elif match is not None and any(match.groups()):
        hours, minutes, secs = (int(group or 0) for group in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    else:
        raise argparse.ArgumentTypeError(f"not a run time like 30s, 5m or 1h30m: {text!r}")
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the run time must be positive")
    return seconds


def _run_time(text: str) -> str:
    run_time_seconds(text)  # validated here so that a typo fails before any load is sent
    return text.strip()


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return value


def _served_url() -> str:
    """Where `make run` serves: HOST and PORT from the environment or `.env`, as it reads
    them (a wildcard HOST is reached on loopback)."""
    from wallet_api.core.config import load_settings_or_exit

    settings = load_settings_or_exit()
    wildcard = {"0.0.0.0", "::"}  # noqa: S104 (the addresses a server binds, not bound here)
    host = "127.0.0.1" if settings.host in wildcard else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options, each defaulting to an environment variable and then to a fixed value."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m load_tests.run",
        description=(
            "Run the Locust scenarios headless against a running wallet API and print a "
            "JSON summary. Exits 1 when a request failed unexpectedly or none succeeded."
        ),
    )
    # argparse passes string defaults through `type`, so the environment is validated too.
    parser.add_argument(
        "--host",
        default=env("HOST_URL"),
        help=(
            "base URL of the server (env HOST_URL; default: where `make run` serves, from "
            "HOST and PORT as it reads them)"
        ),
    )
    parser.add_argument(
        "--users",
        type=_positive_int,
        default=env("LOADTEST_USERS", "64"),
        help="concurrent Locust users (env LOADTEST_USERS; default %(default)s)",
    )
    parser.add_argument(
        "--spawn-rate",
        type=_positive_float,
        default=env("LOADTEST_SPAWN_RATE", "64"),
        help="users started per second (env LOADTEST_SPAWN_RATE; default %(default)s)",
    )
    parser.add_argument(
        "--run-time",
        type=_run_time,
        default=env("LOADTEST_RUN_TIME", "30s"),
        help="duration of each scenario (env LOADTEST_RUN_TIME; default %(default)s)",
    )
    parser.add_argument(
        "--scenario",
        choices=["single", "multi", "both"],
        default=env("LOADTEST_SCENARIO", "both"),
        help="one hot wallet, many wallets, or each in turn (env LOADTEST_SCENARIO; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--csv-prefix",
        default=env("LOADTEST_CSV_PREFIX") or None,
        help="keep Locust's reports as PREFIX_<scenario>.json and _*.csv (env LOADTEST_CSV_PREFIX)",
    )
    parser.add_argument(
        "--max-failure-ratio",
        type=_ratio,
        default=env("LOADTEST_MAX_FAILURE_RATIO", "0"),
        help="unexpected failures tolerated, as a fraction of requests "
        "(env LOADTEST_MAX_FAILURE_RATIO; default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.host is None:
        args.host = _served_url()
    return args


def preflight(host: str) -> str | None:
    """None when the server reports itself ready, else why not: fails fast, before the load."""
    url = host.rstrip("/") + "/health/ready"
    if not url.startswith(("http://", "https://")):
        return f"the host must be an http:// or https:// URL: {host!r}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (scheme checked)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        return f"no answer from {url}: {exc}"
    return None if status == 200 else f"{url} answered HTTP {status}"


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _read_json_list(path: Path) -> list[dict[str, Any]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else None


def percentile(response_times: dict[int, int], percent: float) -> int | None:
    """Locust's own percentile of its histogram of rounded response times (milliseconds)."""
    count = sum(response_times.values())
    if not count:
        return None
    # As locust.stats.calculate_response_time_percentile does, so that the numbers match
    # the ones its console and web UI show.
    below = int(count * percent)
    processed = 0
    for response_time in sorted(response_times, reverse=True):
        processed += response_times[response_time]
        if count - processed <= below:
            return response_time
    return 0


def _histogram(entry: dict[str, Any]) -> dict[int, int]:
    # JSON turns the histogram's integer keys into strings.
    return {int(key): int(value) for key, value in dict(entry.get("response_times", {})).items()}


def _latencies(response_times: dict[int, int]) -> dict[str, int | None]:
    return {"p50_ms": percentile(response_times, 0.5), "p99_ms": percentile(response_times, 0.99)}


def summarize(
    name: str, report_base: Path, exit_code: int | None, max_failure_ratio: float
) -> dict[str, Any]:
    """The scenario's totals, latencies and failures from Locust's reports, and a verdict.

    `exit_code` is Locust's, or None when it had to be killed for running too long.
    """
    problems: list[str] = []
    if exit_code is None:
        problems.append("locust did not finish in time and was killed")
    elif exit_code not in (0, FAILURES_EXIT_CODE):
        problems.append(f"locust exited with code {exit_code}")
    # The JSON report is written once the users have stopped, so its counts are final;
    # the CSV files are refreshed every second, good enough for the failure messages only.
    entries = _read_json_list(Path(f"{report_base}.json"))
    if entries is None:
        problems.append("locust wrote no statistics")
        entries = []
    requests = sum(int(entry.get("num_requests", 0)) for entry in entries)
    failures = sum(int(entry.get("num_failures", 0)) for entry in entries)
    ratio = failures / requests if requests else 0.0
    if requests - failures <= 0:
        problems.append("no request succeeded")
    if ratio > max_failure_ratio:
        problems.append(f"failure ratio {ratio:.4f} is above {max_failure_ratio}")
    exceptions = sum(
        int(row.get("Count") or 0) for row in _read_csv(Path(f"{report_base}_exceptions.csv"))
    )
    if exceptions or (exit_code == FAILURES_EXIT_CODE and not failures):
        problems.append("the locustfile raised exceptions (see the log above)")

    all_times: dict[int, int] = {}
    for entry in entries:
        for response_time, count in _histogram(entry).items():
            all_times[response_time] = all_times.get(response_time, 0) + count
    starts = [float(entry["start_time"]) for entry in entries if entry.get("start_time")]
    ends = [
        float(entry["last_request_timestamp"])
        for entry in entries
        if entry.get("last_request_timestamp")
    ]
    elapsed = max(ends) - min(starts) if starts and ends else 0.0
    return {
        "scenario": name,
        "passed": not problems,
        "problems": problems,
        "requests": requests,
        "failures": failures,
        "failure_ratio": round(ratio, 6),
        "rps": round(requests / elapsed, 1) if elapsed > 0 else None,
        **_latencies(all_times),
        "max_ms": round(max((float(e.get("max_response_time") or 0) for e in entries), default=0)),
        "endpoints": {
            f"{entry.get('method')} {entry.get('name')}": {
                "requests": int(entry.get("num_requests", 0)),
                "failures": int(entry.get("num_failures", 0)),
                **_latencies(_histogram(entry)),
            }
            for entry in sorted(entries, key=lambda entry: str(entry.get("name")))
        },
        "errors": {
            f"{row['Method']} {row['Name']}: {row['Error']}": int(row.get("Occurrences") or 0)
            for row in _read_csv(Path(f"{report_base}_failures.csv"))
        },
    }


def run_scenario(name: str, args: argparse.Namespace, report_base: Path) -> dict[str, Any]:
    """Run one scenario in a Locust subprocess and summarize its reports."""
    command = [
        sys.executable,
        "-m",
        "locust",
        "--locustfile",
        str(SCENARIOS[name]),
        "--headless",
        "--only-summary",
        "--host",
        args.host,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        args.run_time,
        "--csv",
        str(report_base),
        "--json-file",
        str(report_base),  # Locust adds ".json"
        "--exit-code-on-error",
        str(FAILURES_EXIT_CODE),
    ]
    print(f"load_tests: scenario {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    exit_code: int | None = None
    try:
        # Locust's log goes to stderr, so that stdout carries only the JSON summary.
        completed = subprocess.run(
            command,
            cwd=PROJECT_DIR,
            stdout=sys.stderr,
            check=False,
            timeout=run_time_seconds(args.run_time) + LOCUST_GRACE_SECONDS,
        )
        exit_code = completed.returncode
    except subprocess.TimeoutExpired:
        pass  # reported by summarize as a failed run
    return summarize(name, report_base, exit_code, args.max_failure_ratio)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios in turn; 0 when every one passed."""
    args = parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "both" else [args.scenario]
    problem = preflight(args.host)
    if problem is not None:
        print(json.dumps({"passed": False, "problems": [problem]}, indent=2))
        return 1
    with tempfile.TemporaryDirectory(prefix="wallet-loadtest-") as scratch:
        summaries = []
        for name in names:
            base = Path(f"{args.csv_prefix}_{name}") if args.csv_prefix else Path(scratch, name)
            summaries.append(run_scenario(name, args, base.resolve()))
    passed = all(summary["passed"] for summary in summaries)
    report = {
        "passed": passed,
        "host": args.host,
        "users": args.users,
        "run_time": args.run_time,
        "scenarios": summaries,
    }
    print(json.dumps(report, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
