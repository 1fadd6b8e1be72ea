"""Schemathesis hooks for tests/test_openapi.py: what a schema-valid request may be refused
with (tests/schemathesis.toml widens `positive_data_acceptance` by status; this narrows it
back by `code`)."""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response

from wallet_api.core.fields import METADATA_FILTER_RULE, PERIOD_RULE
from wallet_api.transfers.schemas import SAME_WALLET_RULE

#: The rules of the contract between two fields that their schemas state in words only.
RULES_IN_WORDS = {SAME_WALLET_RULE, PERIOD_RULE, METADATA_FILTER_RULE}

#: Refusals that a schema-valid request may get from the state it meets, by status.
STATE_REFUSALS = {
    400: {"insufficient_funds", "balance_limit_exceeded"},
    # A key first used for another request; a reversal larger than its entry, or of a
    # reversal (what the entry is, a body cannot say).
    # An owner's or a wallet's limit of webhook endpoints or balance monitors, reached.
    422: {
        "idempotency_key_reused",
        "reversal_exceeds_entry",
        "entry_not_reversible",
        "too_many_webhook_endpoints",
        "too_many_balance_monitors",
        # A balance asked at a time the clock has not reached.
        "time_in_the_future",
        # Money asked to move between wallets of two currencies.
        "currency_mismatch",
    },
}

#: The rules of an amount that its schema states in words only (see the amount's
#: description): a JSON number amount has no exponent, and an amount has at most the
#: fractional digits of its wallet's currency, and at most its maximum (the schema allows
#: the most any currency does). A schema-valid amount that breaks one is refused with one
#: of these errors.
AMOUNT_TEXT_RULES = re.compile(
    r"amount must be written without an exponent"
    r"|amount must have at most [0-4] fractional digits"
    r"|amount must be at most [0-9.]+"
)


@schemathesis.check
def schema_valid_request_refused_only_by_state(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """A schema-valid request refused with 400 or 422 names a refusal of state, or the
    amount's text rule, never another `validation_error`: the schema promises no more than
    the service accepts."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    allowed = STATE_REFUSALS.get(response.status_code)
    if allowed is None:
        return None
    problem = response.json()
    code = problem.get("code")
    if code in allowed:
        return None
    if response.status_code == 422 and (
        _breaks_only_the_amount_text_rule(problem) or _names_only_a_rule_in_words(problem)
    ):
        return None
    raise AssertionError(
        f"A schema-valid request was refused with {response.status_code} `{code}`: "
        f"{problem.get('detail')}"
    )


def _names_only_a_rule_in_words(problem: dict[str, Any]) -> bool:
    """A transfer from a wallet to itself, a statement's period backwards: rules between
    two fields that their schemas state in words only."""
    messages = [error.get("message") for error in problem.get("errors") or []]
    return len(messages) == 1 and messages[0] in RULES_IN_WORDS


def _breaks_only_the_amount_text_rule(problem: dict[str, Any]) -> bool:
    """Every error names an amount (the body's, or a batch item's) and the text rule."""
    errors = problem.get("errors") or []
    return (
        problem.get("code") == "validation_error"
        and bool(errors)
        and all(
            error.get("loc", [None])[0] == "body"
            and error.get("loc", [None])[-1] in {"amount", "threshold"}
            and AMOUNT_TEXT_RULES.fullmatch(str(error.get("message"))) is not None
            for error in errors
        )
    )
