"""`make chaos`: faults injected into the local Patroni cluster under load, each in a round
of its own, and every outcome checked against the ledger (chaos/checker.py).

Rounds: kill -9 of a worker, kill -9 of an instance's master, every backend terminated,
the primary frozen (SIGSTOP), an immediate restart of the primary, and a primary failover
(the primary's postmaster, its processes and its Patroni killed with SIGKILL: the server is
lost). In the failover round, 1,000 deposits also go through the Python client
(clients/python) with its default settings. Prints a table and JSON; exits 1 on any
violation (a lost, phantom, duplicated or misreported operation, an unsettled one, a call
through the client that ended unsettled, a ledger that does not add up) or on a service
that does not recover within the round; exits 0 with a message, having run nothing, on a
machine without etcd, HAProxy, PostgreSQL 15 or Patroni.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from chaos.checker import LedgerRow, Operation, Report, check, classify, minor_units
from wallet_api.devtools.cluster import (
    DATABASE,
    HTTP_PORT,
    INSTANCE_PORTS,
    Cluster,
    children,
    missing_requirements,
    pg_bin_dir,
    pid_alive,
)
from wallet_api_client import AsyncClient
from wallet_api_client.errors import WalletApiError

BASE_URL = f"http://127.0.0.1:{HTTP_PORT}"
#: How long a round may wait for the first 200 after its fault (the issue's targets).
TARGETS = {"failover": 30.0}
DEFAULT_TARGET = 5.0
ROUNDS = ("worker", "master", "backends", "freeze", "restart", "failover")
FREEZE_SECONDS = 3.0
OPENING_BALANCE = 100_00
#: The round in which deposits also go through the Python client, how many, and their pace
#: (spread over the round: before, during and after the fault).
CLIENT_ROUND = "failover"
CLIENT_DEPOSITS = 1000
CLIENT_RATE = 100.0
CLIENT_CONCURRENCY = 4


class Load:
    """Clients sending deposits and withdrawals with keys of their own until stopped."""

    def __init__(self, wallets: list[str], clients: int, round_name: str) -> None:
        self.wallets = wallets
        self.clients = clients
        self.prefix = f"chaos-{round_name}-{uuid.uuid4().hex[:8]}"
        self.operations: list[Operation] = []
        self._stop = asyncio.Event()
        self._counter = itertools.count()

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.clients)
        async with httpx.AsyncClient(base_url=BASE_URL, timeout=20, limits=limits) as http:
            await asyncio.gather(*(self._client(http, n) for n in range(self.clients)))

    def stop(self) -> None:
        self._stop.set()

    async def _client(self, http: httpx.AsyncClient, number: int) -> None:
        chooser = random.Random(number)
        while not self._stop.is_set():
            wallet = chooser.choice(self.wallets)
            kind = "DEPOSIT" if chooser.random() < 0.5 else "WITHDRAW"
            amount = chooser.randint(1, 8) * 100
            op = Operation(
                key=f"{self.prefix}-{next(self._counter)}",
                wallet=wallet,
                kind=kind,
                amount=amount,
                start=time.monotonic(),
            )
            self.operations.append(op)
            status, body = await send(http, op)
            op.end = time.monotonic()
            op.status, op.outcome = status, classify(status, body)
            op.code = str(body.get("code")) if body is not None and status != 200 else None
            if op.outcome == "ok" and body is not None:
                op.balance = minor_units(body["balance"])
            elif op.outcome != "ok":
                await asyncio.sleep(0.05)  # a client backs off a little after a failure


class ClientLoad:
    """Deposits of 0.01 through the Python client (clients/python) with its default
    settings, paced, each with a key of the round's (so that the checker finds it): the
    client's promise is that each call returns its result or raises an error that says
    whether it was applied, and that none applies twice."""

    def __init__(self, load: Load, total: int) -> None:
        self.load = load
        self.total = total
        self.unsettled = 0
        self._numbers = iter(range(total))

    async def run(self) -> None:
        started = time.monotonic()
        async with AsyncClient(BASE_URL) as client:
            await asyncio.gather(
                *(self._sender(client, started) for _ in range(CLIENT_CONCURRENCY))
            )

    async def _sender(self, client: AsyncClient, started: float) -> None:
        for number in self._numbers:
            await asyncio.sleep(max(0.0, started + number / CLIENT_RATE - time.monotonic()))
            wallet = self.load.wallets[number % len(self.load.wallets)]
            op = Operation(
                key=f"{self.load.prefix}-client-{number}",
                wallet=wallet,
                kind="DEPOSIT",
                amount=1,
                start=time.monotonic(),
            )
            self.load.operations.append(op)
            try:
                result = await client.deposit(wallet, "0.01", idempotency_key=op.key)
            except WalletApiError as error:
                op.status = getattr(error, "status", None)
                op.code = getattr(error, "code", None)
                op.outcome = "fail" if error.settled else "info"
                self.unsettled += 0 if error.settled else 1
            else:
                op.status, op.outcome, op.balance = 200, "ok", minor_units(result.balance)
            op.end = time.monotonic()


async def send(http: httpx.AsyncClient, op: Operation) -> tuple[int | None, dict[str, Any] | None]:
    try:
        response = await http.post(
            f"/api/v1/wallets/{op.wallet}/operation",
            json={"operation": op.kind, "amount": op.amount // 100},
            headers={"Idempotency-Key": op.key},
        )
    except httpx.HTTPError:
        return None, None
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body if isinstance(body, dict) else None


async def settle(operations: list[Operation], budget: float = 60.0) -> None:
    """Retry every `info` operation with its key until it is applied or refused."""
    pending = [op for op in operations if op.outcome == "info"]
    deadline = time.monotonic() + budget
    async with httpx.AsyncClient(base_url=BASE_URL, timeout=20) as http:
        while pending and time.monotonic() < deadline:
            results = await asyncio.gather(*(send(http, op) for op in pending))
            for op, (status, body) in zip(pending, results, strict=True):
                if status == 200 and body is not None:
                    op.settled, op.settled_balance = "applied", minor_units(body["balance"])
                elif status is not None and 400 <= status < 500:
                    op.settled = "refused"
            pending = [op for op in pending if op.settled is None]
            if pending:
                await asyncio.sleep(1)


async def primary_connection(cluster: Cluster) -> asyncpg.Connection:
    deadline = time.monotonic() + 60
    while True:
        leader = cluster.leader()
        if leader is not None:
            try:
                return await asyncpg.connect(
                    host="127.0.0.1",
                    port=leader.pg_port,
                    user="postgres",
                    password="postgres",  # noqa: S106 (the local cluster's, loopback only)
                    database=DATABASE,
                    timeout=5,
                )
            except (OSError, asyncpg.PostgresError, TimeoutError):
                pass
        if time.monotonic() > deadline:
            raise RuntimeError("no primary to read the ledger from")
        await asyncio.sleep(0.5)


async def read_ledger(cluster: Cluster, prefix: str) -> tuple[list[LedgerRow], int]:
    """The round's ledger rows, and how many wallets' ledgers do not add up (each row's
    balance_after follows from the one before, the last is the stored balance)."""
    connection = await primary_connection(cluster)
    try:
        rows = await connection.fetch(
            "SELECT idempotency_key, wallet_id::text, balance_after FROM wallet_operations "
            "WHERE idempotency_key LIKE $1",
            prefix + "-%",
        )
        inconsistent = await connection.fetchval(
            """
            WITH replay AS (
                SELECT wallet_id, id, balance_after,
                       sum(CASE WHEN operation IN ('DEPOSIT', 'TRANSFER_IN', 'REVERSAL_IN')
                                THEN amount ELSE -amount END)
                           OVER (PARTITION BY wallet_id ORDER BY id) AS running,
                       row_number() OVER (PARTITION BY wallet_id ORDER BY id DESC) AS last
                FROM wallet_operations
            )
            SELECT count(DISTINCT r.wallet_id) FROM replay r JOIN wallets w ON w.id = r.wallet_id
            WHERE r.running <> r.balance_after OR r.balance_after < 0
               OR (r.last = 1 AND r.balance_after <> w.balance)
            """
        )
    finally:
        await connection.close()
    ledger = [LedgerRow(r[0], r[1], int(r[2])) for r in rows]
    return ledger, int(inconsistent)


# -- faults: each returns the monotonic time the fault ended ----------------------------------


def signal_process(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to `pid`, which may have ended meanwhile (backends come and go)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def kill_worker(cluster: Cluster) -> float:
    master = cluster.pid("instance1")
    assert master is not None, "instance 1 is not running"
    workers = children(master)
    assert workers, "instance 1 has no workers"
    signal_process(workers[0], signal.SIGKILL)
    return time.monotonic()


def kill_master(cluster: Cluster) -> float:
    master = cluster.pid("instance1")
    assert master is not None, "instance 1 is not running"
    workers = children(master)
    os.kill(master, signal.SIGKILL)
    ended = time.monotonic()
    # A supervisor (systemd, Kubernetes) starts it again once its orphaned workers, which
    # notice their master's death, have gone and freed the port.
    deadline = time.monotonic() + 15
    while any(pid_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in workers:
        if pid_alive(pid):
            signal_process(pid, signal.SIGKILL)
    cluster.start_instance(0)
    return ended


def terminate_backends(cluster: Cluster) -> float:
    async def run() -> None:
        connection = await primary_connection(cluster)
        try:
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
        finally:
            await connection.close()

    asyncio.run(run())
    return time.monotonic()


def postgres_processes(cluster: Cluster) -> list[int]:
    leader = cluster.leader()
    assert leader is not None, "no primary"
    postmaster = leader.postmaster_pid()
    assert postmaster is not None, "the primary's postmaster is not running"
    return [postmaster, *children(postmaster)]


def freeze_primary(cluster: Cluster) -> float:
    processes = postgres_processes(cluster)
    for pid in processes:
        signal_process(pid, signal.SIGSTOP)
    try:
        time.sleep(FREEZE_SECONDS)
    finally:
        for pid in processes:
            if pid_alive(pid):
                signal_process(pid, signal.SIGCONT)
    return time.monotonic()


def restart_primary(cluster: Cluster) -> float:
    """`pg_ctl stop -m immediate` (a crash as far as clients and data go); Patroni, which
    still holds the leader key, starts it again."""
    leader = cluster.leader()
    bin_dir = pg_bin_dir()
    assert leader is not None
    assert bin_dir is not None
    subprocess.run(
        [str(bin_dir / "pg_ctl"), "stop", "-m", "immediate", "-D", str(leader.data_dir)],
        user=cluster.as_user,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return time.monotonic()


def fail_over(cluster: Cluster) -> float:
    """The primary's server is lost: its Patroni, postmaster and backends, SIGKILL at once."""
    leader = cluster.leader()
    assert leader is not None
    patroni = cluster.pid(leader.name)
    processes = postgres_processes(cluster)
    for pid in [*([patroni] if patroni else []), *processes]:
        signal_process(pid, signal.SIGKILL)
    return time.monotonic()


