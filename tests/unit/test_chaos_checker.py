"""The fault suite's checker (chaos/checker.py): each kind of violation it exists to catch
is caught, and a history that agrees with its ledger passes."""

from __future__ import annotations

import pytest
from chaos.checker import LedgerRow, Operation, check, classify, minor_units


def op(key: str, outcome: str, *, balance: int | None = None, start: float = 1.0) -> Operation:
    operation = Operation(key=key, wallet="w", kind="DEPOSIT", amount=100, start=start)
    operation.outcome = outcome  # type: ignore[assignment]
    operation.end = start + 0.1
    operation.balance = balance
    return operation


def row(key: str, balance_after: int) -> LedgerRow:
    return LedgerRow(key=key, wallet="w", balance_after=balance_after)


def test_a_history_that_agrees_with_its_ledger_has_no_violation() -> None:
    unknown = op("c", "info")
    unknown.settled, unknown.settled_balance = "applied", 300
    refused_later = op("d", "info")
    refused_later.settled = "refused"
    report = check(
        "f",
        [op("a", "ok", balance=100), op("b", "fail"), unknown, refused_later],
        [row("a", 100), row("c", 300)],
        fault_end=0.0,
    )
    assert (report.ok, report.fail, report.info) == (1, 1, 2)
    assert report.unavailable == 0
    unavailable = op("e", "fail")
    unavailable.status = 503
    assert check("f", [unavailable], [], fault_end=0.0).unavailable == 1
    assert report.violations == 0, report


def test_an_acknowledged_operation_missing_from_the_ledger_is_lost() -> None:
    report = check("f", [op("a", "ok", balance=100)], [], fault_end=0.0)
    assert report.lost == 1
    assert report.violations == 1


def test_a_refused_operation_in_the_ledger_is_a_phantom() -> None:
    report = check("f", [op("a", "fail")], [row("a", 100)], fault_end=0.0)
    assert report.phantom == 1


def test_a_key_in_the_ledger_twice_is_a_duplicate() -> None:
    report = check("f", [op("a", "ok", balance=100)], [row("a", 100), row("a", 200)], 0.0)
    assert report.duplicated == 1


def test_a_balance_the_ledger_does_not_record_is_misreported() -> None:
    report = check("f", [op("a", "ok", balance=200)], [row("a", 100)], fault_end=0.0)
    assert report.misreported == 1


def test_a_retry_that_contradicts_the_ledger_is_misreported_and_an_unsettled_one_counts() -> None:
    said_applied = op("a", "info")
    said_applied.settled, said_applied.settled_balance = "applied", 100
    said_refused = op("b", "info")
    said_refused.settled = "refused"
    report = check("f", [said_applied, said_refused, op("c", "info")], [row("b", 100)], 0.0)
    assert report.misreported == 2
    assert report.unsettled == 1


def test_a_500_other_than_outcome_unknown_is_a_violation_and_a_gateway_error_is_not() -> None:
    history = []
    for key, status, code in (("a", 500, "outcome_unknown"), ("b", 500, "internal_error"),
                              ("c", 502, None), ("d", None, None)):  # fmt: skip
        operation = op(key, "info")
        operation.status, operation.code, operation.settled = status, code, "refused"
        history.append(operation)
    report = check("f", history, [], fault_end=0.0)
    assert report.internal_errors == 1
    assert report.violations == 1


def test_recovery_is_the_first_200_of_a_request_sent_after_the_fault() -> None:
    history = [op("a", "ok", balance=1, start=4.0), op("b", "fail", start=10.5)]
    history += [op("c", "ok", balance=1, start=11.0), op("d", "ok", balance=1, start=12.0)]
    report = check("f", history, [row(k, 1) for k in "acd"], fault_end=10.0)
    assert report.recovery_seconds == 1.1
    assert check("f", history[:2], [row("a", 1)], fault_end=10.0).recovery_seconds is None


def test_outcomes_by_status() -> None:
    assert classify(200, {}) == "ok"
    assert classify(400, {}) == classify(503, {}) == classify(422, {}) == "fail"
    assert classify(500, {}) == classify(502, None) == classify(504, None) == "info"
    assert classify(None, None) == "info"
    assert minor_units("12.34") == 1234
    assert minor_units(5) == 500


def test_the_suite_skips_saying_why_on_a_machine_without_the_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import chaos.run

    monkeypatch.setattr(chaos.run, "missing_requirements", lambda: ["etcd (Debian: etcd-server)"])
    assert chaos.run.main([]) == 0
    assert (
        "chaos: skipped, this machine lacks etcd (Debian: etcd-server)" in capsys.readouterr().out
    )
