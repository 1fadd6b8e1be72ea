"""The ways a balance monitor request can be refused, each with its stable code."""

from __future__ import annotations

from uuid import UUID

from wallet_api.core.errors import AppError


class MonitorNotFound(AppError):
    status = 404
    code = "balance_monitor_not_found"
    title = "Balance monitor not found"
    example = "Balance monitor 2f4e6a8c-1b3d-4f5a-9c7e-0d2b4f6a8c1e does not exist."

    def __init__(self, monitor_id: UUID) -> None:
        super().__init__(f"Balance monitor {monitor_id} does not exist.")


class TooManyMonitors(AppError):
    status = 422
    code = "too_many_balance_monitors"
    title = "Too many balance monitors"
    example = "A wallet has at most 10 balance monitors; delete one first."

    def __init__(self, limit: int) -> None:
        super().__init__(f"A wallet has at most {limit} balance monitors; delete one first.")
