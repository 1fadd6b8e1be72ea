"""A client of the Wallet API that makes every retry safe.

    from wallet_api_client import Client

    with Client("http://127.0.0.1:8000", api_key=None) as wallets:
        wallet = wallets.create_wallet().wallet_uuid
        print(wallets.deposit(wallet, "10.50").balance)  # Decimal('10.5')

`AsyncClient` has the same methods, awaited. See the package's README.
"""

from wallet_api_client._calls import Call
from wallet_api_client._version import __version__
from wallet_api_client.aio import AsyncClient
from wallet_api_client.client import Client
from wallet_api_client.errors import (
    ApiError,
    ConnectionFailed,
    OutcomeUnknown,
    WalletApiError,
)
from wallet_api_client.retry import NO_RETRIES, RetryPolicy

__all__ = [
    "NO_RETRIES",
    "ApiError",
    "AsyncClient",
    "Call",
    "Client",
    "ConnectionFailed",
    "OutcomeUnknown",
    "RetryPolicy",
    "WalletApiError",
    "__version__",
]