FAULTS: dict[str, Callable[[Cluster], float]] = {
    "worker": kill_worker,
    "master": kill_master,
    "backends": terminate_backends,
    "freeze": freeze_primary,
    "restart": restart_primary,
    "failover": fail_over,
}


def restore(cluster: Cluster, fault: str, lost_node: str | None) -> None:
    """Bring the deployment back to full strength before the next round."""
    if fault == "failover" and lost_node is not None:
        node = next(n for n in cluster.nodes if n.name == lost_node)
        cluster.start_node(node)  # it rejoins as a replica (pg_rewind if it must)
    cluster.wait_healthy(timeout=180)
    for index in range(len(INSTANCE_PORTS)):
        cluster.wait_instance(index, timeout=60)


async def run_round(
    cluster: Cluster, fault: str, wallets: list[str], *, clients: int, before: float, after: float
) -> Report:
    load = Load(wallets, clients, fault)
    runner = asyncio.create_task(load.run())
    through_client = ClientLoad(load, CLIENT_DEPOSITS if fault == CLIENT_ROUND else 0)
    client_runner = asyncio.create_task(through_client.run())
    await asyncio.sleep(before)
    fault_end = await asyncio.to_thread(FAULTS[fault], cluster)
    target = TARGETS.get(fault, DEFAULT_TARGET)
    deadline = fault_end + max(target * 2, 20.0)  # patience beyond the target, to measure
    while time.monotonic() < deadline:
        if any(op.outcome == "ok" and op.start >= fault_end for op in load.operations):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(after)
    load.stop()
    await runner
    await client_runner
    await settle(load.operations)
    ledger, inconsistent = await read_ledger(cluster, load.prefix)
    report = check(fault, load.operations, ledger, fault_end)
    report.inconsistent_wallets = inconsistent
    report.client_calls = through_client.total
    report.client_unsettled = through_client.unsettled
    return report


