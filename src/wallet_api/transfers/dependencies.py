"""Request-scoped dependencies of the transfer endpoints."""

from __future__ import annotations

from fastapi import Request

from wallet_api.transfers.service import TransferService


def transfer_service(request: Request) -> TransferService:
    """The process's service, made by the application's lifespan."""
    service: TransferService = request.app.state.transfer_service
    return service
