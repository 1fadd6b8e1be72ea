"""A highly available deployment on this machine, for `make cluster` and `make chaos`.

etcd (the DCS), Patroni managing PostgreSQL 15 nodes with synchronous replication, two
instances of the service (Gunicorn) that reach the primary through DB_HOST's list of every
node, and HAProxy in front: requests routed by wallet id, plus a port that leads to the
primary. Local processes on loopback only; data, logs and pid files under `.cluster/`.

`python -m wallet_api.devtools.cluster up|down|status`. As root, PostgreSQL and Patroni
run as the `postgres` system user (PostgreSQL refuses root).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

#: Ports, a range of their own (5432, 6379 and 8000 are often taken).
HTTP_PORT = 17000  # HAProxy: the service, routed by wallet id
PRIMARY_PORT = 17500  # HAProxy: whichever node is the primary now
STATS_PORT = 17404  # HAProxy's statistics page
INSTANCE_PORTS = (17001, 17002)
ETCD_CLIENT_PORT, ETCD_PEER_PORT = 17379, 17380
NODE_COUNT = 3
DATABASE = "wallets"
#: Patroni's timing (seconds): the leader key lives `ttl` after its last renewal, renewed
#: every `loop_wait`. A primary that dies is replaced `ttl` after its last renewal at most
#: (20 is Patroni's smallest), plus a loop to promote. `retry_timeout`: how long a DCS or
#: PostgreSQL call is retried before the primary demotes itself.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 20, 1, 5
PG_BIN_CANDIDATES = (Path("/usr/lib/postgresql/15/bin"),)
SYSTEM_USER = "postgres"


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / name).exists()), None
    )


def missing_requirements() -> list[str]:
    """What this machine lacks to run the cluster (empty: nothing)."""
    missing = []
    if _which("etcd") is None:
        missing.append("etcd (Debian: etcd-server)")
    if _which("haproxy") is None:
        missing.append("haproxy (Debian: haproxy)")
    if pg_bin_dir() is None:
        missing.append("PostgreSQL 15 server binaries (Debian: postgresql-15)")
    if importlib.util.find_spec("patroni") is None:
        missing.append("patroni (pip install '.[cluster]')")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            missing.append(f"the {SYSTEM_USER} system user (PostgreSQL does not run as root)")
    return missing


def pg_bin_dir() -> Path | None:
    return next((d for d in PG_BIN_CANDIDATES if (d / "postgres").exists()), None)


@dataclass(frozen=True)
class Node:
    """One PostgreSQL server and its Patroni."""

    index: int
    home: Path  # the node's directory: data, socket, Patroni's configuration

    @property
    def name(self) -> str:
        return f"pg{self.index + 1}"

    @property
    def pg_port(self) -> int:
        return 17432 + self.index

    @property
    def api_port(self) -> int:
        return 17008 + self.index

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def postmaster_pid(self) -> int | None:
        """The postmaster's process id, if one runs."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = Path(f"/proc/{pid}/stat")
    try:
        return state.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # not a zombie
    except (OSError, IndexError):
        return False


