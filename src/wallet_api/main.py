"""The ASGI application: settings, logging, lifespan, routers, error handlers."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from wallet_api import __version__
from wallet_api.auth.exceptions import AUTH_ERRORS
from wallet_api.auth.gate import API_PREFIX, admit, open_gate
from wallet_api.core.config import Settings, get_settings
from wallet_api.core.database import Database
from wallet_api.core.docs import install_docs
from wallet_api.core.errors import install_error_handlers
from wallet_api.core.front_door import FrontDoor, FrontDoorApp
from wallet_api.core.logging import configure_logging
from wallet_api.core.metrics import router as metrics_router
from wallet_api.core.metrics import sample_gauges
from wallet_api.core.openapi import install_openapi
from wallet_api.events.router import router as events_router
from wallet_api.events.service import EventFeed
from wallet_api.health.router import router as health_router
from wallet_api.holds import fast_path as holds_fast_path
from wallet_api.holds.router import router as holds_router
from wallet_api.holds.router import wallet_holds_router
from wallet_api.holds.service import HoldService
from wallet_api.monitors.router import router as monitors_router
from wallet_api.monitors.service import MonitorService
from wallet_api.reversals.router import router as reversals_router
from wallet_api.reversals.service import ReversalService
from wallet_api.statements.router import router as statements_router
from wallet_api.statements.service import StatementService
from wallet_api.transfers import fast_path as transfers_fast_path
from wallet_api.transfers.router import router as transfers_router
from wallet_api.transfers.service import TransferService
from wallet_api.wallets import fast_path as wallets_fast_path
from wallet_api.wallets.router import BATCH_PATH, batch_router
from wallet_api.wallets.router import router as wallets_router
from wallet_api.wallets.service import WalletService
from wallet_api.webhooks.router import deliveries_router as webhook_deliveries_router
from wallet_api.webhooks.router import router as webhooks_router
from wallet_api.webhooks.service import WebhookService


def create_app(settings: Settings | None = None) -> FrontDoorApp:
    """Build the application; resources are opened by the lifespan, per worker process."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    keys_required = settings.auth_mode == "keys"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        service = WalletService(database, settings)
        transfers = TransferService(
            database, settings, service.owners, service.currencies, service.writer
        )
        app.state.database = database
        app.state.wallet_service = service
        app.state.transfer_service = transfers
        app.state.reversal_service = ReversalService(
            database, service.owners, service.currencies, service.writer
        )
        holds = app.state.hold_service = HoldService(
            database, settings, service.owners, service.currencies, service.writer
        )
        feed = app.state.event_feed = EventFeed(database, wait_max=settings.events_wait_max_seconds)
        app.state.monitor_service = MonitorService(database, service.owners, service.currencies)
        app.state.statement_service = StatementService(database, service.owners, service.currencies)
        app.state.webhook_service = WebhookService(database, feed)
        gate = app.state.gate = open_gate(settings, database) if keys_required else None
        # Move everything built so far (modules, the app, its routes) out of the garbage
        # collector's reach: full collections then scan only per-request garbage. Measured
        # on the hot-wallet benchmark: p99 latency about 100 ms -> 40 ms.
        gc.collect()
        gc.freeze()
        # Collect the young generation every 7,000 allocations instead of 700 (and the
        # older ones as rarely in turn): a request allocates a few hundred objects, almost
        # none of them in cycles, and each collection also walks what the worker's caches
        # hold. Hot-wallet write: 113 -> 107 us of service CPU (docs/PERFORMANCE.md).
        gc.set_threshold(7000, 10, 10)
        background = [
            asyncio.create_task(
                service.purge_keys_periodically(
                    older_than_seconds=settings.idempotency_key_ttl,
                    every=settings.idempotency_purge_interval,
                )
            ),
            asyncio.create_task(
                sample_gauges(
                    database.pool_usage,
                    lambda: {
                        **service.queue_depths(),
                        **transfers.queue_depths(),
                        **holds.queue_depths(),
                    },
                )
            ),
            asyncio.create_task(database.recycle_connections_periodically()),
            asyncio.create_task(
                feed.purge_periodically(
                    older_than_seconds=settings.events_retention_days * 86_400,
                    every=settings.idempotency_purge_interval,
                )
            ),
        ]
        if gate is not None:
            background.append(asyncio.create_task(gate.keys.refresh_periodically()))
        if settings.holds_sweep_seconds:
            background.append(
                asyncio.create_task(
                    holds.release_expired_periodically(every=settings.holds_sweep_seconds)
                )
            )
        try:
            yield
        finally:
            # Uvicorn has stopped taking requests: finish what is queued, then close.
            for task in background:
                task.cancel()
            await asyncio.gather(service.close(), transfers.close(), holds.close())
            if gate is not None:
                await gate.close()
            await database.dispose()

    app = FrontDoorApp(
        title="Wallet API",
        version=__version__,
        summary=(
            "Digital wallets: create, read the balance, deposit, withdraw, in batches; "
            "transfers between wallets, reversals; holds (authorize, capture, void, expiry); "
            "a feed of every committed change."
        ),
        lifespan=lifespan,
        # Metrics are Prometheus's (/metrics); without this FastAPI asks OpenTelemetry on
        # every request whether a provider was configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Operation ids are the endpoint functions' names: what generated clients call.
        generate_unique_id_function=lambda route: route.name,
        # /docs and /redoc are install_docs's: their assets served by the service itself.
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    if keys_required:
        install_openapi(app, guarded=AUTH_ERRORS, guarded_prefix=API_PREFIX)
    else:
        install_openapi(app)
    install_error_handlers(app)
    # Every request passes the front door first: its request id, the body limit, the API
    # key gate (with keys required), then the fast paths (plain operations, transfers,
    # holds and captures, and balance reads, answered without FastAPI's routing); after
    # the answer, its metrics and access log line.
    app.front_door = FrontDoor(
        app.behind,
        routes=[
            *wallets_fast_path.fast_routes(),
            *transfers_fast_path.fast_routes(),
            *holds_fast_path.fast_routes(),
        ],
        limit=settings.max_request_body_bytes,
        limits_by_path={BATCH_PATH: settings.max_batch_body_bytes},
        admit=admit if keys_required else None,
        guarded_prefix=API_PREFIX,
    )
    for router in ROUTERS:
        app.include_router(router)
    return app


#: Every router, in the order of the published contract.
ROUTERS = (
    wallets_router,
    statements_router,
    batch_router,
    transfers_router,
    reversals_router,
    holds_router,
    wallet_holds_router,
    events_router,
    monitors_router,
    webhooks_router,
    webhook_deliveries_router,
    health_router,
    metrics_router,
)


app = create_app()
