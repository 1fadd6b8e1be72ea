"""`wallet-api deliver`: the webhook sender, a process of its own (webhooks/delivery.py).
Stops on SIGTERM or SIGINT once the attempts under way are recorded."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import start_http_server

from wallet_api.cli.database import database_settings
from wallet_api.core.database import Database
from wallet_api.core.logging import configure_logging
from wallet_api.webhooks.delivery import Sender

logger = logging.getLogger(__name__)


def run() -> int:
    settings = database_settings()
    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise

    async def main() -> None:
        database = Database(settings)
        sender = Sender(database, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if settings.webhook_metrics_port:
            try:
                start_http_server(settings.webhook_metrics_port, addr=settings.host)
            except OSError as exc:  # sending matters more than its metrics
                logger.warning(
                    "webhook sender: no metrics on %s:%d: %s",
                    settings.host,
                    settings.webhook_metrics_port,
                    exc.strerror or exc,
                )
        sampler = asyncio.create_task(sender.sample_backlog())
        logger.info("webhook sender started")
        try:
            await sender.run(stop)
        finally:
            sampler.cancel()
            await database.dispose()
        logger.info("webhook sender stopped")

    asyncio.run(main())
    return 0
