"""The rows the writer's statements write, built from plans.

`Round` is one statement of the optimistic write: the parts of a batch (entries that share
no wallet) planned on the balances guessed, the range write's rows, and, once it ran, what
it settled and what goes again. `exact_write` is what the locking transaction writes for
entries judged on the exact balances.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from uuid import UUID

from wallet_api.core.money import MAX_MINOR_UNITS
from wallet_api.posting import repository
from wallet_api.posting.entries import Entry, EntryKind, HoldState, Leg, Posted, Refusal
from wallet_api.posting.plan import Judged, Plan, Span, kept, plan

#: A part of a round: its runs, where its entries are in the round's, its wallets (those
#: believed to exist), and whether it writes anything.
_Section = tuple[list[int], slice, list[UUID], bool]
#: What a round settles for a part: its runs, their outcomes, its wallets, the spans the
#: outcomes come from, and by how much each wallet's balance is moved from them.
RoundSettled = tuple[list[int], Sequence[Judged], list[UUID], Mapping[UUID, Span], dict[UUID, int]]


class Round:
    """One statement of the optimistic write: the parts planned (in one plan: they share
    no wallet, so it judges each as a plan of its own would) on the balances guessed, the
    statement built, and, once it ran, what it settled and what goes again."""

    def __init__(
        self,
        runs: Sequence[Entry],
        pending: list[list[int]],
        named: Mapping[int, list[UUID]],
        starts: dict[UUID, int],
        held: Mapping[UUID, int],
    ) -> None:
        self.entries = [runs[index] for part in pending for index in part]
        whole = plan(starts, self.entries, held=held)
        self.outcomes, self.spans = whole.outcomes, whole.spans
        self.write = repository.RangeWrite()
        self.sections: list[_Section] = []
        position = 0
        for number, part in enumerate(pending):
            section = slice(position, position + len(part))
            position += len(part)
            if len(part) == 1 and self._one_leg(part, number, section, starts):
                continue
            wallets = [w for w in named[id(part)] if w in starts]
            writes = _writes(self.entries[section], self.outcomes[section])
            self.sections.append((part, section, wallets, writes))
            if writes:
                _part_rows(
                    self.write,
                    number,
                    self.entries[section],
                    self.outcomes[section],
                    wallets=wallets,
                    starts=starts,
                    spans=self.spans,
                )
            else:
                self.write.checked.extend(wallets)
        self.missing: set[UUID] = set()
        self.again: list[list[int]] = []
        #: The parts not written for a wallet with a hold expired and not yet released:
        #: what the statement found for it mixes two moments (repository.held_now), so
        #: they are judged under the locks, never on it.
        self.due: list[list[int]] = []
        #: The balance and what is held found for the wallets of the parts that go again.
        self.found_again: dict[UUID, tuple[int, int]] = {}

    def _one_leg(
        self, part: list[int], number: int, section: slice, starts: Mapping[UUID, int]
    ) -> bool:
        """A part of one entry of one leg, without a key (most of them: a deposit, a
        withdrawal, a batch item), added to the statement as `_part_rows` would add it,
        without its loops; False for any other part."""
        index = section.start
        entry = self.entries[index]
        if len(entry.legs) != 1 or entry.idempotency_key is not None:
            return False
        leg = entry.legs[0]
        wallet_id = leg.wallet_id
        judged = self.outcomes[index]
        if isinstance(judged, Refusal):  # nothing to write: its balance only read
            wallets = [wallet_id] if wallet_id in starts else []
            self.write.checked.extend(wallets)
            self.sections.append((part, section, wallets, False))
            return True
        span = self.spans[wallet_id]
        _add_row(self.write, entry, leg, judged[0] - span.start, None, _event(self.write, entry))
        self.write.wallets.append(
            (
                wallet_id,
                span.balance - span.start,
                span.low,
                span.high,
                number,
                1,
                span.available_low,
                span.available_high,
            )
        )
        self.sections.append((part, section, [wallet_id], True))
        return True

    def settled(self, found: Mapping[UUID, repository.Found]) -> list[RoundSettled]:
        """The parts settled by the statement that found `found`: written (on the starts
        planned, or on others that keep the decisions: the figures move), or of refusals
        only on balances that were the wallets' then. The others go `again`."""
        settled: list[RoundSettled] = []
        judge_again: list[tuple[_Section, bool]] = []
        for section in self.sections:
            part, where, wallets, writes = section
            if writes and _written(wallets, found):  # whole: every wallet moved
                if len(part) == 1 and len(wallets) == 1:  # one entry on one wallet
                    settled.append(self._one_settled(section, found))
                    continue
                shifts = self._shifts(wallets, found)
                outcomes: Sequence[Judged] | None = self.outcomes[where]
                if shifts:  # the same decisions: only the figures move
                    outcomes = _shifted(self.entries[where], self.outcomes[where], shifts)
                if outcomes is None or shifts is None:
                    judge_again.append((section, True))
                else:
                    settled.append((part, outcomes, wallets, self.spans, shifts))
                continue
            self.missing.update(w for w in wallets if w not in found)
            if any(found[w].due for w in wallets if w in found):
                self.due.append(part)
                continue
            judge_again.append((section, False))
        if judge_again:
            settled.extend(self._judged_again(judge_again, found))
        return settled

    def _one_settled(
        self, section: _Section, found: Mapping[UUID, repository.Found]
    ) -> RoundSettled:
        """`settled` for a written part of one entry on one wallet: its figures moved by
        the difference between the start found and the one planned."""
        part, where, wallets, _ = section
        (wallet_id,) = wallets
        span = self.spans[wallet_id]
        shift = (found[wallet_id].start or 0) - span.start
        judged = self.outcomes[where.start]
        if not shift:
            return part, (judged,), wallets, self.spans, {}
        assert not isinstance(judged, Refusal)  # a part of one refusal writes nothing
        moved = tuple([balance + shift for balance in judged])
        return part, (moved,), wallets, self.spans, {wallet_id: shift}

    def _shifts(
        self, wallets: Sequence[UUID], found: Mapping[UUID, repository.Found]
    ) -> dict[UUID, int] | None:
        """How far each wallet's start is from the one planned; None when what its holds
        set aside changed too (the part is then judged again)."""
        shifts: dict[UUID, int] = {}
        for wallet_id in wallets:
            span = self.spans.get(wallet_id)
            if span is None:  # named by an entry refused before it: unmoved
                continue
            seen = found[wallet_id]
            if seen.held != span.start - span.available_start:
                return None
            if seen.start != span.start:
                shifts[wallet_id] = (seen.start or 0) - span.start
        return shifts

    def _judged_again(
        self, sections: list[tuple[_Section, bool]], found: Mapping[UUID, repository.Found]
    ) -> list[RoundSettled]:
        """On what the statement found, these parts again, in one plan: one written on
        other starts (final: its decisions held), one not written (final if it writes
        nothing, else it goes again)."""
        starts: dict[UUID, int] = {}
        held: dict[UUID, int] = {}
        for (_, _, wallets, _), written in sections:
            for wallet_id in wallets:
                seen = found.get(wallet_id)
                if seen is not None:
                    starts[wallet_id] = (seen.start or 0) if written else seen.balance
                    held[wallet_id] = seen.held
        entries = [e for (_, where, _, _), _ in sections for e in self.entries[where]]
        judged = plan(starts, entries, held=held)
        settled: list[RoundSettled] = []
        position = 0
        for (part, where, wallets, _), written in sections:
            outcomes = judged.outcomes[position : position + len(part)]
            position += len(part)
            if written or not _writes(self.entries[where], outcomes):
                settled.append((part, outcomes, wallets, judged.spans, {}))
            else:
                self.again.append(part)
                for wallet_id in wallets:
                    if wallet_id in starts:
                        self.found_again[wallet_id] = (starts[wallet_id], held[wallet_id])
        return settled