async def open_wallets(count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=BASE_URL, timeout=30) as http:
        wallets = []
        for _ in range(count):
            created = await http.post("/api/v1/wallets/create_wallet")
            created.raise_for_status()
            wallet = str(created.json()["wallet_uuid"])
            funded = await http.post(
                f"/api/v1/wallets/{wallet}/operation",
                json={"operation": "DEPOSIT", "amount": OPENING_BALANCE // 100},
            )
            funded.raise_for_status()
            wallets.append(wallet)
        return wallets


def print_table(reports: list[Report]) -> None:
    columns = ("fault", "ops", "ok", "fail", "unavailable", "info", "lost", "phantom", "duplicated",
               "misreported", "unsettled", "inconsistent_wallets", "internal_errors",
               "recovery_seconds")  # fmt: skip
    header = ("fault", "ops", "ok", "fail", "503", "info", "lost", "phantom", "dup", "misrep",
              "unsettled", "bad ledgers", "other 500s", "first 200 (s)")  # fmt: skip
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for report in reports:
        values = report.as_dict()
        print(" | ".join(str(values[c]) if values[c] is not None else "never" for c in columns))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__)
    parser.add_argument("--rounds", nargs="+", choices=ROUNDS, default=list(ROUNDS))
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--wallets", type=int, default=24)
    parser.add_argument("--before", type=float, default=2.0, help="seconds of load before")
    parser.add_argument("--after", type=float, default=2.0, help="seconds of load after 200s")
    parser.add_argument("--dir", type=Path, default=Path(".cluster"))
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--report", type=Path, help="write the JSON report there too")
    args = parser.parse_args(argv)

    missing = missing_requirements()
    if missing:
        print(
            "chaos: skipped, this machine lacks " + ", ".join(missing) + " (`make "
            "cluster-packages` installs them, as root with apt)"
        )
        return 0
    cluster = Cluster(args.dir)
    reports: list[Report] = []
    started = time.monotonic()
    try:
        cluster.up()
        wallets = asyncio.run(open_wallets(args.wallets))
        for fault in args.rounds:
            lost_node = cluster.leader().name if fault == "failover" else None  # type: ignore[union-attr]
            report = asyncio.run(
                run_round(
                    cluster,
                    fault,
                    wallets,
                    clients=args.clients,
                    before=args.before,
                    after=args.after,
                )
            )
            reports.append(report)
            print(f"chaos: {fault}: {json.dumps(report.as_dict())}", flush=True)
            if fault != args.rounds[-1]:
                restore(cluster, fault, lost_node)
    finally:
        if not args.keep:
            cluster.down()
    print_table(reports)
    slow = [
        r.fault
        for r in reports
        if r.recovery_seconds is None or r.recovery_seconds > TARGETS.get(r.fault, DEFAULT_TARGET)
    ]
    summary = {
        "seconds": round(time.monotonic() - started),
        "rounds": [r.as_dict() for r in reports],
        "over_target": slow,
    }
    if args.report:
        args.report.write_text(json.dumps(summary, indent=2))
    print(f"chaos: {summary['seconds']} s; over the recovery target: {slow or 'none'}")
    failed = [r.fault for r in reports if r.violations or r.recovery_seconds is None]
    if failed:
        print(f"chaos: FAILED in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
