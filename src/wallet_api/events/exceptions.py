"""The ways a feed request can be refused, each with its stable code and status."""

from __future__ import annotations

from wallet_api.core.errors import AppError


class EventNotFound(AppError):
    status = 404
    code = "event_not_found"
    title = "Event not found"
    example = "Event 1042 does not exist."

    def __init__(self, event_id: int) -> None:
        super().__init__(f"Event {event_id} does not exist.")
