"""What both Locust scenarios share: wallet setup, the three tasks and the response checks."""

from __future__ import annotations

import random
import threading
import time
from typing import Any, ClassVar

from locust import constant, task
from locust.contrib.fasthttp import FastHttpSession, FastHttpUser, ResponseContextManager

API = "/api/v1/wallets"
# Fixed names group every wallet's requests into one row of Locust's statistics.
CREATE_NAME = f"{API}/create_wallet"
BALANCE_NAME = f"{API}/[id]"
OPERATION_NAME = f"{API}/[id]/operation"

# A balance this large never runs out under withdrawals of at most MAX_CENTS that are
# matched by as many deposits, so `insufficient_funds` stays a rare, tolerated answer.
FUNDING_AMOUNT = "1000000000.00"
MIN_CENTS = 1
MAX_CENTS = 500

# After a failed setup, wait before trying again so that a server that is down is not
# hammered in a tight loop; the failed attempts are already in the statistics.
SETUP_RETRY_SECONDS = 1.0


def small_amount() -> str:
    """A random amount as a numeric string with two decimals, as a careful client sends it."""
    cents = random.randint(MIN_CENTS, MAX_CENTS)
    return f"{cents // 100}.{cents % 100:02d}"


def _json_object(response: ResponseContextManager) -> dict[str, Any] | None:
    try:
        body = response.json()
    except (TypeError, ValueError):  # no body (TypeError) or not JSON (ValueError)
        return None
    return body if isinstance(body, dict) else None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Locust's own annotations leave these two untyped; wrapped once so that mypy stays strict.
def _succeed(response: ResponseContextManager) -> None:
    response.success()  # type: ignore[no-untyped-call]


def _fail(response: ResponseContextManager, message: str) -> None:
    response.failure(message)  # type: ignore[no-untyped-call]


def _fail_status(response: ResponseContextManager) -> None:
    body = _json_object(response) or {}
    # Only the status and the stable code: Locust groups failures by their message, so
    # anything per request (request id, balance) would split one cause into many rows.
    _fail(response, f"HTTP {response.status_code} {body.get('code', 'no problem code')}")


def check_balance(response: ResponseContextManager) -> None:
    """Pass a 200 carrying a numeric balance; fail anything else."""
    if response.status_code == 0:
        return  # no response at all: Locust records the connection error itself
    if response.status_code != 200:
        _fail_status(response)
        return
    body = _json_object(response)
    if body is None or not _is_number(body.get("balance")):
        _fail(response, "HTTP 200 without a numeric balance")
        return
    _succeed(response)


def check_operation(response: ResponseContextManager, operation: str) -> None:
    """Pass a successful operation, and a withdrawal refused for insufficient funds."""
    if response.status_code == 0:
        return  # no response at all: Locust records the connection error itself
    if response.status_code == 400 and operation == "WITHDRAW":
        refusal = _json_object(response) or {}
        if refusal.get("code") == "insufficient_funds":
            _succeed(response)  # a correct refusal, not a failure of the service
            return
    if response.status_code != 200:
        _fail_status(response)
        return
    body = _json_object(response)
    if body is None or body.get("status") != "success" or not _is_number(body.get("balance")):
        _fail(response, "HTTP 200 without status 'success' and a numeric balance")
        return
    _succeed(response)


# The requests below bind the response before `with`: its `__enter__` is untyped and
# would turn the response into `Any`.


def get_balance(client: FastHttpSession, wallet_id: str) -> None:
    """GET the wallet's balance."""
    response = client.get(f"{API}/{wallet_id}", name=BALANCE_NAME, catch_response=True)
    with response:
        check_balance(response)


def operate(
    client: FastHttpSession, wallet_id: str, operation: str, amount: str, *, label: str = ""
) -> bool:
    """POST one operation; True when it was counted as a success."""
    response = client.post(
        f"{API}/{wallet_id}/operation",
        json={"operation": operation, "amount": amount},
        name=f"{OPERATION_NAME} {label or operation}",
        catch_response=True,
    )
    with response:
        check_operation(response, operation)
        return response.status_code == 200


def create_funded_wallet(client: FastHttpSession) -> str | None:
    """Create a wallet and deposit FUNDING_AMOUNT; its id, or None when either step failed."""
    response = client.post(CREATE_NAME, name=CREATE_NAME, catch_response=True)
    with response:
        if response.status_code == 0:
            return None
        body = _json_object(response) if response.status_code == 201 else None
        wallet_id = body.get("wallet_uuid") if body is not None else None
        if not isinstance(wallet_id, str):
            if response.status_code == 201:
                _fail(response, "HTTP 201 without a wallet_uuid")
            else:
                _fail_status(response)
            return None
        _succeed(response)
    # A row of its own, so that the setup does not skew the DEPOSIT latencies.
    if not operate(client, wallet_id, "DEPOSIT", FUNDING_AMOUNT, label="DEPOSIT funding"):
        return None
    return wallet_id


class WalletPool:
    """Up to `size` funded wallets shared by every user of this Locust process.

    Filled on first use, under a lock, by whichever user gets there first: the setup
    requests go through a user's client, so they are measured and a failure counts.
    Locust monkey-patches `threading` and `time` with gevent, so the lock and the sleep
    yield to the other users instead of blocking the process.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._wallet_ids: list[str] = []
        self._lock = threading.Lock()
        self._retry_at = 0.0

    def reset(self, **_kwargs: object) -> None:
        """Forget the wallets, so that each run (a web UI may start several) makes its own."""
        self._wallet_ids = []
        self._retry_at = 0.0

    def pick(self, client: FastHttpSession) -> str | None:
        """A random wallet of the pool, completing the pool first; None when setup failed."""
        if len(self._wallet_ids) < self.size and time.monotonic() >= self._retry_at:
            with self._lock:
                self._fill(client)
        if not self._wallet_ids:
            time.sleep(SETUP_RETRY_SECONDS)
            return None
        return random.choice(self._wallet_ids)

    def _fill(self, client: FastHttpSession) -> None:
        # Checked again under the lock: another user may have filled the pool meanwhile.
        while len(self._wallet_ids) < self.size and time.monotonic() >= self._retry_at:
            wallet_id = create_funded_wallet(client)
            if wallet_id is None:
                self._retry_at = time.monotonic() + SETUP_RETRY_SECONDS
                return
            self._wallet_ids.append(wallet_id)


class WalletUser(FastHttpUser):
    """Reads, deposits and withdraws small amounts on wallets drawn from `pool`."""

    abstract = True
    pool: ClassVar[WalletPool]
    # No think time: each user is a client sending its next request as soon as it can.
    wait_time = constant(0)

    @task(2)
    def balance(self) -> None:
        wallet_id = self.pool.pick(self.client)
        if wallet_id is not None:
            get_balance(self.client, wallet_id)

    @task(3)
    def deposit(self) -> None:
        wallet_id = self.pool.pick(self.client)
        if wallet_id is not None:
            operate(self.client, wallet_id, "DEPOSIT", small_amount())

    @task(3)
    def withdraw(self) -> None:
        wallet_id = self.pool.pick(self.client)
        if wallet_id is not None:
            operate(self.client, wallet_id, "WITHDRAW", small_amount())
