"""The published contract (`/openapi.json`): what FastAPI cannot infer, and its finishing.

FastAPI describes routes, parameters and response models. This module adds the rest, so
that the document says everything a client can receive: every problem response with its
`code` values and an example of each, the response headers (`X-Request-ID` on every
response, `Retry-After` on every 503, `Idempotent-Replayed` on replays), the request
bodies the service parses itself (exact money, see `core/requests.py`), and parameters
as they are sent (a header is never `null`). tests/test_openapi.py validates the result,
fuzzes the running service with it, and drives a client generated from it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from wallet_api.core.errors import (
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPE_PREFIX,
    AppError,
    BodyTooLarge,
    DatabaseUnavailable,
    InternalError,
    OutcomeUnknown,
    ValidationFailed,
)
from wallet_api.core.idempotency import IdempotencyKeyReused
from wallet_api.core.request_context import REQUEST_ID_PATTERN

SCHEMAS = "#/components/schemas/"
#: What any POST that writes may answer besides its own refusals: a body too large or not
#: valid, its Idempotency-Key sent before with another request, an outcome it cannot know
#: (retry with the key), a failure of ours (nothing applied), the database unavailable.
WRITE_FAILURES: tuple[type[AppError], ...] = (
    BodyTooLarge,
    ValidationFailed,
    IdempotencyKeyReused,
    OutcomeUnknown,
    InternalError,
    DatabaseUnavailable,
)
HEADERS = "#/components/headers/"

#: Header names, as documented.
REQUEST_ID = "X-Request-ID"
RETRY_AFTER = "Retry-After"
REPLAYED = "Idempotent-Replayed"

_PROBLEM_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "ProblemError",
    "description": "One reason a request is not valid.",
    "required": ["loc", "message"],
    "properties": {
        "loc": {
            "type": "array",
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "description": "Where: `body`, `path`, `query` or `header`, then the field.",
        },
        "message": {"type": "string"},
    },
}

_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": (
        "An RFC 9457 problem document (`application/problem+json`). Branch on `code`, which "
        "is stable; `title` and `detail` are for people."
    ),
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": f"`{PROBLEM_TYPE_PREFIX}` and the code."},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "request_id": {
            "type": "string",
            "pattern": f"^{REQUEST_ID_PATTERN}$",
            "description": (
                f"The request's {REQUEST_ID} (quote it when reporting a problem); absent "
                "from a replayed response, whose header names the replaying request."
            ),
        },
        "errors": {
            "type": "array",
            "items": {"$ref": SCHEMAS + "ProblemError"},
            "description": "With `validation_error`: each problem found.",
        },
    },
}

_HEADERS: dict[str, Any] = {
    REQUEST_ID: {
        "description": (
            "The request's id: the one the client sent, when it is 1 to 128 characters of "
            "`A-Z a-z 0-9 . _ : -`, or a new one."
        ),
        "required": True,
        "schema": {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN}$"},
    },
    RETRY_AFTER: {
        "description": "Seconds to wait before retrying; nothing was applied.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
    REPLAYED: {
        "description": (
            "`true` when this is the stored outcome of an earlier request with the same "
            "Idempotency-Key, sent again; nothing was changed by this request."
        ),
        "schema": {"type": "string", "enum": ["true"]},
    },
}

#: Request bodies that routes parse themselves (see `json_request_body`), by schema name.
_REQUEST_MODELS: dict[str, type[BaseModel]] = {}


def json_request_body(
    model: type[BaseModel], examples: Mapping[str, Any], *, required: bool = True
) -> dict[str, Any]:
    """The `openapi_extra` of a route that reads its JSON body itself: the body is `model`,
    published as a component (resolvable from the document's root), with named examples."""
    _REQUEST_MODELS[model.__name__] = model
    return {
        "requestBody": {
            "required": required,
            "content": {
                "application/json": {
                    "schema": {"$ref": SCHEMAS + model.__name__},
                    "examples": {name: {"value": value} for name, value in examples.items()},
                }
            },
        }
    }


def error_responses(
    *errors: type[AppError], replayed: tuple[int, ...] = ()
) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that may fail with `errors`: one per status, a problem
    document whose `code` is one of that status's codes, an example of each code.
    `replayed`: the statuses that may be the replay of a stored outcome."""
    by_status: dict[int, list[type[AppError]]] = defaultdict(list)
    for error in errors:
        by_status[error.status].append(error)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        headers = {REQUEST_ID: {"$ref": HEADERS + REQUEST_ID}}
        if status in (429, 503):
            headers[RETRY_AFTER] = {"$ref": HEADERS + RETRY_AFTER}
        if status in replayed:
            headers[REPLAYED] = {"$ref": HEADERS + REPLAYED}
        code_schema = {"type": "string", "enum": [error.code for error in group]}
        responses[status] = {
            "description": "; ".join(f"`{error.code}`: {error.title}" for error in group),
            "headers": headers,
            "content": {
                PROBLEM_CONTENT_TYPE: {
                    "schema": {
                        "allOf": [
                            {"$ref": SCHEMAS + "Problem"},
                            {"type": "object", "properties": {"code": code_schema}},
                        ]
                    },
                    "examples": {
                        error.code: {"summary": error.title, "value": _example(error)}
                        for error in group
                    },
                }
            },
        }
    return responses


def replayed_success(status: int) -> dict[int | str, dict[str, Any]]:
    """The headers of a success response that may be the replay of a stored outcome."""
    return {status: {"headers": {REPLAYED: {"$ref": HEADERS + REPLAYED}}}}


def _example(error: type[AppError]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.example,
        "code": error.code,
        "request_id": "7f3c2a9b1d04000000000001",
    }
    if error is ValidationFailed:
        document["errors"] = [
            {"loc": ["body", "amount"], "message": error.example.partition(": ")[2]}
        ]
    return document


def install_openapi(
    app: FastAPI, *, guarded: tuple[type[AppError], ...] = (), guarded_prefix: str = ""
) -> None:
    """Serve the finished document as the application's `/openapi.json`. With
    `guarded` (the errors of an API key gate), every operation under `guarded_prefix`
    requires a bearer key and may be refused with those errors."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            _finish(document)
            if guarded:
                _require_keys(document, guarded, guarded_prefix)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _finish(document: dict[str, Any]) -> None:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = _PROBLEM_SCHEMA
    schemas["ProblemError"] = _PROBLEM_ERROR_SCHEMA
    for name, model in _REQUEST_MODELS.items():
        schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    components["headers"] = _HEADERS
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", ()):
                parameter["schema"] = _without_null(parameter["schema"])
            for response in operation.get("responses", {}).values():
                response.setdefault("headers", {}).setdefault(
                    REQUEST_ID, {"$ref": HEADERS + REQUEST_ID}
                )


def _require_keys(
    document: dict[str, Any], errors: tuple[type[AppError], ...], prefix: str
) -> None:
    components = document["components"]
    components["securitySchemes"] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `wallet-api keys create`: "
            "`Authorization: Bearer wk_<id>_<secret>`.",
        }
    }
    refusals = error_responses(*errors)
    for path, path_item in document.get("paths", {}).items():
        if not path.startswith(prefix):
            continue
        for operation in path_item.values():
            operation["security"] = [{"apiKey": []}]
            for status, response in refusals.items():
                operation["responses"].setdefault(str(status), response)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema as sent: absent, never `null` (FastAPI documents
    `str | None` as "string or null", which no query string or header can carry)."""
    variants = schema.get("anyOf")
    if not variants:
        return schema
    kept = [variant for variant in variants if variant.get("type") != "null"]
    if len(kept) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**kept[0], **rest}
