"""The ways a statement can be refused, each with its stable code and status."""

from __future__ import annotations

from wallet_api.core.errors import AppError


class TooManyStatements(AppError):
    status = 429
    code = "too_many_statements"
    title = "Too many statements at once"
    example = "4 statements are being sent by this worker: retry in a second."

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} statements are being sent by this worker: retry in a second.",
            headers={"Retry-After": "1"},
        )
