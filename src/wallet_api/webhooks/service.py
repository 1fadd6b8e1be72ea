"""An owner's webhook endpoints, and the deliveries of its events: read, and made again."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from wallet_api.core.database import Database
from wallet_api.events.service import EventFeed
from wallet_api.webhooks import repository
from wallet_api.webhooks.exceptions import TooManyWebhookEndpoints, WebhookEndpointNotFound
from wallet_api.webhooks.schemas import (
    ENDPOINTS_PER_OWNER,
    EndpointRequest,
    EndpointUpdate,
    delivery_document,
    endpoint_document,
)
from wallet_api.webhooks.signing import new_secret


class WebhookService:
    def __init__(self, database: Database, feed: EventFeed) -> None:
        self._database = database
        self._feed = feed

    async def create(self, request: EndpointRequest, *, owner: str | None) -> dict[str, Any]:
        """A new endpoint of `owner`, with its secret (shown this once)."""
        async with self._database.transaction() as connection:
            row = await repository.create_endpoint(
                connection,
                uuid.uuid4(),
                owner=owner,
                url=request.url,
                types=None if request.types is None else [str(t) for t in request.types],
                description=request.description,
                secret=new_secret(),
                limit=ENDPOINTS_PER_OWNER,
            )
        if row is None:
            raise TooManyWebhookEndpoints(ENDPOINTS_PER_OWNER)
        return endpoint_document(row, secret=True)

    async def all(self, *, owner: str | None) -> list[dict[str, Any]]:
        async with self._database.autocommit() as connection:
            rows = await repository.endpoints(connection, owner=owner, everyone=owner is None)
        return [endpoint_document(row) for row in rows]

    async def get(self, endpoint_id: UUID, *, owner: str | None) -> dict[str, Any]:
        async with self._database.autocommit() as connection:
            row = await repository.endpoint(connection, endpoint_id, owner=owner)
        if row is None:
            raise WebhookEndpointNotFound(endpoint_id)
        return endpoint_document(row)

    async def update(
        self, endpoint_id: UUID, change: EndpointUpdate, *, owner: str | None
    ) -> dict[str, Any]:
        given = change.model_fields_set
        types = None if change.types is None else [str(t) for t in change.types]
        async with self._database.autocommit() as connection:
            row = await repository.update_endpoint(
                connection,
                endpoint_id,
                owner=owner,
                url=change.url,
                types=("types" in given, types),
                description=("description" in given, change.description),
                status=change.status,
            )
        if row is None:
            raise WebhookEndpointNotFound(endpoint_id)
        return endpoint_document(row)

    async def delete(self, endpoint_id: UUID, *, owner: str | None) -> None:
        async with self._database.autocommit() as connection:
            deleted = await repository.delete_endpoint(connection, endpoint_id, owner=owner)
        if not deleted:
            raise WebhookEndpointNotFound(endpoint_id)

    async def deliveries(self, event_id: int, *, owner: str | None) -> list[dict[str, Any]]:
        """Every delivery of one of `owner`'s events, with each attempt."""
        await self._feed.one(event_id, owner=owner)  # another owner's: event_not_found
        async with self._database.autocommit() as connection:
            rows = await repository.deliveries(connection, event_id)
        return [delivery_document(row) for row in rows]

    async def redeliver(
        self, event_id: int, endpoint_id: UUID | None, *, owner: str | None
    ) -> list[dict[str, Any]]:
        """New deliveries of one of `owner`'s events: to `endpoint_id`, or to each enabled
        endpoint that takes it; sent by the sender as soon as it looks."""
        await self._feed.one(event_id, owner=owner)
        async with self._database.autocommit() as connection:
            if endpoint_id is not None:
                found = await repository.endpoint(connection, endpoint_id, owner=owner)
                if found is None:
                    raise WebhookEndpointNotFound(endpoint_id)
            made = set(await repository.redeliver(connection, event_id, endpoint_id))
            rows = await repository.deliveries(connection, event_id)
        return [delivery_document(row) for row in rows if row.id in made]
