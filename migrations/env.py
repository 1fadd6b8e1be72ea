"""Alembic environment: runs migrations online over the service's own async engine settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from logging.config import fileConfig

from alembic import context
from alembic.operations import MigrationScript
from alembic.runtime.migration import MigrationContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

# The models register their tables on the metadata.
import wallet_api.auth.models
import wallet_api.events.models
import wallet_api.holds.models
import wallet_api.monitors.models
import wallet_api.wallets.models
import wallet_api.webhooks.models  # noqa: F401
from wallet_api.cli.database import database_settings, reported_in_one_line
from wallet_api.core.config import load_settings_or_exit
from wallet_api.core.database import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = metadata
#: DB_HOST's server, or with DB_HOST unset the embedded one `make run` runs (one line if
#: none). Offline (`--sql`), no server is needed: the settings as they are.
settings = load_settings_or_exit() if context.is_offline_mode() else database_settings()


def _no_empty_revision(
    _: MigrationContext,
    __: str | Iterable[str | None] | Iterable[str],
    directives: list[MigrationScript],
) -> None:
    """`alembic revision --autogenerate` that found nothing to change writes no file (an
    empty revision would only lengthen the history), and says so. Alembic's documented
    way: empty the directives (cookbook, "Don't Generate Empty Migrations")."""
    if not getattr(config.cmd_opts, "autogenerate", False):
        return
    script = directives[0]
    if script.upgrade_ops is not None and script.upgrade_ops.is_empty():
        directives[:] = []
        logging.getLogger("alembic.env").info("No changes in the schema: no revision written")


def _run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        process_revision_directives=_no_empty_revision,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async_migrations() -> None:
    engine = create_async_engine(settings.database_url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=settings.database_url.render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    with reported_in_one_line(settings, migrating=True):
        asyncio.run(_run_async_migrations())
