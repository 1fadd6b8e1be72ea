"""`/health/live`: the process answers. `/health/ready`: the database answers too."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from wallet_api.core.database import Database
from wallet_api.core.errors import BodyTooLarge, DatabaseUnavailable
from wallet_api.core.openapi import error_responses
from wallet_api.core.responses import json_response
from wallet_api.health import repository

router = APIRouter(prefix="/health", tags=["health"])

READINESS_TIMEOUT_SECONDS = 2.0


class HealthStatus(BaseModel):
    status: Literal["ok"]


@router.get("/live", response_model=HealthStatus, responses=error_responses(BodyTooLarge))
async def live() -> Response:
    """The process is up and serving."""
    return json_response({"status": "ok"})


@router.get(
    "/ready",
    response_model=HealthStatus,
    responses=error_responses(BodyTooLarge, DatabaseUnavailable),
)
async def ready(request: Request) -> Response:
    """The database answers within a short timeout."""
    database: Database = request.app.state.database
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS), database.autocommit() as connection:
            await repository.ping(connection)
    except Exception as exc:
        raise DatabaseUnavailable(
            f"The database did not answer within {READINESS_TIMEOUT_SECONDS:g} s."
            if isinstance(exc, TimeoutError)
            else "The database is unavailable."
        ) from exc
    return json_response({"status": "ok"})
