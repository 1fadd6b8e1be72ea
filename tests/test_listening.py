"""Without authentication the service serves loopback addresses and Unix sockets only,
judged on the sockets Gunicorn really listens on, however they reached it: its `bind`, a
socket handed over by file descriptor (`-b fd://N`), or systemd's socket activation
(`LISTEN_FDS`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, TestDatabase
from wallet_api.devtools.server import ServiceProcess, free_port

CREATE = "/api/v1/wallets/create_wallet"
EVERYWHERE = "0.0.0.0"  # noqa: S104  (binding to all interfaces is what is tested)
REFUSAL = "AUTH_MODE=none on 0.0.0.0:"
#: How long a server whose worker refuses to boot may take to stop: seconds when it works
#: (a deadline, not a measurement: generous for a loaded machine).
BOOT_REFUSED_WITHIN = 20


@contextmanager
def listening(host: str) -> Iterator[socket.socket]:
    """A listening TCP socket on `host` and a free port, as a supervisor would hand over."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(16)
        yield listener


def gunicorn_on(
    listener: socket.socket,
    database: TestDatabase,
    log_path: Path,
    *,
    systemd: bool,
    settings: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Gunicorn given `listener` as file descriptor 3: named by `-b fd://3`, or by socket
    activation (`LISTEN_FDS=1` and `LISTEN_PID` set to Gunicorn's own process id, as
    systemd does it). `HOST` stays a loopback address: the socket is what is judged."""
    environment = {
        **os.environ,
        **database.environment(),
        "HOST": "127.0.0.1",
        "WORKERS_COUNT": "1",
        "LOG_LEVEL": "info",
        **(settings or {}),
    }
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"]
    if systemd:
        environment["LISTEN_FDS"] = "1"
        launcher = 'exec 3<&"$1"; shift; export LISTEN_PID=$$; exec "$@"'
    else:
        command += ["-b", "fd://3"]
        launcher = 'exec 3<&"$1"; shift; exec "$@"'
    with log_path.open("wb") as log:
        return subprocess.Popen(
            ["bash", "-c", launcher, "bash", str(listener.fileno()), *command],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
        )


def wait_until_serving(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"never served:\n{log_path.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize("systemd", [False, True], ids=["fd", "listen_fds"])
def test_a_handed_over_socket_on_every_interface_is_refused_without_authentication(
    database: TestDatabase, tmp_path: Path, systemd: bool
) -> None:
    log_path = tmp_path / "gunicorn.log"
    with listening(EVERYWHERE) as listener:
        port = listener.getsockname()[1]
        process = gunicorn_on(listener, database, log_path, systemd=systemd)
        try:
            assert process.wait(timeout=BOOT_REFUSED_WITHIN) != 0
        finally:
            stop(process)
        log = log_path.read_text()
        assert f"{REFUSAL}{port}" in log, log
        assert "Booting worker" not in log  # refused before any worker could serve


@pytest.mark.parametrize("systemd", [False, True], ids=["fd", "listen_fds"])
def test_a_handed_over_loopback_socket_is_served_and_named_in_the_warning(
    database: TestDatabase, tmp_path: Path, systemd: bool
) -> None:
    log_path = tmp_path / "gunicorn.log"
    with listening("127.0.0.1") as listener:
        port = listener.getsockname()[1]
        process = gunicorn_on(listener, database, log_path, systemd=systemd)
        try:
            wait_until_serving(port, process, log_path)
            assert httpx.post(f"http://127.0.0.1:{port}{CREATE}", timeout=10).status_code == 201
        finally:
            stop(process)
        log = log_path.read_text()
        assert f"anyone who can reach 127.0.0.1:{port}" in log, log


def test_a_handed_over_socket_on_every_interface_is_served_when_allowed(
    database: TestDatabase, tmp_path: Path
) -> None:
    log_path = tmp_path / "gunicorn.log"
    with listening(EVERYWHERE) as listener:
        port = listener.getsockname()[1]
        process = gunicorn_on(
            listener, database, log_path, systemd=True, settings={"AUTH_OPEN_TO_NETWORK": "true"}
        )
        try:
            wait_until_serving(port, process, log_path)
            assert httpx.post(f"http://127.0.0.1:{port}{CREATE}", timeout=10).status_code == 201
        finally:
            stop(process)
        assert f"anyone who can reach 0.0.0.0:{port}" in log_path.read_text()


def test_no_authentication_off_loopback_is_refused_unless_allowed(
    database: TestDatabase, start_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    refused = ServiceProcess(
        ROOT, {**database.environment(), "HOST": EVERYWHERE}, tmp_path / "refused.log"
    )
    try:
        assert refused.process.wait(timeout=30) != 0
        assert REFUSAL in refused.log_text()
    finally:
        refused.stop()
    allowed = start_service(HOST=EVERYWHERE, AUTH_OPEN_TO_NETWORK="true")
    with httpx.Client(base_url=allowed.base_url, timeout=10) as http:
        assert http.post(CREATE).status_code == 201
    assert "running without authentication" in allowed.log_text()


def test_localhost_in_capitals_is_a_loopback_name(
    start_service: Callable[..., ServiceProcess],
) -> None:
    service = start_service(HOST="LOCALHOST")
    with httpx.Client(base_url=service.base_url, timeout=10) as http:
        assert http.post(CREATE).status_code == 201


def gunicorn_in(
    directory: Path, database: TestDatabase, settings: dict[str, str], *args: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """Gunicorn started in `directory` (where `.env` is read), without the environment's
    own AUTH_, HOST and PORT settings, with `settings` on top."""
    log_path = directory / "gunicorn.log"
    environment = {
        key: value
        for key, value in {**os.environ, **database.environment()}.items()
        if not key.startswith("AUTH_") and key not in {"HOST", "PORT"}
    }
    environment |= {"WORKERS_COUNT": "1", **settings}
    command = [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py")]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, *args],
            cwd=directory,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, log_path


def test_a_worker_started_after_env_changed_is_judged_on_what_it_will_run_with(
    database: TestDatabase, tmp_path: Path
) -> None:
    """Each worker's application reads `.env` again when it starts: a `.env` turned to
    AUTH_MODE=none while keys guard a network address must not give the next worker an
    open door. It refuses to boot, which stops the server."""
    (tmp_path / ".env").write_text("AUTH_MODE=keys\n")
    port = free_port()
    process, log_path = gunicorn_in(tmp_path, database, {"HOST": EVERYWHERE, "PORT": str(port)})
    try:
        wait_until_serving(port, process, log_path)
        assert httpx.post(f"http://127.0.0.1:{port}{CREATE}", timeout=10).status_code == 401
        (tmp_path / ".env").write_text("AUTH_MODE=none\n")
        (worker,) = subprocess.run(
            ["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        os.kill(int(worker), signal.SIGKILL)
        assert process.wait(timeout=BOOT_REFUSED_WITHIN) != 0, log_path.read_text()
        assert "this worker refuses to serve" in log_path.read_text()
    finally:
        stop(process)


def test_a_reload_onto_a_network_address_stops_the_server(
    database: TestDatabase, tmp_path: Path
) -> None:
    """SIGHUP reloads the configuration and rebinds without `when_ready`: the new
    workers judge their sockets."""
    port = free_port()
    (tmp_path / ".env").write_text(f"HOST=127.0.0.1\nPORT={port}\n")
    process, log_path = gunicorn_in(tmp_path, database, {})
    try:
        wait_until_serving(port, process, log_path)
        (tmp_path / ".env").write_text(f"HOST={EVERYWHERE}\nPORT={free_port()}\n")
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=BOOT_REFUSED_WITHIN) != 0, log_path.read_text()
        assert "this worker refuses to serve" in log_path.read_text()
    finally:
        stop(process)


def test_reuse_port_on_a_network_address_is_refused(database: TestDatabase, tmp_path: Path) -> None:
    """Under `reuse_port` each worker binds its own socket, and the arbiter has none to
    judge: the worker judges its own."""
    process, log_path = gunicorn_in(
        tmp_path, database, {"HOST": EVERYWHERE, "PORT": str(free_port())}, "--reuse-port"
    )
    try:
        assert process.wait(timeout=BOOT_REFUSED_WITHIN) != 0, log_path.read_text()
        assert "this worker refuses to serve" in log_path.read_text()
    finally:
        stop(process)
