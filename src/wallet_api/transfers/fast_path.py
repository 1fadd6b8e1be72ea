"""The fast path of transfers: a plain `POST /api/v1/transfers` served without FastAPI's
routing, as `wallets/fast_path.py` serves operations (see there why).

A request with a JSON content type and no `Idempotency-Key` is parsed with the route's
parser, handed to the same service method, and answered with the same body and headers,
or the same problem document through the application's one error mapping. Anything else
goes on to the route in `transfers/router.py`, the documented endpoint.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from wallet_api.auth.gate import key_id_of, owner_of
from wallet_api.core.errors import ANSWERED_ERRORS, exception_response
from wallet_api.core.idempotency import Replay
from wallet_api.core.requests import is_plain_json_post, parse_json_body, receive_body, route_of
from wallet_api.transfers.router import TRANSFERS_PATH, created_response, router
from wallet_api.transfers.schemas import TransferRequest
from wallet_api.transfers.service import TransferService


class TransferFastPath:
    """Serve plain `POST /api/v1/transfers` requests directly; pass everything else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route = route_of(router, TRANSFERS_PATH, "POST")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != TRANSFERS_PATH:
            await self.app(scope, receive, send)
            return
        if not is_plain_json_post(scope):
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route
        try:
            request = parse_json_body(await receive_body(receive), TransferRequest)
            service: TransferService = scope["app"].state.transfer_service
            result = await service.transfer(
                request,
                owner=owner_of(scope),
                api_key_id=key_id_of(scope),
                idempotency_key=None,
                fingerprint="",
            )
            assert not isinstance(result, Replay)  # only a keyed request can be a replay
            response = created_response(*result)
        except ClientDisconnect:
            return  # gone before its body was read: nothing applied, no one to answer
        except ANSWERED_ERRORS as exc:
            response = exception_response(exc)
        await response(scope, receive, send)
