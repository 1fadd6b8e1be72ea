"""Request-scoped dependencies and parameters of the wallet endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from wallet_api.wallets.cursors import CURSOR_PATTERN
from wallet_api.wallets.service import WalletService


def wallet_service(request: Request) -> WalletService:
    """The process's service, made by the application's lifespan."""
    service: WalletService = request.app.state.wallet_service
    return service


async def get_wallet_service(request: Request) -> WalletService:
    # async: FastAPI would run a plain `def` dependency in a worker thread, per request.
    return wallet_service(request)


WalletServiceDep = Annotated[WalletService, Depends(get_wallet_service)]

#: The `cursor` of a list paged newest first (a wallet's history, its holds).
PageCursor = Annotated[
    str | None,
    Query(
        pattern=CURSOR_PATTERN,
        description="The `next_cursor` of the previous page; none for the newest page.",
    ),
]
