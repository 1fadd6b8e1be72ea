"""Request-scoped dependencies of the wallet endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from wallet_api.wallets.service import WalletService


def wallet_service(request: Request) -> WalletService:
    """The process's service, made by the application's lifespan."""
    service: WalletService = request.app.state.wallet_service
    return service


async def get_wallet_service(request: Request) -> WalletService:
    # async: FastAPI would run a plain `def` dependency in a worker thread, per request.
    return wallet_service(request)


WalletServiceDep = Annotated[WalletService, Depends(get_wallet_service)]
