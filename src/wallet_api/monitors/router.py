"""HTTP endpoints of balance monitors: parse, call the service once, render."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response, status

from wallet_api.auth.gate import owner_of
from wallet_api.core.errors import (
    DatabaseUnavailable,
    InternalError,
    ValidationFailed,
    refuse_other_methods,
)
from wallet_api.core.openapi import error_responses, json_request_body
from wallet_api.core.requests import read_json_body
from wallet_api.core.responses import json_response
from wallet_api.monitors.exceptions import MonitorNotFound, TooManyMonitors
from wallet_api.monitors.schemas import (
    MONITOR_REQUEST_EXAMPLES,
    Monitor,
    MonitorRequest,
    MonitorsPage,
)
from wallet_api.monitors.service import MonitorService
from wallet_api.wallets.exceptions import WalletNotFound

router = APIRouter(prefix="/api/v1/wallets", tags=["events"])
_FAILURES = (ValidationFailed, InternalError, DatabaseUnavailable)


def monitor_service(request: Request) -> MonitorService:
    """The process's service, made by the application's lifespan."""
    service: MonitorService = request.app.state.monitor_service
    return service


@router.post(
    "/{wallet_uuid}/balance_monitors",
    status_code=status.HTTP_201_CREATED,
    response_model=Monitor,
    responses=error_responses(WalletNotFound, TooManyMonitors, *_FAILURES),
    openapi_extra=json_request_body(MonitorRequest, MONITOR_REQUEST_EXAMPLES),
)
async def create_balance_monitor(wallet_uuid: UUID, request: Request) -> Response:
    """Watch the wallet's available balance: the commit that takes it below (or above) the
    threshold writes one `balance_monitor.triggered` event, and no other while it stays
    there (docs/EVENTS.md)."""
    body = await read_json_body(request, MonitorRequest)
    document = await monitor_service(request).create(
        wallet_uuid, body, owner=owner_of(request.scope)
    )
    return json_response(document, status_code=status.HTTP_201_CREATED)


@router.get(
    "/{wallet_uuid}/balance_monitors",
    response_model=MonitorsPage,
    responses=error_responses(WalletNotFound, *_FAILURES),
)
async def list_balance_monitors(wallet_uuid: UUID, request: Request) -> Response:
    """The wallet's monitors, oldest first, each with its state now."""
    items = await monitor_service(request).of_wallet(wallet_uuid, owner=owner_of(request.scope))
    return json_response({"items": items})


@router.delete(
    "/{wallet_uuid}/balance_monitors/{monitor_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(WalletNotFound, MonitorNotFound, *_FAILURES),
)
async def delete_balance_monitor(wallet_uuid: UUID, monitor_id: UUID, request: Request) -> Response:
    """Stop watching."""
    await monitor_service(request).delete(wallet_uuid, monitor_id, owner=owner_of(request.scope))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# A path served by two routes, one per method: any other method is a 405 naming both.
refuse_other_methods(router, "/{wallet_uuid}/balance_monitors", ("GET", "POST"))