def _shifted(
    entries: Sequence[Entry], outcomes: Sequence[Judged], shifts: dict[UUID, int]
) -> list[Judged] | None:
    """Outcomes of applied entries only as they stand on starts moved by `shifts` that
    keep their decisions: every balance of a wallet moved by its shift. None when one is a
    refusal (which quotes a balance: judged again)."""
    shifted: list[Judged] = []
    append = shifted.append
    for entry, judged in zip(entries, outcomes, strict=True):
        if isinstance(judged, Refusal):
            return None
        legs = entry.legs
        if len(legs) == 1:
            append((judged[0] + shifts.get(legs[0].wallet_id, 0),))
        else:
            append(
                tuple(
                    [b + shifts.get(leg.wallet_id, 0) for leg, b in zip(legs, judged, strict=True)]
                )
            )
    return shifted


def _writes(entries: Sequence[Entry], outcomes: Sequence[Judged]) -> bool:
    """Whether a part leaves anything to write: an entry applied, or a key kept."""
    return any(
        not isinstance(judged, Refusal) or kept(entry, judged)
        for entry, judged in zip(entries, outcomes, strict=True)
    )


def _written(wallets: Sequence[UUID], found: Mapping[UUID, repository.Found]) -> bool:
    """Whether the statement wrote a part (it writes all of a part's wallets or none)."""
    first = found.get(wallets[0]) if wallets else None
    return first is not None and first.start is not None


