"""The `wallet-api` command: `serve` (what `make run` runs), `migrate`, `verify` and
`keys` (API keys). Which database the commands use: `cli/database.py`."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from types import FrameType

from wallet_api.cli import keys as keys_command
from wallet_api.cli.database import (
    COULD_NOT_CONNECT,
    EMBEDDED_DATA_DIR,
    database_settings,
    reported_in_one_line,
    server_name,
)
from wallet_api.core.config import Settings, load_settings_or_exit
from wallet_api.core.database import Database
from wallet_api.wallets.repository import LedgerReport
from wallet_api.wallets.service import WalletService

logger = logging.getLogger("wallet_api.cli")


def migrate(settings: Settings) -> None:
    """Apply every Alembic migration to the database `settings` name."""
    from alembic import command
    from alembic.config import Config

    config = Config("alembic.ini")
    config.attributes["configure_logger"] = False  # keep this process's logging as it is
    with reported_in_one_line(settings, migrating=True):
        command.upgrade(config, "head")
    logger.info(
        "database %r on %s: migrated to the latest revision",
        settings.db_name,
        server_name(settings),
    )


def serve() -> int:
    """Migrate, then run Gunicorn in the foreground; with no DB_HOST, on an embedded server."""
    settings = load_settings_or_exit()
    unbindable = _cannot_bind(settings.host, settings.port)
    if unbindable:
        print(
            f"wallet-api: cannot listen on {settings.host}:{settings.port}: {unbindable}",
            file=sys.stderr,
        )
        return COULD_NOT_CONNECT
    with ExitStack() as stack:
        if "db_host" not in settings.model_fields_set:
            from wallet_api.devtools.postgres import embedded_postgres, ensure_database

            logger.info(
                "DB_HOST is not set: starting the embedded PostgreSQL in %s", EMBEDDED_DATA_DIR
            )
            address = stack.enter_context(embedded_postgres(EMBEDDED_DATA_DIR, keep_data=True))
            ensure_database(address, settings.db_name)
            os.environ.update(address.environment(settings.db_name))
            settings = load_settings_or_exit()
        migrate(settings)
        # A terminal reads console lines better than JSON; a LOG_FORMAT set anywhere wins.
        if "log_format" not in settings.model_fields_set:
            os.environ["LOG_FORMAT"] = "console"
        # Gunicorn gets its own session, so a terminal's Ctrl-C reaches only this process,
        # which turns it into a graceful SIGTERM, then stops the database it started.
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"],
            start_new_session=True,
        )
        # The webhook sender beside it (a process of its own: docs/EVENTS.md).
        sender = subprocess.Popen(
            [sys.executable, "-m", "wallet_api.cli", "deliver"], start_new_session=True
        )

        def stop(signum: int, _: FrameType | None) -> None:
            logger.info("received %s: stopping Gunicorn", signal.Signals(signum).name)
            gunicorn.send_signal(signal.SIGTERM)
            sender.send_signal(signal.SIGTERM)

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stop)
        status = gunicorn.wait()
        sender.send_signal(signal.SIGTERM)
        try:
            sender.wait(SENDER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            sender.kill()  # its deliveries under way are sent again by the next sender
            sender.wait()
        return status


#: Seconds the webhook sender gets to finish its attempts under way when `serve` stops: an
#: attempt's time-out (WEBHOOK_TIMEOUT_SECONDS, 10) and its record.
SENDER_STOP_SECONDS = 20


def _cannot_bind(host: str, port: int) -> str | None:
    """Why Gunicorn could not bind (host, port), and what to do, or None when it can: the
    bind it makes (IPv6 for an IPv6 literal, else IPv4, SO_REUSEADDR), without its five
    retries and their tracebacks."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host.strip("[]"), port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"{exc.strerror}: stop what listens there (another `make run`?), or set PORT"
        return f"{exc.strerror or exc}: check HOST and PORT"
    return None


def verify() -> int:
    """Check the whole ledger; print a summary. Exit status 0 when it is consistent, 1 on
    any mismatch, 2 when it could not be checked."""
    settings = database_settings()

    async def run() -> LedgerReport:
        database = Database(settings, unbounded=True)  # one statement over the whole ledger
        try:
            return await WalletService(database, settings).verify_ledger()
        finally:
            await database.dispose()

    try:
        with reported_in_one_line(settings):
            report = asyncio.run(run())
    except Exception:  # not a mismatch: the ledger could not be checked
        traceback.print_exc()
        print("wallet-api: the ledger could not be checked (above: why)", file=sys.stderr)
        return COULD_NOT_CONNECT
    print(
        json.dumps(
            {
                "consistent": report.consistent,
                "wallets": report.wallets,
                "operations": report.operations,
                "balance_mismatches": report.balance_mismatches,
                "chain_breaks": report.chain_breaks,
                "negative_balances": report.negative_balances,
                "unmatched_transfers": report.unmatched_transfers,
                "bad_reversals": report.bad_reversals,
                "money_created": report.money_created,
                "money_created_by_currency": report.money_created_by_currency,
                "held_mismatches": report.held_mismatches,
                "bad_holds": report.bad_holds,
                "negative_available": report.negative_available,
                "currency_crossings": report.currency_crossings,
                "wallets_to_inspect": [str(w) for w in report.wallets_to_inspect],
                "transfers_to_inspect": [str(t) for t in report.transfers_to_inspect],
                "holds_to_inspect": [str(h) for h in report.holds_to_inspect],
            },
            indent=2,
        )
    )
    return 0 if report.consistent else 1


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="wallet-api", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve", help="apply migrations and serve (embedded PostgreSQL if DB_HOST is unset)"
    )
    commands.add_parser("migrate", help="apply every migration to the configured database")
    commands.add_parser(
        "verify",
        help="check that every balance equals its ledger; exit 1 on a mismatch, 2 if it "
        "could not check",
    )
    commands.add_parser(
        "deliver", help="send webhooks: the sender process (run beside the service)"
    )
    keys_command.add_commands(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="wallet-api: %(message)s")
    for noisy in ("embedded_postgres", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.migration").addFilter(_what_alembic_did)
    if args.command == "serve":
        sys.exit(serve())
    if args.command == "verify":
        sys.exit(verify())
    if args.command == "deliver":
        # Imported here: the other commands (and Alembic's env.py) need no HTTP client.
        from wallet_api.cli import deliver as deliver_command

        sys.exit(deliver_command.run())
    if args.command == "keys":
        sys.exit(keys_command.run(args))
    migrate(database_settings())


def _what_alembic_did(record: logging.LogRecord) -> bool:
    """Alembic's log, without the two lines it prints at every start whatever it does."""
    return not str(record.msg).startswith(("Context impl", "Will assume"))


if __name__ == "__main__":
    main()
