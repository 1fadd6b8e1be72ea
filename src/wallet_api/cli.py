"""The `wallet-api` command: `serve` (what `make run` runs), `migrate`, `verify` and
`keys` (API keys)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from wallet_api.auth import cli as auth_cli
from wallet_api.core.config import load_settings_or_exit
from wallet_api.core.database import Database
from wallet_api.wallets.repository import LedgerReport
from wallet_api.wallets.service import WalletService

logger = logging.getLogger("wallet_api.cli")

#: Where `serve` keeps the embedded PostgreSQL's data, relative to the working directory.
EMBEDDED_DATA_DIR = Path(".data/postgres")


def migrate() -> None:
    """Apply every Alembic migration to the configured database."""
    from alembic import command
    from alembic.config import Config

    config = Config("alembic.ini")
    config.attributes["configure_logger"] = False  # keep this process's logging as it is
    command.upgrade(config, "head")


def serve() -> int:
    """Migrate, then run Gunicorn in the foreground; with no DB_HOST, on an embedded server."""
    settings = load_settings_or_exit()
    with ExitStack() as stack:
        if "db_host" not in settings.model_fields_set:
            from wallet_api.devtools.postgres import embedded_postgres, ensure_database

            logger.info(
                "DB_HOST is not set: starting the embedded PostgreSQL in %s", EMBEDDED_DATA_DIR
            )
            address = stack.enter_context(embedded_postgres(EMBEDDED_DATA_DIR, keep_data=True))
            ensure_database(address, settings.db_name)
            os.environ.update(address.environment(settings.db_name))
        migrate()
        # A terminal reads console lines better than JSON; a LOG_FORMAT set anywhere wins.
        if "log_format" not in settings.model_fields_set:
            os.environ["LOG_FORMAT"] = "console"
        # Gunicorn gets its own session, so a terminal's Ctrl-C reaches only this process,
        # which turns it into a graceful SIGTERM, then stops the database it started.
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"],
            start_new_session=True,
        )

        def stop(signum: int, _: FrameType | None) -> None:
            logger.info("received %s: stopping Gunicorn", signal.Signals(signum).name)
            gunicorn.send_signal(signal.SIGTERM)

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stop)
        return gunicorn.wait()


def verify() -> int:
    """Check the whole ledger; print a summary; non-zero exit status on any mismatch."""
    settings = load_settings_or_exit()

    async def run() -> LedgerReport:
        database = Database(settings, unbounded=True)  # one statement over the whole ledger
        try:
            return await WalletService(database, settings).verify_ledger()
        finally:
            await database.dispose()

    report = asyncio.run(run())
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
                "wallets_to_inspect": [str(w) for w in report.wallets_to_inspect],
                "transfers_to_inspect": [str(t) for t in report.transfers_to_inspect],
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
        "verify", help="check that every balance equals its ledger; exit 1 on any mismatch"
    )
    auth_cli.add_commands(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="wallet-api: %(message)s")
    for noisy in ("embedded_postgres", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command == "serve":
        sys.exit(serve())
    if args.command == "verify":
        sys.exit(verify())
    if args.command == "keys":
        sys.exit(auth_cli.run(args))
    load_settings_or_exit()
    migrate()


if __name__ == "__main__":
    main()
