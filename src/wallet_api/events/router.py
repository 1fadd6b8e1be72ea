"""HTTP endpoints of the feed: parse, call the feed once, render."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from wallet_api.auth.gate import owner_of
from wallet_api.core.errors import DatabaseUnavailable, InternalError, ValidationFailed
from wallet_api.core.openapi import error_responses
from wallet_api.core.responses import json_response
from wallet_api.events.cursors import CURSOR_PATTERN, START, decode_cursor, encode_cursor
from wallet_api.events.exceptions import EventNotFound
from wallet_api.events.schemas import (
    EVENTS_LIMIT_DEFAULT,
    EVENTS_LIMIT_MAX,
    WAIT_MAX,
    Event,
    EventsPage,
)
from wallet_api.events.service import EventFeed
from wallet_api.posting.events import EventType

router = APIRouter(prefix="/api/v1/events", tags=["events"])


def event_feed(request: Request) -> EventFeed:
    """The process's feed, made by the application's lifespan."""
    feed: EventFeed = request.app.state.event_feed
    return feed


@router.get(
    "",
    response_model=EventsPage,
    responses=error_responses(ValidationFailed, InternalError, DatabaseUnavailable),
)
async def list_events(
    request: Request,
    after: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            description="The `next_cursor` of the previous page; none: from the oldest event kept.",
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=EVENTS_LIMIT_MAX, description="Events per page.")
    ] = EVENTS_LIMIT_DEFAULT,
    type_: Annotated[
        list[EventType] | None,
        Query(alias="type", description="Only events of these types (repeat the parameter)."),
    ] = None,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=WAIT_MAX,
            description="Seconds to wait for a first event when there is none yet (long-poll).",
        ),
    ] = 0,
) -> Response:
    """Every committed change, oldest first, in an order that never skips one: a reader
    that goes on from the `next_cursor` it was given sees every event committed after its
    page, even one whose transaction began earlier (docs/EVENTS.md). Owner-scoped."""
    position = START if after is None else decode_cursor(after)
    documents, following = await event_feed(request).page(
        after=position,
        owner=owner_of(request.scope),
        types=None if not type_ else [str(each) for each in type_],
        limit=limit,
        wait=wait,
    )
    return json_response({"items": documents, "next_cursor": encode_cursor(following)})


@router.get(
    "/{event_id}",
    response_model=Event,
    responses=error_responses(EventNotFound, ValidationFailed, InternalError, DatabaseUnavailable),
)
async def get_event(
    event_id: Annotated[int, Path(ge=1, le=2**63 - 1)], request: Request
) -> Response:
    """One event, as the feed shows it."""
    document = await event_feed(request).one(event_id, owner=owner_of(request.scope))
    return json_response(document)
