"""Locust scenario: every user reads, deposits to and withdraws from one shared hot wallet."""

from __future__ import annotations

from locust import events

from load_tests.common import WalletPool, WalletUser

# One wallet per Locust process (each worker of a distributed run makes its own).
WALLET = WalletPool(size=1)
events.test_start.add_listener(WALLET.reset)  # type: ignore[no-untyped-call]


class SingleWalletUser(WalletUser):
    """A client of the one hot wallet."""

    pool = WALLET
