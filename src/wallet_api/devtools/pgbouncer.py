"""A private PgBouncer in front of a PostgreSQL server, for the tests.

Debian's `pgbouncer` package provides the binary (`make pgbouncer` installs it); this module
writes a configuration of its own into a temporary directory and runs `pgbouncer` in the
foreground as a child process, so a system-wide PgBouncer, running or not, plays no part.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from wallet_api.devtools.postgres import PostgresAddress
from wallet_api.devtools.server import free_port

#: Where Debian installs it; /usr/sbin is often not on a normal user's PATH.
_KNOWN_LOCATIONS = ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer")

#: Startup parameters PgBouncer would refuse a client for (it tracks a few itself, such as
#: `application_name`; any other must be listed to be accepted, and is then dropped).
#: `extra_float_digits`: some drivers send it. The service sends no `statement_timeout`
#: with DB_PGBOUNCER=true, which the tests rely on: it is deliberately not listed here.
DEFAULT_IGNORED_STARTUP_PARAMETERS = ("extra_float_digits",)


class PgBouncerError(RuntimeError):
    """PgBouncer is missing, or did not start."""


def find_pgbouncer() -> str | None:
    """The path of the `pgbouncer` executable, or None when it is not installed."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return next((path for path in _KNOWN_LOCATIONS if os.access(path, os.X_OK)), None)


def pgbouncer_version(executable: str | None = None) -> tuple[int, int, int]:
    """The installed PgBouncer's version, e.g. (1, 18, 0)."""
    executable = executable or find_pgbouncer()
    if executable is None:
        raise PgBouncerError("pgbouncer is not installed (`make pgbouncer` installs it)")
    output = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    found = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", output)
    if found is None:
        raise PgBouncerError(f"cannot read the version of {executable}: {output!r}")
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def supports_prepared_statements(version: tuple[int, int, int]) -> bool:
    """PgBouncer 1.21 and later keep protocol-level prepared statements working in
    transaction mode (`max_prepared_statements`); earlier ones send a client's Bind to
    whichever server connection it gets, where the statement it names may not exist."""
    return version >= (1, 21, 0)


def _unprivileged_user(upstream: PostgresAddress) -> pwd.struct_passwd:
    """The system user to run PgBouncer as when we are root (PgBouncer refuses root).

    The owner of the upstream's socket directory first (the embedded server keeps its socket
    in its data directory, readable by its own user only), then the embedded server's user,
    then `nobody`.
    """
    candidates: list[str] = []
    if upstream.host.startswith("/") and os.path.isdir(upstream.host):
        owner = os.stat(upstream.host).st_uid
        if owner != 0:
            candidates.append(pwd.getpwuid(owner).pw_name)
    candidates += ["embedded_postgres", "postgres", "nobody"]
    for name in candidates:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PgBouncerError(f"running as root and none of the users {candidates} exists")


def _quote(value: str) -> str:
    """A value for a PgBouncer connection string or auth file (double any quote)."""
    return value.replace("'", "''")


def _write_config(
    directory: Path,
    upstream: PostgresAddress,
    port: int,
    *,
    pool_mode: str,
    default_pool_size: int,
    max_client_conn: int,
    ignore_startup_parameters: Sequence[str],
    prepared_statements: bool,
) -> Path:
    userlist = directory / "userlist.txt"
    # With auth_type = trust PgBouncer checks no password, but the user must be listed;
    # the password, if any, is the one it uses to log in to the server.
    user, password = upstream.user.replace('"', '""'), upstream.password.replace('"', '""')
    userlist.write_text(f'"{user}" "{password}"\n')
    server = f"host='{_quote(upstream.host)}' port={upstream.port} user='{_quote(upstream.user)}'"
    if upstream.password:
        server += f" password='{_quote(upstream.password)}'"
    config = directory / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                # Any database name the client asks for, on the upstream server.
                f"* = {server}",
                "",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {userlist}",
                f"pool_mode = {pool_mode}",
                f"max_client_conn = {max_client_conn}",
                f"default_pool_size = {default_pool_size}",
                f"ignore_startup_parameters = {','.join(ignore_startup_parameters)}",
                "server_login_retry = 1",
                # 1.21+: track prepared statements across server connections (0 = off).
                *(["max_prepared_statements = 200"] if prepared_statements else []),
                "log_connections = 0",
                "log_disconnections = 0",
                "",
            ]
        )
    )
    return config


def _spawn(
    executable: str, config: Path, log: Path, run_as: pwd.struct_passwd | None
) -> subprocess.Popen[bytes]:
    """`pgbouncer config` in the foreground (not -d), output to `log`, as `run_as` if given."""
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [executable, str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=config.parent,
            user=run_as.pw_uid if run_as else None,
            group=run_as.pw_gid if run_as else None,
            extra_groups=[] if run_as else None,
        )


def _wait_until_accepting(
    process: subprocess.Popen[bytes], port: int, log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PgBouncerError(
                f"pgbouncer exited with status {process.returncode}:\n"
                + log.read_text(errors="replace")
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise PgBouncerError(
        f"pgbouncer did not listen on port {port} within {timeout}s:\n"
        + log.read_text(errors="replace")
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM: PgBouncer closes its connections and exits at once; SIGKILL if it does not."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def pgbouncer(
    upstream: PostgresAddress,
    *,
    pool_mode: str = "transaction",
    default_pool_size: int = 20,
    max_client_conn: int = 400,
    ignore_startup_parameters: Sequence[str] = DEFAULT_IGNORED_STARTUP_PARAMETERS,
    startup_timeout: float = 15.0,
) -> Iterator[PostgresAddress]:
    """Run PgBouncer on 127.0.0.1 (a free port) in front of `upstream` for the block.

    Every database of the upstream server is reachable through it under its own name, as
    `upstream.user` (no password asked: `auth_type = trust`). Yields the bouncer's address.
    Raises PgBouncerError if `pgbouncer` is not installed or does not start.
    """
    executable = find_pgbouncer()
    if executable is None:
        raise PgBouncerError("pgbouncer is not installed (`make pgbouncer` installs it)")
    prepared_statements = supports_prepared_statements(pgbouncer_version(executable))
    directory = Path(tempfile.mkdtemp(prefix="wallet-api-pgbouncer-"))
    run_as: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        run_as = _unprivileged_user(upstream)
        os.chown(directory, run_as.pw_uid, run_as.pw_gid)
    log = directory / "pgbouncer.log"
    try:
        for _attempt in range(3):  # the free port may be taken before pgbouncer binds it
            port = free_port()
            config = _write_config(
                directory,
                upstream,
                port,
                pool_mode=pool_mode,
                default_pool_size=default_pool_size,
                max_client_conn=max_client_conn,
                ignore_startup_parameters=ignore_startup_parameters,
                prepared_statements=prepared_statements,
            )
            process = _spawn(executable, config, log, run_as)
            try:
                _wait_until_accepting(process, port, log, startup_timeout)
            except PgBouncerError:
                _stop(process)
                if "Address already in use" in log.read_text(errors="replace"):
                    continue
                raise
            try:
                yield PostgresAddress(
                    host="127.0.0.1", port=port, user=upstream.user, password=upstream.password
                )
            finally:
                _stop(process)
            return
        raise PgBouncerError(f"pgbouncer found no free port:\n{log.read_text(errors='replace')}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
