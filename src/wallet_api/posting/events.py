"""The types of events: what changed. The statements that move money write them (each
domain names the event of the entries it builds); the feed (events/) filters on them."""

from __future__ import annotations

import enum


class EventType(enum.StrEnum):
    WALLET_CREATED = "wallet.created"
    #: A deposit or a withdrawal (one operation, or a batch's item).
    OPERATION_APPLIED = "operation.applied"
    TRANSFER_CREATED = "transfer.created"
    REVERSAL_CREATED = "reversal.created"
    HOLD_CREATED = "hold.created"
    #: A capture of all or part of a hold (with `final`, the rest released with it).
    HOLD_CAPTURED = "hold.captured"
    HOLD_VOIDED = "hold.voided"
    HOLD_EXPIRED = "hold.expired"
    #: A wallet's available balance went across a monitor's threshold.
    BALANCE_MONITOR_TRIGGERED = "balance_monitor.triggered"