def wallets_named(entries: Iterable[Entry]) -> dict[UUID, None]:
    """The wallets the entries name, in order, each once."""
    return {leg.wallet_id: None for entry in entries for leg in entry.legs}


def opened_holds(
    runs: Sequence[Entry],
    part: Sequence[int],
    results: Mapping[int, object],
    found: Mapping[UUID, repository.Found],
) -> None:
    """The outcomes of the new holds of a part the statement settled, with the hold they
    opened and what their wallet had available right after each: its balance less what
    its holds set aside when the statement locked it (`found`) and the new holds the part
    opened up to it."""
    held: dict[UUID, int] = {}
    for index in part:
        outcome = results[index]
        if not isinstance(outcome, Posted):
            continue
        for leg, balance in zip(runs[index].legs, outcome.balances, strict=True):
            if leg.kind is EntryKind.HOLD:
                wallet_id = leg.wallet_id
                held[wallet_id] = held.get(wallet_id, found[wallet_id].held) + leg.amount
                outcome.hold = HoldState(leg.amount)
                outcome.available = balance - held[wallet_id]


def judged_outcome(
    judged: Judged, at: datetime | None, hold: tuple[HoldState, int] | None = None
) -> Posted | Refusal:
    if isinstance(judged, Refusal):
        return judged
    assert at is not None
    if hold is None:
        return Posted(judged, at)
    return Posted(judged, at, *hold)


def part_write(
    write: repository.RangeWrite,
    number: int,
    entries: Sequence[Entry],
    starts: dict[UUID, int],
    part_plan: Plan,
) -> None:
    """Add a part, planned on its own, to the statement (as part `number`)."""
    _part_rows(
        write,
        number,
        entries,
        part_plan.outcomes,
        wallets=list(starts),
        starts=starts,
        spans=part_plan.spans,
    )


def _part_rows(
    write: repository.RangeWrite,
    number: int,
    entries: Sequence[Entry],
    outcomes: Sequence[Judged],
    *,
    wallets: Sequence[UUID],
    starts: Mapping[UUID, int],
    spans: Mapping[UUID, Span],
) -> None:
    """Add a part to the statement (as part `number`): every wallet it names that is
    believed to exist (`wallets`: all must be found, and each within its range, for the
    part to be written), its ledger rows and its kept responses."""
    pinned: set[UUID] = set()
    keys = write.keys
    for entry, judged in zip(entries, outcomes, strict=True):
        key = entry.idempotency_key
        if isinstance(judged, Refusal):
            if key is not None and kept(entry, judged):
                if judged.balance is not None:
                    # The kept refusal quotes the balance it was judged on: only that one.
                    pinned.add(entry.legs[judged.leg].wallet_id)
                status, body = entry.response(judged)
                wallet_id = next(leg.wallet_id for leg in entry.legs if leg.wallet_id in starts)
                keys.append((wallet_id, key, entry.fingerprint, status, body, 0, None, None))
            continue
        first = entry.legs[0]
        event = _event(write, entry)
        for leg, balance in zip(entry.legs, judged, strict=True):
            # The key is the requester's: on the first leg's row (the payer's, for a
            # transfer), never shown in the other wallet's history.
            offset = balance - spans[leg.wallet_id].start
            _add_row(write, entry, leg, offset, key if leg is first else None, event)
        if key is not None:
            assert entry.applied_body is not None
            status, prefix, suffix = entry.applied_body
            offset = judged[0] - spans[first.wallet_id].start
            # The body around the balance, rendered in the statement.
            keys.append(
                (first.wallet_id, key, entry.fingerprint, status, None, offset, prefix, suffix)
            )
    size = len(wallets)
    for wallet_id in wallets:
        start = starts[wallet_id]
        span = spans.get(wallet_id)
        if span is None:  # named by an entry refused before its leg was judged
            write.wallets.append(
                (wallet_id, 0, 0, MAX_MINOR_UNITS, number, size, -MAX_MINOR_UNITS, MAX_MINOR_UNITS)
            )
        elif wallet_id in pinned:
            available = span.available_start
            write.wallets.append(
                (wallet_id, span.balance - start, start, start, number, size, available, available)
            )
        else:
            write.wallets.append(
                (
                    wallet_id,
                    span.balance - start,
                    span.low,
                    span.high,
                    number,
                    size,
                    span.available_low,
                    span.available_high,
                )
            )


