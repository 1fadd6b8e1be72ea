"""The tables: a wallet's current balance, and the append-only ledger of applied entries."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from wallet_api.core.database import Xid8, metadata
from wallet_api.core.money import MAX_MINOR_UNITS
from wallet_api.posting.entries import (
    DESCRIPTION_MAX_LENGTH,
    HOLD_KINDS,
    REVERSAL_KINDS,
    TRANSFER_KINDS,
    EntryKind,
)

#: A client's key (255) in its owner's namespace (64 + 1), with a batch item's suffix.
IDEMPOTENCY_KEY_LENGTH = 400


def wallet_metadata(table: str = "") -> str:
    """SQL: a ledger row's metadata nested under its wallet's id, `{"<wallet id>": {…}}`
    (of the row `table` names): what the metadata's index holds (each indexed path begins
    with the wallet), and what the history's filter compares. Immutable, as an index's
    expression must be."""
    row = f"{table}." if table else ""
    return f"jsonb_set('{{}}'::jsonb, ARRAY[{row}wallet_id::text], {row}metadata)"


class OperationType(enum.StrEnum):
    """What the operation endpoint does to one wallet."""

    DEPOSIT = "DEPOSIT"
    WITHDRAW = "WITHDRAW"


def _one_of(kinds: Iterable[str]) -> str:
    return "operation IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


wallets = Table(
    "wallets",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column(
        "currency",
        String(3),
        nullable=False,
        comment="Its ISO 4217 currency, never changed: its amounts are minor units of it.",
    ),
    Column(
        "currency_exponent",
        SmallInteger,
        nullable=False,
        comment="The digits of its currency's minor unit, as when it was made.",
    ),
    Column("balance", BigInteger, nullable=False, server_default=text("0"), comment="Minor units."),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column(
        "owner",
        String(64),
        nullable=True,
        comment="The owner of the API key that created it; NULL: created without keys.",
    ),
    Column(
        "held",
        BigInteger,
        nullable=False,
        server_default=text("0"),
        comment="Minor units its active holds set aside (expired ones until released).",
    ),
    Column(
        "holds_expire_at",
        DateTime(timezone=True),
        nullable=True,
        comment="The first expiry of its active holds; NULL: none.",
    ),
    Column(
        "seq",
        BigInteger,
        nullable=False,
        server_default=text("0"),
        comment="The number of its last ledger row (0: none).",
    ),
    Column(
        "last_entry_at",
        DateTime(timezone=True),
        nullable=True,
        comment="The time of the wallet's latest ledger row: no later row is dated before it.",
    ),
    Column(
        "last_event_xid",
        Xid8(),
        nullable=True,
        comment="The feed position (xid) of the wallet's latest event: no later event of the "
        "wallet is placed before it.",
    ),
    Column(
        "metadata",
        JSONB,
        nullable=True,
        comment="The client's metadata on the wallet, given when it was made (NULL: none).",
    ),
    # The last line of defence: the service never writes these, the database refuses them.
    CheckConstraint("balance >= 0", name="balance_not_negative"),
    CheckConstraint(f"balance <= {MAX_MINOR_UNITS}", name="balance_within_limit"),
    CheckConstraint("held >= 0", name="held_not_negative"),
    CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_is_a_code"),
    CheckConstraint("currency_exponent BETWEEN 0 AND 4", name="currency_exponent_known"),
)

wallet_operations = Table(
    "wallet_operations",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("wallet_id", Uuid, ForeignKey("wallets.id"), nullable=False),
    Column("operation", String(16), nullable=False, comment="The entry's kind (EntryKind)."),
    Column("amount", BigInteger, nullable=False, comment="Minor units, always positive."),
    Column("balance_after", BigInteger, nullable=False, comment="Minor units."),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column(
        "idempotency_key",
        String(IDEMPOTENCY_KEY_LENGTH),
        nullable=True,
        comment="As stored: in its owner's namespace (auth/keys.py).",
    ),
    Column("transfer_id", Uuid, nullable=True, comment="Shared by a transfer's two legs."),
    Column(
        "counterparty_wallet_id",
        Uuid,
        ForeignKey("wallets.id"),
        nullable=True,
        comment="The other wallet of a transfer's leg.",
    ),
    Column(
        "reverses_id",
        BigInteger,
        ForeignKey("wallet_operations.id"),
        nullable=True,
        comment="The entry a reversal compensates.",
    ),
    Column("description", String(DESCRIPTION_MAX_LENGTH), nullable=True),
    Column(
        "api_key_id",
        String(16),
        nullable=True,
        comment="The API key that applied it (api_keys.id, never deleted); NULL: no keys.",
    ),
    Column(
        "hold_id",
        Uuid,
        ForeignKey("holds.id"),
        nullable=True,
        comment="The hold a HOLD, CAPTURE, CAPTURE_IN or RELEASE row belongs to.",
    ),
    Column(
        "seq",
        BigInteger,
        nullable=True,
        comment="Its place in its wallet's ledger: 1, 2, 3, ... (NULL: written before "
        "the numbering began).",
    ),
    Column(
        "metadata",
        JSONB,
        nullable=True,
        comment="The client's metadata on the request that wrote it (NULL: none).",
    ),
    CheckConstraint(_one_of(EntryKind), name="operation_known"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
    CheckConstraint(
        "transfer_id IS NULL OR counterparty_wallet_id IS NOT NULL", name="transfer_names_both"
    ),
    CheckConstraint(
        "counterparty_wallet_id IS NULL OR transfer_id IS NOT NULL OR hold_id IS NOT NULL",
        name="counterparty_linked",
    ),
    CheckConstraint(f"(hold_id IS NOT NULL) = {_one_of(HOLD_KINDS)}", name="hold_linked"),
    CheckConstraint(
        f"transfer_id IS NOT NULL OR NOT {_one_of(TRANSFER_KINDS)}", name="transfer_leg_linked"
    ),
    CheckConstraint(
        f"(reverses_id IS NOT NULL) = {_one_of(REVERSAL_KINDS)}", name="reversal_linked"
    ),
    CheckConstraint("counterparty_wallet_id <> wallet_id", name="counterparty_is_another"),
    # A wallet's history, newest first, by keyset: (wallet_id, id DESC).
    Index("ix_wallet_operations_wallet_id_id", "wallet_id", "id"),
    # Its rows by time (in the same order: revision f3c1a9e57b20): a balance at a point in
    # time, the bounds of a history or a statement between two times.
    Index("ix_wallet_operations_wallet_id_created_at", "wallet_id", "created_at", "id"),
    # A transfer's legs; an entry's reversal, at most one (the database's own guarantee).
    Index(
        "ix_wallet_operations_transfer_id",
        "transfer_id",
        postgresql_where=text("transfer_id IS NOT NULL"),
    ),
    Index(
        "uq_wallet_operations_reverses_id",
        "reverses_id",
        unique=True,
        postgresql_where=text("reverses_id IS NOT NULL"),
    ),
    Index(
        "ix_wallet_operations_hold_id",
        "hold_id",
        postgresql_where=text("hold_id IS NOT NULL"),
    ),
    # The rows with metadata, by wallet, key and value (revision c7a2e9f4b815): the
    # history's metadata filter, on the metadata nested under the wallet's id.
    Index(
        "ix_wallet_operations_metadata",
        text(f"({wallet_metadata()}) jsonb_path_ops"),
        postgresql_using="gin",
        postgresql_where=text("metadata IS NOT NULL"),
    ),
)

#: The outcome of every request sent with an Idempotency-Key, stored in the transaction
#: that applied (or refused) it, replayed to later requests with the same key.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(IDEMPOTENCY_KEY_LENGTH), primary_key=True),
    Column("fingerprint", String(64), nullable=False, comment="sha256 of method, path, body."),
    Column("response_status", SmallInteger, nullable=False),
    Column("response_body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_idempotency_keys_created_at", "created_at"),
)
