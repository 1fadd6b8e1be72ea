"""HTTP endpoints of webhooks: an owner's endpoints, and an event's deliveries."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Request, Response, status

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
from wallet_api.events.exceptions import EventNotFound
from wallet_api.webhooks.exceptions import TooManyWebhookEndpoints, WebhookEndpointNotFound
from wallet_api.webhooks.schemas import (
    ENDPOINT_REQUEST_EXAMPLES,
    DeliveriesPage,
    Endpoint,
    EndpointCreated,
    EndpointRequest,
    EndpointsPage,
    EndpointUpdate,
    RedeliverRequest,
)
from wallet_api.webhooks.service import WebhookService

router = APIRouter(prefix="/api/v1/webhook_endpoints", tags=["webhooks"])
deliveries_router = APIRouter(prefix="/api/v1/events", tags=["webhooks"])

_FAILURES = (ValidationFailed, InternalError, DatabaseUnavailable)
EventId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def webhook_service(request: Request) -> WebhookService:
    """The process's service, made by the application's lifespan."""
    service: WebhookService = request.app.state.webhook_service
    return service


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EndpointCreated,
    responses=error_responses(TooManyWebhookEndpoints, *_FAILURES),
    openapi_extra=json_request_body(EndpointRequest, ENDPOINT_REQUEST_EXAMPLES),
)
async def create_webhook_endpoint(request: Request) -> Response:
    """Send the owner's events to a URL: each event a POST of its JSON, retried until a
    2xx. The answer carries the signing `secret`, shown this once.

    **Verifying a delivery.** The header `Wallet-Signature: t=<unix seconds>,v1=<hex>`:
    `v1` is HMAC-SHA256, keyed by the secret, of `t`, a dot, and the body exactly as
    received (bytes, before parsing). Recompute it, compare in constant time, and refuse a
    `t` more than 5 minutes from your clock (a recorded delivery replayed later). A
    delivery may come more than once: drop a duplicate by the event's `id` (also in the
    `Wallet-Event-Id` header, which the signature does not cover). The Python client's
    `wallet_api_client.webhooks.verify` does all of this (docs/EVENTS.md)."""
    body = await read_json_body(request, EndpointRequest)
    document = await webhook_service(request).create(body, owner=owner_of(request.scope))
    return json_response(document, status_code=status.HTTP_201_CREATED)


@router.get("", response_model=EndpointsPage, responses=error_responses(*_FAILURES))
async def list_webhook_endpoints(request: Request) -> Response:
    """The owner's endpoints, oldest first (without their secrets)."""
    items = await webhook_service(request).all(owner=owner_of(request.scope))
    return json_response({"items": items})


@router.get(
    "/{endpoint_id}",
    response_model=Endpoint,
    responses=error_responses(WebhookEndpointNotFound, *_FAILURES),
)
async def get_webhook_endpoint(endpoint_id: UUID, request: Request) -> Response:
    """One endpoint (without its secret)."""
    return json_response(
        await webhook_service(request).get(endpoint_id, owner=owner_of(request.scope))
    )


@router.patch(
    "/{endpoint_id}",
    response_model=Endpoint,
    responses=error_responses(WebhookEndpointNotFound, *_FAILURES),
    openapi_extra=json_request_body(
        EndpointUpdate, {"disable": {"status": "disabled"}, "every type": {"types": None}}
    ),
)
async def update_webhook_endpoint(endpoint_id: UUID, request: Request) -> Response:
    """Change an endpoint's URL, types, description or status."""
    change = await read_json_body(request, EndpointUpdate)
    document = await webhook_service(request).update(
        endpoint_id, change, owner=owner_of(request.scope)
    )
    return json_response(document)


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(WebhookEndpointNotFound, *_FAILURES),
)
async def delete_webhook_endpoint(endpoint_id: UUID, request: Request) -> Response:
    """Delete an endpoint, and the record of its deliveries; nothing more is sent to it."""
    await webhook_service(request).delete(endpoint_id, owner=owner_of(request.scope))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@deliveries_router.get(
    "/{event_id}/deliveries",
    response_model=DeliveriesPage,
    responses=error_responses(EventNotFound, *_FAILURES),
)
async def list_event_deliveries(event_id: EventId, request: Request) -> Response:
    """Every delivery of an event to the owner's endpoints, with each attempt: its answer's
    status (none when there was no answer), how long it took, what went wrong."""
    items = await webhook_service(request).deliveries(event_id, owner=owner_of(request.scope))
    return json_response({"items": items})


@deliveries_router.post(
    "/{event_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveriesPage,
    responses=error_responses(EventNotFound, WebhookEndpointNotFound, *_FAILURES),
    openapi_extra=json_request_body(
        RedeliverRequest,
        {
            "to every endpoint": {},
            "to one": {"endpoint_id": "0b7d1c52-5f0e-4c3a-9d1e-2a6b8c4f7e31"},
        },
    ),
)
async def redeliver_event(event_id: EventId, request: Request) -> Response:
    """Send an event again: a new delivery to the named endpoint, or to each enabled one
    that takes it (a receiver drops the duplicate by its id if it had it)."""
    body = await read_json_body(request, RedeliverRequest)
    items = await webhook_service(request).redeliver(
        event_id, body.endpoint_id, owner=owner_of(request.scope)
    )
    return json_response({"items": items}, status_code=status.HTTP_202_ACCEPTED)


# Paths served by several routes, one per method: any other method is a 405 naming them all.
refuse_other_methods(router, "", ("GET", "POST"))
refuse_other_methods(router, "/{endpoint_id}", ("GET", "PATCH", "DELETE"))
