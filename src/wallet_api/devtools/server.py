"""The service under Gunicorn as a child process, for the tests and the benchmark."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_alembic(
    project_dir: Path, environment: Mapping[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """Run the `alembic` command line in `project_dir`, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=project_dir,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


class ServiceProcess:
    """`gunicorn --config gunicorn.conf.py` run from `project_dir` with extra settings."""

    def __init__(self, project_dir: Path, settings: Mapping[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.settings = dict(settings)  # on top of the environment
        environment = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WORKERS_COUNT": "2",
            **settings,
        }
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"],
            cwd=project_dir,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_until_serving(self, path: str = "/health/ready", timeout: float = 30.0) -> None:
        """Block until `path` answers 200; raise with the server's log if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited early:\n{self.log_text()}")
            try:
                if httpx.get(self.base_url + path, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the service did not answer {path} in {timeout}s:\n{self.log_text()}")

    @contextmanager
    def serving(self, path: str = "/health/ready") -> Iterator[ServiceProcess]:
        """Wait until the service answers `path`, hand it over, stop it afterwards."""
        try:
            self.wait_until_serving(path)
            yield self
        finally:
            self.stop()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM (graceful), then SIGKILL after 30 s; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
