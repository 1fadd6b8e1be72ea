"""Schemathesis hooks for tests/test_openapi.py: what a schema-valid request may be refused
with (tests/schemathesis.toml widens `positive_data_acceptance` by status; this narrows it
back by `code`)."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response

#: Refusals that a schema-valid request may get from the state it meets, by status.
STATE_REFUSALS = {
    400: {"insufficient_funds", "balance_limit_exceeded"},
    422: {"idempotency_key_reused"},
}


@schemathesis.check
def schema_valid_request_refused_only_by_state(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """A schema-valid request refused with 400 or 422 names a refusal of state, never a
    `validation_error`: the schema promises no more than the service accepts."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    allowed = STATE_REFUSALS.get(response.status_code)
    if allowed is None:
        return None
    code = response.json().get("code")
    if code not in allowed:
        raise AssertionError(
            f"A schema-valid request was refused with {response.status_code} `{code}`; "
            f"only {sorted(allowed)} may refuse it"
        )
    return None
