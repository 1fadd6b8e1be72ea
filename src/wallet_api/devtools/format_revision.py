"""Alembic's post-write hook: a new revision file, formatted and lint-fixed by ruff.

Ruff is a development tool (`make install` puts it in .venv); where it is not installed,
as in the service's runtime image, the file is left as Alembic wrote it, and this says so
instead of failing the `alembic revision` that wrote it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys


def main(path: str) -> int:
    if importlib.util.find_spec("ruff") is None:
        print(f"ruff is not installed here: run `make format` on {path} before committing it")
        return 0
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--fix", "--quiet", path], check=False)
    return subprocess.run([*ruff, "format", "--quiet", path], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
