"""Request and response bodies of the webhook endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from wallet_api.posting.events import EventType
from wallet_api.transfers.schemas import Description
from wallet_api.webhooks.repository import DeliveryRow, EndpointRow
from wallet_api.webhooks.targets import URL_MAX_LENGTH, URL_PATTERN, url_problem

#: Endpoints an owner may have: each event is sent to each of them (a bound on what one
#: owner's writes cost the sender).
ENDPOINTS_PER_OWNER = 16


def _endpoint_url(value: str) -> str:
    problem = url_problem(value)
    if problem is not None:
        raise PydanticCustomError("url", problem)
    return value


Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=URL_MAX_LENGTH,
        pattern=URL_PATTERN,
        description="http or https; a host name or an IPv4 address, and a port; no "
        "credentials, no fragment.",
    ),
    AfterValidator(_endpoint_url),
]
Types = Annotated[
    list[EventType] | None,
    Field(
        min_length=1,
        max_length=len(EventType),
        description="The event types it gets (none: every type), each at most once.",
        json_schema_extra={"uniqueItems": True},
    ),
]


def _unique(types: list[EventType] | None) -> None:
    if types is not None and len(set(types)) != len(types):
        raise PydanticCustomError("unique", "each type at most once")


ENDPOINT_REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "every event": {"url": "https://example.com/wallet-events"},
    "some types": {
        "url": "https://example.com/payments",
        "types": ["transfer.created", "hold.captured"],
        "description": "the payments service",
    },
}


class EndpointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url
    types: Types = None
    description: Description = None

    @model_validator(mode="after")
    def _types_once(self) -> Self:
        _unique(self.types)
        return self


class EndpointUpdate(BaseModel):
    """What changes; a field left out stays as it is (`"types": null`: every type)."""

    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    types: Types = None
    description: Description = None
    status: Literal["enabled", "disabled"] | None = Field(
        None, description="`enabled` again after it was disabled: its failures forgotten."
    )

    @model_validator(mode="after")
    def _types_once(self) -> Self:
        _unique(self.types)
        return self


class Endpoint(BaseModel):
    id: UUID
    url: str
    types: list[EventType] | None = Field(description="null: every type.")
    description: str | None
    status: Literal["enabled", "disabled"]
    failing_since: datetime | None = Field(
        description="Its first failed attempt since its last success; disabled once that is "
        "older than WEBHOOK_DISABLE_AFTER_SECONDS (5 days)."
    )
    created_at: datetime
    updated_at: datetime


class EndpointCreated(Endpoint):
    secret: str = Field(
        description="Signs every delivery to it (`Wallet-Signature`). Shown only here: keep it."
    )


class EndpointsPage(BaseModel):
    items: list[Endpoint]


class Attempt(BaseModel):
    attempted_at: datetime
    status_code: int | None = Field(description="null: no answer (refused, timed out).")
    duration_ms: int
    error: str | None


class Delivery(BaseModel):
    id: int
    endpoint_id: UUID
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: datetime | None = Field(description="While pending: when it is tried again.")
    created_at: datetime
    finished_at: datetime | None
    tries: list[Attempt]


class DeliveriesPage(BaseModel):
    items: list[Delivery]


class RedeliverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_id: UUID | None = Field(
        None, description="Only to this endpoint (none: every enabled endpoint that takes it)."
    )


def endpoint_document(row: EndpointRow, *, secret: bool = False) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": str(row.id),
        "url": row.url,
        "types": row.types,
        "description": row.description,
        "status": row.status,
        "failing_since": row.failing_since,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if secret:
        document["secret"] = row.secret
    return document


def delivery_document(row: DeliveryRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "endpoint_id": str(row.endpoint_id),
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at if row.status == "pending" else None,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
        "tries": orjson.Fragment(row.tries),
    }
