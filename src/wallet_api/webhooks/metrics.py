"""The sender's metrics, served by `wallet-api deliver` itself on WEBHOOK_METRICS_PORT
(a process of its own: not in the service's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTS = Counter(
    "wallet_webhook_attempts_total",
    "Webhook delivery attempts by outcome (succeeded: a 2xx; failed: anything else).",
    ["outcome"],
)
DELIVERY_SECONDS = Histogram(
    "wallet_webhook_delivery_seconds",
    "From an event's commit to its endpoint's 2xx, retries included.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
)
ENDPOINTS_DISABLED = Counter(
    "wallet_webhook_endpoints_disabled_total",
    "Endpoints disabled after failing for WEBHOOK_DISABLE_AFTER_SECONDS.",
)
BACKLOG = Gauge(
    "wallet_webhook_backlog",
    "Deliveries pending (due now or retrying later), sampled by the sender.",
)
BACKLOG_AGE = Gauge(
    "wallet_webhook_backlog_age_seconds",
    "Age of the oldest pending delivery's event (0: none), sampled by the sender.",
)
FEED_LAG = Gauge(
    "wallet_webhook_fan_out_lag_events",
    "Events written but not yet fanned out into deliveries, sampled by the sender.",
)
