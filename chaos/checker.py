"""The checker of the fault suite: what clients were told against what the ledger holds.

Each operation carries an Idempotency-Key of its own, and ends in one of three outcomes:
`ok` (200: it must be in the ledger exactly once, with the balance that was answered),
`fail` (a refusal, 4xx, or 503: it must not be in the ledger) or `info` (500
`outcome_unknown`, a gateway error, a timeout, a broken connection: either, and a retry with
the same key must settle it, agreeing with the ledger). Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Literal

Outcome = Literal["ok", "fail", "info"]
Settled = Literal["applied", "refused"]


@dataclass
class Operation:
    """One request as its client saw it."""

    key: str
    wallet: str
    kind: str  # DEPOSIT or WITHDRAW
    amount: int  # minor units
    start: float  # monotonic seconds
    end: float = 0.0
    outcome: Outcome = "info"
    status: int | None = None  # the HTTP status, None for a transport failure
    balance: int | None = None  # the balance answered with a 200, minor units
    code: str | None = None  # the problem document's code, for an error
    #: An `info` operation after the retries with its key: what they said.
    settled: Settled | None = None
    settled_balance: int | None = None


@dataclass(frozen=True)
class LedgerRow:
    key: str
    wallet: str
    balance_after: int  # minor units


def classify(status: int | None, body: dict[str, Any] | None) -> Outcome:
    """200 ok; a refusal (4xx) or 503 (not applied, by contract) fail; anything else info."""
    if status == 200:
        return "ok"
    if status is not None and (400 <= status < 500 or status == 503):
        return "fail"
    return "info"


def minor_units(value: object) -> int:
    """A JSON money value (units, two decimals) in minor units, exactly."""
    return int(Decimal(str(value)) * 100)


@dataclass
class Report:
    """One round's verdict."""

    fault: str
    ops: int = 0
    ok: int = 0
    fail: int = 0
    unavailable: int = 0  # of the fail: 503 (the database or every instance unavailable)
    info: int = 0
    lost: int = 0  # acknowledged (200), not in the ledger
    phantom: int = 0  # refused (fail), yet in the ledger
    duplicated: int = 0  # keys in the ledger more than once
    misreported: int = 0  # a balance answered that the ledger does not record, or a retry
    # that says applied (refused) while the ledger says otherwise
    unsettled: int = 0  # info operations no retry could settle
    inconsistent_wallets: int = 0  # ledgers whose balances do not add up (set by the caller)
    #: 500s other than `outcome_unknown`: a failure the service did not classify (a defect,
    #: even when the ledger agrees; 502/504 from the router are a lost instance, not this).
    internal_errors: int = 0
    #: Seconds from the fault's end to the first 200 of a request sent after it.
    recovery_seconds: float | None = None
    #: Deposits sent through the Python client (clients/python) with its default settings
    #: (checked with the others: applied once if answered, never if refused), and those of
    #: them that ended without a settled outcome (the client's promise: none).
    client_calls: int = 0
    client_unsettled: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return (
            self.lost
            + self.phantom
            + self.duplicated
            + self.misreported
            + self.unsettled
            + self.inconsistent_wallets
            + self.internal_errors
            + self.client_unsettled
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "violations": self.violations}


def check(
    fault: str, operations: list[Operation], ledger: list[LedgerRow], fault_end: float
) -> Report:
    """Compare every operation's outcome with the ledger rows of the round's keys."""
    report = Report(fault=fault, ops=len(operations))
    counts = Counter(row.key for row in ledger)
    rows = {row.key: row for row in ledger}
    report.duplicated = sum(1 for n in counts.values() if n > 1)

    def flag(kind: str, op: Operation) -> None:
        if len(report.examples) < 10:
            report.examples.append(f"{kind}: {op.kind} {op.amount} key={op.key} status={op.status}")

    for op in operations:
        row = rows.get(op.key)
        if op.outcome == "ok":
            report.ok += 1
            if row is None:
                report.lost += 1
                flag("lost", op)
            elif op.balance != row.balance_after:
                report.misreported += 1
                flag("misreported balance", op)
        elif op.outcome == "fail":
            report.fail += 1
            report.unavailable += op.status == 503
            if row is not None:
                report.phantom += 1
                flag("phantom", op)
        else:
            report.info += 1
            if op.status == 500 and op.code != "outcome_unknown":
                report.internal_errors += 1
                flag(f"500 {op.code}", op)
            if op.settled is None:
                report.unsettled += 1
                flag("unsettled", op)
            elif (op.settled == "applied") != (row is not None):
                report.misreported += 1
                flag(f"retry said {op.settled}", op)
            elif row is not None and op.settled_balance != row.balance_after:
                report.misreported += 1
                flag("retry's balance", op)

    after = [op.end for op in operations if op.outcome == "ok" and op.start >= fault_end]
    if after:
        report.recovery_seconds = round(max(0.0, min(after) - fault_end), 2)
    return report
