"""Request-scoped dependencies of the wallet endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from wallet_api.core.requests import read_json_body
from wallet_api.wallets.schemas import OperationRequest
from wallet_api.wallets.service import WalletService


async def get_wallet_service(request: Request) -> WalletService:
    # async: FastAPI would run a plain `def` dependency in a worker thread, per request.
    service: WalletService = request.app.state.wallet_service
    return service


async def get_operation_request(request: Request) -> OperationRequest:
    return await read_json_body(request, OperationRequest)


WalletServiceDep = Annotated[WalletService, Depends(get_wallet_service)]
OperationRequestDep = Annotated[OperationRequest, Depends(get_operation_request)]
