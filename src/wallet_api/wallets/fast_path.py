"""The fast path: the hot requests served without FastAPI's routing.

`POST /api/v1/wallets/{wallet_uuid}/operation` is the request a hot wallet receives
thousands of times a second, and FastAPI's per-request machinery (routing, parameter and
dependency resolution, the route's exception layers) cost more CPU than the operation
itself: measured here, about 750 µs of worker CPU per operation through the route against
about 350 µs through this path (docs/PERFORMANCE.md). This middleware, the innermost of
the application's own (so request ids, metrics, the access log and the body limit still
apply), answers the plain form of that request itself: a canonical UUID in the path, a
JSON content type, no `Idempotency-Key`. It parses the body with the route's parser, calls
the same service method, and renders the same body, or the same problem document through
the application's one error mapping (`core.errors.exception_response`).

It also answers `GET /api/v1/wallets/{wallet_uuid}` (a canonical UUID), the balance read,
with the route's body or problem document.

Everything else (a keyed request, another content type, a malformed path, any other
route) goes on to FastAPI unchanged. The route in `wallets/router.py` stays the
documented endpoint (OpenAPI) and serves those requests.
"""

from __future__ import annotations

import re
from uuid import UUID

from fastapi import Response
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from wallet_api.auth.gate import key_id_of, owner_of, require_deposit
from wallet_api.core.errors import ANSWERED_ERRORS, exception_response
from wallet_api.core.fields import parse_uuid
from wallet_api.core.requests import is_plain_json_post, parse_json_body, receive_body, route_of
from wallet_api.wallets.models import OperationType
from wallet_api.wallets.operations import Operation
from wallet_api.wallets.router import OPERATION_PATH, WALLET_PATH, router
from wallet_api.wallets.schemas import OperationRequest, balance_body, operation_body
from wallet_api.wallets.service import WalletService

_HEX = "[0-9A-Fa-f]"
_CANONICAL_UUID = f"({_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}})"
_CANONICAL_OPERATION_PATH = re.compile(OPERATION_PATH.replace("{wallet_uuid}", _CANONICAL_UUID))
_CANONICAL_WALLET_PATH = re.compile(WALLET_PATH.replace("{wallet_uuid}", _CANONICAL_UUID))


class OperationFastPath:
    """Serve plain `POST …/operation` and `GET …/{uuid}` requests directly; pass
    everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route = route_of(router, OPERATION_PATH, "POST")
        self._balance_route = route_of(router, WALLET_PATH, "GET")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        balance_of = self._plain_balance(scope)
        if balance_of is not None:
            await self._answer_balance(balance_of, scope, receive, send)
            return
        wallet_id = self._plain_operation(scope)
        if wallet_id is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route
        try:
            body = await receive_body(receive)
            request = parse_json_body(body, OperationRequest)
            if request.operation is OperationType.DEPOSIT:
                require_deposit(scope)
            service: WalletService = scope["app"].state.wallet_service
            outcome = await service.apply_operation(
                wallet_id,
                Operation(
                    kind=request.operation, amount=request.amount, api_key_id=key_id_of(scope)
                ),
                owner=owner_of(scope),
            )
            assert isinstance(outcome, int)  # only a keyed request can be a replay
            response = Response(operation_body(outcome), media_type="application/json")
        except ClientDisconnect:
            return  # gone before its body was read: nothing applied, no one to answer
        except ANSWERED_ERRORS as exc:
            response = exception_response(exc)
        # Any other exception goes up to Starlette's server-error middleware, as it would
        # from the route: the same 500 document, then the server logs it.
        await response(scope, receive, send)

    async def _answer_balance(
        self, wallet_id: UUID, scope: Scope, receive: Receive, send: Send
    ) -> None:
        scope["route"] = self._balance_route
        try:
            service: WalletService = scope["app"].state.wallet_service
            balance = await service.get_balance(wallet_id, owner=owner_of(scope))
            response = Response(balance_body(balance), media_type="application/json")
        except ANSWERED_ERRORS as exc:
            response = exception_response(exc)
        await response(scope, receive, send)

    @staticmethod
    def _plain_balance(scope: Scope) -> UUID | None:
        """The wallet id of a balance read this path serves (a canonical UUID), else None."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        match = _CANONICAL_WALLET_PATH.fullmatch(scope["path"])
        return None if match is None else parse_uuid(match.group(1))

    @staticmethod
    def _plain_operation(scope: Scope) -> UUID | None:
        """The wallet id of a request this path serves, else None."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        match = _CANONICAL_OPERATION_PATH.fullmatch(scope["path"])
        if match is None or not is_plain_json_post(scope):
            return None
        return parse_uuid(match.group(1))
