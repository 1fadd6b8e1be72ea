"""Strict JSON request bodies: exact numbers, no NaN, a clear 422 for anything malformed."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from wallet_api.core.errors import ValidationFailed
from wallet_api.core.money import parse_json_constant, parse_json_float

Model = TypeVar("Model", bound=BaseModel)

# Built once: `json.loads` with hooks would build a new decoder for every request.
_DECODER = json.JSONDecoder(
    parse_float=parse_json_float, parse_int=Decimal, parse_constant=parse_json_constant
)


def is_json_media_type(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def read_json_body(request: Request, model: type[Model]) -> Model:
    """Parse the request body as `model`, or raise `ValidationFailed` saying what is wrong.

    Numbers are parsed as `Decimal` from their exact text, never as binary floats.
    """
    content_type = request.headers.get("content-type", "")
    if not is_json_media_type(content_type):
        raise ValidationFailed(
            "The request body must be JSON (Content-Type: application/json).",
            errors=[
                _error(
                    ["header", "content-type"],
                    "must be application/json, or a media type ending in +json",
                )
            ],
        )
    return parse_json_body(await request.body(), model)


def parse_json_body(body: bytes, model: type[Model]) -> Model:
    """Parse a JSON request body as `model`, or raise `ValidationFailed`."""
    if not body.strip():
        raise ValidationFailed(
            "The request body is empty; a JSON object is required.",
            errors=[_error(["body"], "empty: a JSON object is required")],
        )
    try:
        data = _DECODER.decode(body.decode("utf-8"))  # JSON on the wire is UTF-8 (RFC 8259)
    except (ValueError, RecursionError) as exc:
        raise ValidationFailed(
            "The request body is not valid JSON.", errors=[_error(["body"], _not_json(exc))]
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed.from_errors(
            [{"loc": ("body", *e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        ) from None


def _error(loc: list[str], message: str) -> dict[str, object]:
    """One item of a problem's `errors`, shaped as `ValidationFailed.from_errors` shapes
    a model's: the errors table promises the list for every `validation_error`."""
    return {"loc": loc, "message": message}


def _not_json(exc: ValueError | RecursionError) -> str:
    """Why a body is not JSON, in words that never quote the body back."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid JSON: not UTF-8 (byte {exc.start})"
    if isinstance(exc, RecursionError):
        return "nested too deeply to be read"
    # The number hooks' own words ("NaN is not valid JSON"); anything else, in none.
    return str(exc) if str(exc).endswith(" is not valid JSON") else "not valid JSON"


_IDEMPOTENCY_KEY = b"idempotency-key"
_CONTENT_TYPE = b"content-type"


def is_plain_json_post(scope: Scope) -> bool:
    """A POST with a JSON body and no Idempotency-Key: the form a fast path serves
    (`core/fast_path.py`: hot requests answered without FastAPI's routing)."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    content_type: bytes | None = None
    for name, value in scope["headers"]:
        if name == _IDEMPOTENCY_KEY:
            return False
        if name == _CONTENT_TYPE and content_type is None:
            content_type = value
    return content_type is not None and is_json_media_type(content_type.decode("latin-1"))


async def receive_body(receive: Receive) -> bytes:
    """The whole request body of an ASGI request, as Starlette's `Request.body()` reads it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect  # what the route's `Request.body()` raises
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
