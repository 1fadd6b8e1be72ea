"""Locust scenario: the single-wallet mix spread at random over a pool of many wallets."""

from __future__ import annotations

from locust import events

from load_tests.common import WalletPool, WalletUser

# Enough wallets that most concurrent operations hit different rows, few enough that
# some still meet on the same wallet.
WALLETS = WalletPool(size=100)
events.test_start.add_listener(WALLETS.reset)  # type: ignore[no-untyped-call]


class MultiWalletUser(WalletUser):
    """A client picking one of the pool's wallets at random for each request."""

    pool = WALLETS
