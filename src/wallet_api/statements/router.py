"""HTTP endpoint of statements: check, then stream what the service renders."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from wallet_api.auth.gate import owner_of
from wallet_api.core.errors import DatabaseUnavailable, InternalError, ValidationFailed
from wallet_api.core.fields import Instant
from wallet_api.core.openapi import error_responses
from wallet_api.statements.exceptions import TooManyStatements
from wallet_api.statements.repository import CSV_COLUMNS
from wallet_api.statements.schemas import STATEMENT_EXAMPLE, Statement
from wallet_api.statements.service import STATEMENT_SECONDS, StatementService
from wallet_api.wallets.exceptions import WalletNotFound

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/wallets", tags=["wallets"])
#: Seconds a statement's answer may take beyond STATEMENT_SECONDS to reach its reader.
SEND_MARGIN_SECONDS = 30.0


class StatementFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


class _Streamed(StreamingResponse):
    """A streamed body, sent within STATEMENT_SECONDS (and a margin: a reader that stops
    reading is cut off too, not only one that reads slowly), then closed (its connection
    goes back to the pool) and `done` called, whether it was sent or given up."""

    def __init__(
        self, content: AsyncGenerator[bytes], media_type: str, done: Callable[[], None]
    ) -> None:
        super().__init__(content, media_type=media_type)
        self._content = content
        self._done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with asyncio.timeout(STATEMENT_SECONDS + SEND_MARGIN_SECONDS):
                await super().__call__(scope, receive, send)
        except TimeoutError:
            logger.warning(
                "a statement was cut off after %g s: its reader stopped reading",
                STATEMENT_SECONDS + SEND_MARGIN_SECONDS,
            )
        finally:
            try:
                await self._content.aclose()
            finally:
                self._done()


_CSV_EXAMPLE = (
    ",".join(CSV_COLUMNS)
    + "\r\n,,2026-11-01T00:00:00+00:00,OPENING_BALANCE,,,100.00,,,,,\r\n"
    + "41,7,2026-11-03T10:15:00.123456Z,WITHDRAW,-12.50,12.50,87.50,,,,,\r\n"
    + ",,2026-12-01T00:00:00+00:00,CLOSING_BALANCE,,,87.50,,,,,\r\n"
)
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The statement (JSON, or CSV with `format=csv`), streamed.",
        "content": {
            "application/json": {"example": STATEMENT_EXAMPLE},
            "text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE},
        },
    },
    **error_responses(
        WalletNotFound, TooManyStatements, ValidationFailed, InternalError, DatabaseUnavailable
    ),
}


@router.get("/{wallet_uuid}/statement", response_model=Statement, responses=_RESPONSES)
async def get_statement(
    wallet_uuid: UUID,
    request: Request,
    *,
    since: Annotated[
        Instant | None,
        Query(
            alias="from",
            description="The period's start (RFC 3339, with its offset), included; none: "
            "since the wallet's first entry. Not later than `to`.",
        ),
    ] = None,
    until: Annotated[
        Instant | None,
        Query(
            alias="to",
            description="The period's end, excluded; none: up to the last entry.",
        ),
    ] = None,
    format: Annotated[
        StatementFormat, Query(description="`json` (the default) or `csv`.")
    ] = StatementFormat.JSON,
) -> Response:
    """The wallet's statement of a period: the balance at its start, every entry dated in
    it (oldest first, each with what it changed), the balance at its end, read in one
    snapshot; closing minus opening is the sum of the entries' changes. Streamed: a
    statement of a million entries is never held in memory (docs/API.md, Statements)."""
    service: StatementService = request.app.state.statement_service
    period = await service.begin(
        wallet_uuid, owner=owner_of(request.scope), since=since, until=until
    )
    if format is StatementFormat.CSV:
        return _Streamed(service.csv(period), "text/csv; charset=utf-8", service.end)
    return _Streamed(service.json(period), "application/json", service.end)
