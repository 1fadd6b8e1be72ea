"""`/health/live`: the process answers. `/health/ready`: the database answers too."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from wallet_api.core.database import Database
from wallet_api.core.errors import BodyTooLarge, DatabaseUnavailable, describe, error_response
from wallet_api.core.openapi import error_responses
from wallet_api.core.responses import json_response
from wallet_api.health import repository

logger = logging.getLogger(__name__)

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
        unavailable = DatabaseUnavailable(
            f"The database did not answer within {READINESS_TIMEOUT_SECONDS:g} s."
            if isinstance(exc, TimeoutError)
            else "The database is unavailable."
        )
        _readiness.failed(unavailable.detail, exc)
        return error_response(unavailable)
    _readiness.passed()
    return json_response({"status": "ok"})


class _Readiness:
    """This worker's last readiness answer: probes come every few seconds, so a change
    is logged once (one line, the cause in a few words), not every failed probe."""

    def __init__(self) -> None:
        self.ready: bool | None = None

    def failed(self, detail: str, cause: Exception) -> None:
        if self.ready is not False:
            logger.warning(
                "not ready: %s (%s)",
                detail,
                describe(cause),
                exc_info=cause if logger.isEnabledFor(logging.DEBUG) else None,
            )
        self.ready = False

    def passed(self) -> None:
        if self.ready is False:
            logger.info("ready again: the database answers")
        self.ready = True


_readiness = _Readiness()
