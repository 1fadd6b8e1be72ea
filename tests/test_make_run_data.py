"""`.data`, where `make run` keeps the embedded PostgreSQL (README §More about make run):
`make clean` keeps it, `make clean-data` deletes it and says so, and the server on it
listens only on a Unix socket in `.data/postgres`."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import asyncpg
import pytest

from tests.support import ROOT
from wallet_api.devtools.postgres import embedded_postgres

#: TCP states in /proc/net/tcp{,6}: 0A is LISTEN.
_TCP_LISTEN = "0A"


def make(target: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=cwd,
        env={key: value for key, value in os.environ.items() if not key.startswith("MAKE")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The repository's Makefile (and the files its variables read) in a folder of its own,
    with what `make install`, `make run` and the tools leave behind: the real `.data` is
    never touched."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    for left in (".venv/bin", ".mypy_cache", ".ruff_cache", ".pytest_cache", "mutants"):
        (tmp_path / left).mkdir(parents=True)
        (tmp_path / left / "file").write_text("left behind\n")
    (tmp_path / ".data" / "postgres").mkdir(parents=True)
    (tmp_path / ".data" / "postgres" / "PG_VERSION").write_text("18\n")
    return tmp_path


def test_make_clean_keeps_data_and_make_clean_data_deletes_it_and_says_so(project: Path) -> None:
    cleaned = make("clean", project)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    for gone in (".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "mutants"):
        assert not (project / gone).exists(), gone
    assert (project / ".data" / "postgres" / "PG_VERSION").read_text() == "18\n"
    assert ".data" not in cleaned.stdout + cleaned.stderr

    deleted = make("clean-data", project)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert not (project / ".data").exists()
    said = [line for line in deleted.stdout.splitlines() if line.startswith("clean-data:")]
    assert said == [
        "clean-data: deleting .data/ (every wallet, ledger entry and API key of `make run`)"
    ], deleted.stdout
    for kept in ("Makefile", "pyproject.toml", "requirements.lock"):
        assert (project / kept).exists(), kept


def listening_inodes() -> set[str]:
    """The socket inodes of every TCP socket listening on this machine, IPv4 and IPv6."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if fields[3] == _TCP_LISTEN:
                    inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` holds open."""
    inodes = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(descriptor)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


async def server_settings(url: str) -> dict[str, str]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT name, setting FROM pg_settings "
            "WHERE name IN ('listen_addresses', 'unix_socket_directories', 'port')"
        )
        return {row["name"]: row["setting"] for row in rows}
    finally:
        await connection.close()


@pytest.mark.own_servers
def test_the_embedded_postgres_listens_only_on_a_unix_socket_in_data_postgres(
    tmp_path: Path,
) -> None:
    """The server `make run` starts (`embedded_postgres` on `.data/postgres`, as `wallet-api
    serve` does): reached through the socket in that folder, listening on no TCP address
    (`listen_addresses` empty, and the postmaster holds no listening TCP socket: on this
    machine another PostgreSQL may well answer on 127.0.0.1:5432, so asking that port
    would prove nothing)."""
    data = tmp_path / ".data" / "postgres"
    with embedded_postgres(data, keep_data=False) as address:
        assert Path(address.host) == data.resolve()
        assert (data / f".s.PGSQL.{address.port}").is_socket()
        settings = asyncio.run(server_settings(address.url("postgres")))
        assert settings["listen_addresses"] == "", settings
        assert settings["unix_socket_directories"] == str(data.resolve()), settings
        postmaster = int((data / "postmaster.pid").read_text().splitlines()[0])
        processes = [postmaster, *_children(postmaster)]
        held = set().union(*(socket_inodes(pid) for pid in processes))
        assert held, "the postmaster holds no socket at all: not the process asked about"
        assert not held & listening_inodes(), "the embedded PostgreSQL listens on TCP"


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the postmaster's backends and workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == pid:
                children.append(int(entry.name))
    return children
