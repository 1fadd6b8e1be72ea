"""`wallet-api keys create|list|revoke`: the operator's commands for API keys.

A key is printed once, by `create`, and never again: only its secret's hash is stored.
Every command prints JSON on standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from wallet_api.auth import repository
from wallet_api.auth.keys import DEFAULT_SCOPES, OWNER_PATTERN, ApiKey, Scope, new_key
from wallet_api.cli.database import database_settings, reported_in_one_line
from wallet_api.core.config import BURST_MAX, RATE_RANGE, load_settings_or_exit
from wallet_api.core.database import Connection, Database

T = TypeVar("T")
N = TypeVar("N", int, float)
_DURATION = re.compile(r"(\d+)([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def add_commands(commands: Any) -> None:
    """The `keys` command and its subcommands, on the CLI's subparsers."""
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--owner", required=True, type=_owner, help="who the key acts for")
    create.add_argument(
        "--scope",
        action="append",
        choices=[scope.value for scope in Scope],
        help="read (GET), write (POST) or deposit (with write: create money by DEPOSIT); "
        "repeat for several (default: read and write)",
    )
    create.add_argument(
        "--expires",
        type=_expiry,
        help="when the key stops working: a duration (30d, 12h, 15m) or an ISO 8601 time",
    )
    create.add_argument(
        "--rate",
        type=_within(float, *RATE_RANGE),
        help="requests a second (default: RATE_LIMIT_RATE)",
    )
    create.add_argument(
        "--burst",
        type=_within(int, 1, BURST_MAX),
        help="requests at once (default: RATE_LIMIT_BURST)",
    )
    actions.add_parser("list", help="every key, without secrets")
    revoke = actions.add_parser("revoke", help="revoke a key by its id (the wk_<id>_ part)")
    revoke.add_argument("key_id")


def run(args: argparse.Namespace) -> int:
    """Run the `keys` subcommand; the process's exit status."""
    if args.action == "create":
        scopes = [Scope(scope) for scope in args.scope] if args.scope else list(DEFAULT_SCOPES)
        if Scope.DEPOSIT in scopes and Scope.WRITE not in scopes:
            print(
                "wallet-api: the scope deposit needs write too (a deposit is a POST): "
                "add --scope write",
                file=sys.stderr,
            )
            return 2
        if args.expires is not None and args.expires.moment <= datetime.now(UTC):
            # Such a key would be refused from its first request on: a mistake, not a wish.
            print(
                f"wallet-api: --expires {args.expires.text!r} is not in the future: give a "
                "positive duration (30d, 12h, 15m) or a time to come",
                file=sys.stderr,
            )
            return 2
        key, key_id, secret_sha256 = new_key()
        created = _with_connection(
            lambda connection: repository.insert_key(
                connection,
                key_id=key_id,
                owner=args.owner,
                scopes=scopes,
                secret_sha256=secret_sha256,
                rate=args.rate,
                burst=args.burst,
                expires_at=None if args.expires is None else args.expires.moment,
            )
        )
        print(json.dumps({"key": key, **_shown(created)}, indent=2))
        print("wallet-api: the key is shown this once; keep it now.", file=sys.stderr)
        return 0
    if args.action == "list":
        keys = _with_connection(repository.all_keys)
        print(json.dumps([_shown(key) for key in sorted(keys, key=lambda k: k.created_at)]))
        return 0
    revoked = _with_connection(lambda connection: repository.revoke_key(connection, args.key_id))
    if revoked is None:
        # A mistyped id: a failure a person can fix, as the CLI's others are (exit 2).
        print(f"wallet-api: no API key with the id {args.key_id!r}", file=sys.stderr)
        return 2
    print(json.dumps(_shown(revoked), indent=2))
    # When it takes effect (auth/store.py): each worker rereads the whole key table every
    # AUTH_KEYS_REFRESH_SECONDS and, while the database answers, trusts only its latest copy.
    every = load_settings_or_exit().auth_keys_refresh_seconds
    print(
        f"wallet-api: key {revoked.id} revoked. Each worker of the service rereads the keys "
        f"every AUTH_KEYS_REFRESH_SECONDS ({every:g} s in these settings): it refuses this "
        f"key within {every:g} s plus the time that read takes, while the database answers.",
        file=sys.stderr,
    )
    return 0


def _with_connection(work: Callable[[Connection], Awaitable[T]]) -> T:
    settings = database_settings()

    async def go() -> T:
        database = Database(settings)
        try:
            async with database.autocommit() as connection:
                return await work(connection)
        finally:
            await database.dispose()

    with reported_in_one_line(settings):
        return asyncio.run(go())


def _shown(key: ApiKey) -> dict[str, Any]:
    """A key as `list` shows it: everything but its secret's hash."""
    now = datetime.now(UTC)
    status = (
        "revoked"
        if key.revoked_at is not None
        else "expired"
        if key.expires_at is not None and key.expires_at <= now
        else "active"
    )
    return {
        "id": key.id,
        "owner": key.owner,
        "scopes": sorted(scope.value for scope in key.scopes),
        "rate": key.rate,
        "burst": key.burst,
        "status": status,
        "created_at": key.created_at.isoformat(),
        "expires_at": None if key.expires_at is None else key.expires_at.isoformat(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(),
    }


def _owner(text: str) -> str:
    if not re.fullmatch(OWNER_PATTERN, text):
        raise argparse.ArgumentTypeError(
            "1 to 64 characters: letters, digits and . _ @ - (not first)"
        )
    return text


@dataclass(frozen=True)
class Expiry:
    """`--expires` as given (for a message) and the moment it names."""

    text: str
    moment: datetime


def _expiry(text: str) -> Expiry:
    duration = _DURATION.fullmatch(text)
    if duration is not None:
        amount, unit = int(duration.group(1)), _UNITS[duration.group(2)]
        return Expiry(text, datetime.now(UTC) + timedelta(**{unit: amount}))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "a duration such as 30d, 12h or 15m, or an ISO 8601 time"
        ) from None
    return Expiry(text, moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


def _within(kind: Callable[[str], N], low: float, high: float) -> Callable[[str], N]:
    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}")
        return value

    return parse
