"""Apply each targeted break (tests/mutation/breaks.py) to a copy of the repository, run
the tests that must catch it there, and print a JSON report; exit 1 if any survived.

    python -m tests.mutation.run_breaks [--only NAME ...] [--jobs N] [--list]

A break is caught when its tests fail (pytest's exit status 1); an error of another kind
(the tests could not run) counts as not caught. The repository itself is never modified.
The breaks' test sessions share one PostgreSQL server (TEST_DATABASE_URL's, or a private
embedded one started once for the run), each in databases of its own, and run `--jobs`
at a time (2 by default: they spend most of their time waiting on the service).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from tests.mutation.breaks import BREAKS, Break
from wallet_api.devtools.postgres import embedded_postgres

ROOT = Path(__file__).resolve().parents[2]
#: Not copied: environments, data, caches, results.
SKIPPED = (".venv", ".data", ".git", ".cluster", "mutants", "results", "__pycache__", "*_cache")
#: pytest's exit status when tests ran and some failed.
TESTS_FAILED = 1


def run(item: Break, workspace: Path) -> dict[str, object]:
    copy = workspace / item.name
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*SKIPPED))
    target = copy / item.path
    text = target.read_text()
    if text.count(item.old) != 1:
        return {"break": item.name, "caught": False, "why": f"{item.path}: text not found once"}
    target.write_text(text.replace(item.old, item.new))
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(
                None,
                [
                    str(copy / "src"),
                    str(copy / "clients" / "python" / "src"),
                    os.environ.get("PYTHONPATH"),
                ],
            )
        ),
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *item.tests],
        cwd=copy,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(copy, ignore_errors=True)
    lines = result.stdout.strip().splitlines()
    summary = lines[-1:] or [result.stderr.strip()[-300:]]
    failed = [line.split()[1] for line in lines if line.startswith("FAILED ")]
    return {
        "break": item.name,
        "promise": item.promise,
        "caught": result.returncode == TESTS_FAILED,
        "pytest_exit_status": result.returncode,
        "pytest": summary[0],
        "caught_by": failed,
        "seconds": round(time.monotonic() - started, 1),
    }


@contextmanager
def shared_server(workspace: Path) -> Iterator[None]:
    """One PostgreSQL for every break's tests (TEST_DATABASE_URL, set for the children),
    instead of an embedded server started and stopped by each session."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield
        return
    with embedded_postgres(workspace / "postgres", keep_data=False) as address:
        os.environ["TEST_DATABASE_URL"] = address.url("postgres")
        try:
            yield
        finally:
            del os.environ["TEST_DATABASE_URL"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="names of breaks to apply")
    parser.add_argument("--list", action="store_true", help="list the breaks and exit")
    parser.add_argument("--jobs", type=int, default=2, help="breaks tested at once")
    args = parser.parse_args()
    if args.list:
        for item in BREAKS:
            print(f"{item.name}: {item.promise} ({', '.join(item.tests)})")
        return 0
    chosen = [item for item in BREAKS if args.only is None or item.name in args.only]
    unknown = set(args.only or ()) - {item.name for item in BREAKS}
    if unknown:
        parser.error(f"no such break: {', '.join(sorted(unknown))}")
    reports = []
    with (
        tempfile.TemporaryDirectory(prefix="wallet-api-breaks-") as workspace,
        shared_server(Path(workspace)),
        ThreadPoolExecutor(max_workers=args.jobs) as pool,
    ):
        for report in pool.map(lambda item: run(item, Path(workspace)), chosen):
            print(json.dumps(report), file=sys.stderr, flush=True)
            reports.append(report)
    survivors = [report["break"] for report in reports if not report["caught"]]
    print(json.dumps({"breaks": len(reports), "survived": survivors}, indent=2))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