def _event(write: repository.RangeWrite | repository.EntriesWrite, entry: Entry) -> int | None:
    """The number of the event an applied entry writes, in its statement (from 1), its
    type added; None when it writes none."""
    if entry.event is None:
        return None
    write.events.append(entry.event)
    return len(write.events)


def _add_row(  # noqa: PLR0917 (one call per ledger row: positional, as the tuple it fills)
    write: repository.RangeWrite,
    entry: Entry,
    leg: Leg,
    offset: int,
    key: str | None,
    event: int | None,
) -> None:
    """A leg's ledger row in the range write (its balance after as `offset` from its
    wallet's start), and the hold a HOLD leg opens, written with its part."""
    write.rows.append(
        (
            leg.wallet_id,
            leg.kind,  # a StrEnum: the text itself
            leg.amount,
            offset,
            key,
            entry.transfer_id,
            leg.counterparty,
            entry.description,
            entry.api_key_id,
            leg.hold,
            event,
            entry.metadata,
        )
    )
    if leg.kind is EntryKind.HOLD:
        assert leg.hold is not None
        assert entry.expires_in is not None
        write.holds.append(
            (
                leg.hold,
                leg.wallet_id,
                leg.amount,
                entry.expires_in,
                entry.description,
                entry.api_key_id,
                entry.metadata,
            )
        )


def exact_write(
    entries: Sequence[Entry],
    outcomes: Sequence[Posted | Refusal],
    exact: Plan,
    locked: repository.Locked,
) -> repository.EntriesWrite:
    """The writes of entries judged under the row locks: each moved wallet's balance and
    what its holds set aside (the stored figure, expired holds still in it until
    released), the ledger rows of the applied entries, the holds they open and the states
    they leave the others in."""
    write = repository.EntriesWrite(at=locked.at)
    held = dict(locked.stored_held)
    moved: dict[UUID, int] = {}
    for entry, outcome in zip(entries, outcomes, strict=True):
        if not isinstance(outcome, Posted):
            continue
        _add_rows(write, entry, outcome)
        for leg, balance in zip(entry.legs, outcome.balances, strict=True):
            moved[leg.wallet_id] = balance
            held[leg.wallet_id] += leg.held_delta
            if leg.kind is EntryKind.HOLD:
                assert leg.hold is not None
                assert entry.expires_in is not None
                write.new_holds.append(leg.hold)
                write.new_hold_wallets.append(leg.wallet_id)
                write.new_hold_amounts.append(leg.amount)
                write.new_hold_expiries.append(locked.at + timedelta(seconds=entry.expires_in))
                write.new_hold_descriptions.append(entry.description)
                write.new_hold_api_keys.append(entry.api_key_id)
                write.new_hold_metadata.append(entry.metadata)
    write.wallets.extend(moved)
    write.balances.extend(moved.values())
    write.held.extend(held[wallet_id] for wallet_id in moved)
    for hold_id, state in exact.holds.items():
        if hold_id in write.new_holds:
            continue
        write.hold_ids.append(hold_id)
        write.hold_remaining.append(state.remaining)
        write.hold_captured.append(state.captured)
        write.hold_statuses.append(state.status)
    return write


def _add_rows(write: repository.EntriesWrite, entry: Entry, posted: Posted) -> None:
    event = _event(write, entry)
    for index, (leg, balance) in enumerate(zip(entry.legs, posted.balances, strict=True)):
        write.row_events.append(event)
        write.row_wallets.append(leg.wallet_id)
        write.kinds.append(leg.kind)
        write.amounts.append(leg.amount)
        write.balances_after.append(balance)
        # The key is the requester's: on the first leg's row (the payer's, for a
        # transfer), never shown in the other wallet's history.
        write.row_keys.append(entry.idempotency_key if index == 0 else None)
        write.row_api_keys.append(entry.api_key_id)
        write.transfers.append(entry.transfer_id)
        write.counterparties.append(leg.counterparty)
        write.reverses.append(leg.reverses)
        write.descriptions.append(entry.description)
        write.metadata.append(entry.metadata)
        write.row_holds.append(leg.hold)
