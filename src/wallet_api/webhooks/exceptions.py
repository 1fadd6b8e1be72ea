"""The ways a webhook request can be refused, each with its stable code and status."""

from __future__ import annotations

from uuid import UUID

from wallet_api.core.errors import AppError


class WebhookEndpointNotFound(AppError):
    status = 404
    code = "webhook_endpoint_not_found"
    title = "Webhook endpoint not found"
    example = "Webhook endpoint 0b7d1c52-5f0e-4c3a-9d1e-2a6b8c4f7e31 does not exist."

    def __init__(self, endpoint_id: UUID) -> None:
        super().__init__(f"Webhook endpoint {endpoint_id} does not exist.")


class TooManyWebhookEndpoints(AppError):
    status = 422
    code = "too_many_webhook_endpoints"
    title = "Too many webhook endpoints"
    example = "An owner has at most 16 webhook endpoints; delete one first."

    def __init__(self, limit: int) -> None:
        super().__init__(f"An owner has at most {limit} webhook endpoints; delete one first.")
