"""Apply each targeted break (tests/mutation/breaks.py) to a copy of the repository, run
the tests that must catch it there, and print a JSON report; exit 1 if any survived.

    python -m tests.mutation.run_breaks [--only NAME ...] [--list]

A break is caught when its tests fail (pytest's exit status 1); an error of another kind
(the tests could not run) counts as not caught. The repository itself is never modified.
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
from pathlib import Path

from tests.mutation.breaks import BREAKS, Break

ROOT = Path(__file__).resolve().parents[2]
#: Not copied: environments, data, caches, results.
SKIPPED = (".venv", ".data", ".git", "mutants", "results", "__pycache__", "*_cache")
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
            filter(None, [str(copy / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *item.tests],
        cwd=copy,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(copy, ignore_errors=True)
    summary = result.stdout.strip().splitlines()[-1:] or [result.stderr.strip()[-300:]]
    return {
        "break": item.name,
        "promise": item.promise,
        "caught": result.returncode == TESTS_FAILED,
        "pytest_exit_status": result.returncode,
        "pytest": summary[0],
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="names of breaks to apply")
    parser.add_argument("--list", action="store_true", help="list the breaks and exit")
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
    with tempfile.TemporaryDirectory(prefix="wallet-api-breaks-") as workspace:
        for item in chosen:
            report = run(item, Path(workspace))
            print(json.dumps(report), file=sys.stderr, flush=True)
            reports.append(report)
    survivors = [report["break"] for report in reports if not report["caught"]]
    print(json.dumps({"breaks": len(reports), "survived": survivors}, indent=2))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