def children(pid: int) -> list[int]:
    """The process ids whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
        return json.load(response)


class Cluster:
    """The processes of the deployment, each started detached with its pid in a file, so
    that another command (`down`, the fault suite) finds and stops them."""

    def __init__(self, base: Path, root: Path | None = None) -> None:
        self.base = base.resolve()
        self.root = (root or Path.cwd()).resolve()  # the repository (gunicorn.conf.py)
        self.nodes = [Node(i, self.base / f"pg{i + 1}") for i in range(NODE_COUNT)]
        self.as_user = SYSTEM_USER if os.geteuid() == 0 else None

    # -- processes ------------------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.base / "pids" / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        try:
            pid = int(self._pid_file(name).read_text())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> int:
        log = (self.base / "logs" / f"{name}.log").open("ab")
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd or self.base,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            start_new_session=True,  # a terminal's Ctrl-C does not reach it
        )
        log.close()
        self._pid_file(name).write_text(str(process.pid))
        return process.pid

    def _stop(self, name: str, timeout: float = 30.0) -> None:
        pid = self.pid(name)
        if pid is not None:
            _terminate(pid, timeout)
        self._pid_file(name).unlink(missing_ok=True)

    # -- the pieces -----------------------------------------------------------------------

    def start_etcd(self) -> None:
        data = self.base / "etcd"
        client = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"
        peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        self._spawn(
            "etcd",
            [
                str(_which("etcd")), "--name", "etcd0", "--data-dir", str(data),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"etcd0={peer}", "--initial-cluster-state", "new",
            ],
            env={"ETCD_UNSUPPORTED_ARCH": ""},
        )  # fmt: skip
        _wait(lambda: _get_json(f"{client}/health").get("health") == "true", 30, "etcd")

    def _patroni_config(self, node: Node) -> dict[str, Any]:
        bin_dir = pg_bin_dir()
        assert bin_dir is not None
        trusted = ["local all all trust", "host all all 127.0.0.1/32 trust"]
        return {
            "scope": "wallets",
            "name": node.name,
            "restapi": {
                "listen": f"127.0.0.1:{node.api_port}",
                "connect_address": f"127.0.0.1:{node.api_port}",
            },
            "etcd3": {"hosts": [f"127.0.0.1:{ETCD_CLIENT_PORT}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL,
                    "loop_wait": LOOP_WAIT,
                    "retry_timeout": RETRY_TIMEOUT,
                    "maximum_lag_on_failover": 1 << 20,
                    # A commit is acknowledged once a synchronous standby has it, and only
                    # a synchronous standby may be promoted: no acknowledged commit is lost
                    # at failover. Not strict: with no standby left, the primary goes on
                    # alone (available, but a commit then lives on one server until a
                    # standby returns; see docs/SCALING.md).
                    "synchronous_mode": True,
                    "synchronous_mode_strict": False,
                    "synchronous_node_count": 1,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "wal_log_hints": "on",  # pg_rewind of a former primary
                            "max_connections": 200,
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "wal_keep_size": "256MB",
                            "synchronous_commit": "on",
                            "shared_buffers": "64MB",
                            # A restart after a crash: one syncfs() of the file system
                            # instead of an fsync() of every file (about 2 s here).
                            "recovery_init_sync_method": "syncfs",
                            # A standby whose primary went away tries again after 1 s, not
                            # 5: commits wait for the synchronous one to be back.
                            "wal_retrieve_retry_interval": "1s",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"auth": "trust"}],
                "pg_hba": [
                    *trusted,
                    "local replication all trust",
                    "host replication all 127.0.0.1/32 trust",
                ],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.pg_port}",
                "connect_address": f"127.0.0.1:{node.pg_port}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(bin_dir),
                "pgpass": str(node.home / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": "postgres"},
                    "replication": {"username": "replicator", "password": "replicator"},
                    "rewind": {"username": "postgres", "password": "postgres"},
                },
                "parameters": {"unix_socket_directories": str(node.home)},
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
            "tags": {"nofailover": False, "noloadbalance": False},
        }

    def start_node(self, node: Node) -> None:
        """Start the node's Patroni (which starts, or bootstraps, its PostgreSQL)."""
        node.home.mkdir(parents=True, exist_ok=True)
        config = node.home / "patroni.yml"
        config.write_text(json.dumps(self._patroni_config(node), indent=2))  # JSON is YAML
        if self.as_user is not None:
            entry = pwd.getpwnam(self.as_user)
            for path in (node.home, config):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            node.home.chmod(0o700)
        python, python_env = self._python_for_system_user()
        self._spawn(
            node.name,
            [python, "-m", "patroni", str(config)],
            env={"HOME": str(node.home), "PATRONI_LOG_LEVEL": "INFO", **python_env},
            user=self.as_user,
            cwd=node.home,
        )

    def _python_for_system_user(self) -> tuple[str, dict[str, str]]:
        """An interpreter the system user may run, with this environment's packages: this
        one, or (when it lives where that user cannot reach, as under /root) the system's
        Python of the same version, given this environment's site-packages."""
        if self.as_user is None:
            return sys.executable, {}
        probe = [sys.executable, "-c", "import patroni"]
        try:
            reachable = not subprocess.run(
                probe, user=self.as_user, capture_output=True, check=False
            ).returncode
        except PermissionError:
            reachable = False
        if not reachable:
            system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
            return str(system), {"PYTHONPATH": sysconfig.get_paths()["purelib"]}
        return sys.executable, {}

    def members(self) -> list[dict[str, Any]]:
        """Patroni's view of the cluster (name, role, state, lag), from any node answering."""
        for node in self.nodes:
            try:
                return list(_get_json(f"http://127.0.0.1:{node.api_port}/cluster")["members"])
            except (OSError, ValueError, KeyError):
                continue
        return []

    def leader(self) -> Node | None:
        for member in self.members():
            if member.get("role") == "leader" and member.get("state") == "running":
                return next(node for node in self.nodes if node.name == member["name"])
        return None

    def healthy(self) -> bool:
        """A running leader, every node a streaming replica of it, one synchronous."""
        members = self.members()
        roles = sorted(str(m.get("role")) for m in members)
        return (
            len(members) == NODE_COUNT
            and roles.count("leader") == 1
            and "sync_standby" in roles
            and all(m.get("state") in {"running", "streaming"} for m in members)
        )

    def wait_healthy(self, timeout: float = 120.0) -> None:
        _wait(self.healthy, timeout, f"the cluster ({self.members()})")

    def db_hosts(self) -> str:
        return ",".join(f"127.0.0.1:{node.pg_port}" for node in self.nodes)

    def service_environment(self) -> dict[str, str]:
        return {
            "DB_HOST": self.db_hosts(),
            "DB_NAME": DATABASE,
            "DB_USER": "postgres",
            "DB_PASSWORD": "postgres",
            "DB_CONNECT_TIMEOUT": "2",
            "DB_POOL_SIZE": "8",
            "DB_MAX_OVERFLOW": "8",
            "WORKERS_COUNT": "2",
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
        }

    def prepare_database(self) -> None:
        """Create the service's database on the primary, and migrate it."""
        leader = self.leader()
        assert leader is not None

        async def create() -> None:
            connection = await asyncpg.connect(
                host="127.0.0.1", port=leader.pg_port, user="postgres", database="postgres"
            )
            try:
                if not await connection.fetchval(
                    "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE
                ):
                    await connection.execute(f'CREATE DATABASE "{DATABASE}"')
            finally:
                await connection.close()

        asyncio.run(create())
        subprocess.run(
            [sys.executable, "-m", "wallet_api.cli", "migrate"],
            cwd=self.root,
            env={**os.environ, **self.service_environment()},
            check=True,
            timeout=120,
        )

    def start_instance(self, index: int) -> None:
        port = INSTANCE_PORTS[index]
        self._spawn(
            f"instance{index + 1}",
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"],
            env={**self.service_environment(), "HOST": "127.0.0.1", "PORT": str(port)},
            cwd=self.root,
        )

    def wait_instance(self, index: int, timeout: float = 60.0) -> None:
        url = f"http://127.0.0.1:{INSTANCE_PORTS[index]}/health/ready"
        _wait(lambda: _get_json(url).get("status") == "ok", timeout, f"instance {index + 1}")

    def haproxy_config(
        self, instances: int = len(INSTANCE_PORTS), balance: str = "uri depth 4"
    ) -> str:
        servers = "\n".join(
            f"    server i{i + 1} 127.0.0.1:{port} check"
            for i, port in enumerate(INSTANCE_PORTS[:instances])
        )
        nodes = "\n".join(
            f"    server {n.name} 127.0.0.1:{n.pg_port} check port {n.api_port}" for n in self.nodes
        )
        return f"""global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # A connection refused by a dead instance is tried on another (the request was not
    # sent, so this never runs an operation twice).
    retries 2
    option redispatch

frontend wallets
    bind 127.0.0.1:{HTTP_PORT}
    default_backend instances

# One wallet's requests meet in one instance, where its operations coalesce: the first
# four path segments (/api/v1/wallets/<id>) are hashed, consistently, so that an instance
# that leaves moves only its own wallets.
backend instances
    balance {balance}
    hash-type consistent
    option httpchk GET /health/live
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
{servers}

# The primary, whichever node it is: Patroni's REST API answers GET /primary with 200 on
# the leader only. Sessions to a node that stops being it are cut.
listen primary
    bind 127.0.0.1:{PRIMARY_PORT}
    mode tcp
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
{nodes}

listen stats
    bind 127.0.0.1:{STATS_PORT}
    stats enable
    stats uri /
"""

    def start_haproxy(
        self, instances: int = len(INSTANCE_PORTS), balance: str = "uri depth 4"
    ) -> None:
        """Start HAProxy in front of the first `instances` (stopping one that runs);
        `balance`: HAProxy's algorithm for the service (`roundrobin` to compare)."""
        self._stop("haproxy")
        config = self.base / "haproxy.cfg"
        config.write_text(self.haproxy_config(instances, balance))
        self._spawn("haproxy", [str(_which("haproxy")), "-db", "-f", str(config)])
        url = f"http://127.0.0.1:{HTTP_PORT}/health/ready"
        _wait(lambda: _get_json(url).get("status") == "ok", 30, "HAProxy")

    # -- the whole ------------------------------------------------------------------------

    def up(self) -> None:
        missing = missing_requirements()
        if missing:
            raise SystemExit("cluster: missing " + ", ".join(missing))
        self.down(quiet=True)
        shutil.rmtree(self.base, ignore_errors=True)
        for directory in ("pids", "logs"):
            (self.base / directory).mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)  # the postgres user walks into its node's directory
        started = time.monotonic()
        self.start_etcd()
        for node in self.nodes:
            self.start_node(node)
            if node.index == 0:  # the first bootstraps; the others copy it
                _wait(lambda: self.leader() is not None, 90, "the first node")
        self.wait_healthy()
        self.prepare_database()
        for index in range(len(INSTANCE_PORTS)):
            self.start_instance(index)
        for index in range(len(INSTANCE_PORTS)):
            self.wait_instance(index)
        self.start_haproxy()
        print(f"cluster: up in {time.monotonic() - started:.0f} s")
        self.status()

    def status(self) -> None:
        for member in self.members():
            print(
                f"  {member['name']}: {member.get('role')} ({member.get('state')}), "
                f"lag {member.get('lag', 0)}"
            )
        print(f"  service: http://127.0.0.1:{HTTP_PORT} (instances {INSTANCE_PORTS})")
        print(f"  primary: postgresql://postgres:postgres@127.0.0.1:{PRIMARY_PORT}/{DATABASE}")
        print(f"  DB_HOST={self.db_hosts()}")
        print(f"  HAProxy statistics: http://127.0.0.1:{STATS_PORT}/")

    def down(self, *, quiet: bool = False) -> None:
        """Stop every process of the deployment; the data stays until the next `up`."""
        if not self.base.exists():
            return
        self._stop("haproxy")
        for index in range(len(INSTANCE_PORTS)):
            self._stop(f"instance{index + 1}")
        for node in self.nodes:
            self._stop(node.name)  # Patroni stops its PostgreSQL
        for node in self.nodes:  # a PostgreSQL whose Patroni was killed
            pid = node.postmaster_pid()
            if pid is not None:
                _terminate(pid, 30, signal.SIGQUIT)
        self._stop("etcd")
        if not quiet:
            print("cluster: stopped")


def _terminate(pid: int, timeout: float, sig: signal.Signals = signal.SIGTERM) -> None:
    """Signal `pid` and wait for it to go; SIGKILL after `timeout` seconds."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.1)


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (OSError, ValueError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.3)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wallet_api.devtools.cluster")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"))
    args = parser.parse_args(argv)
    cluster = Cluster(args.dir)
    if args.command == "up":
        try:
            cluster.up()
        except BaseException:
            print(f"cluster: failed; logs in {cluster.base / 'logs'}", file=sys.stderr)
            cluster.down(quiet=True)
            raise
    elif args.command == "down":
        cluster.down()
    else:
        cluster.status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
