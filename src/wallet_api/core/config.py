"""The one settings object, read once from the environment and `.env`."""

from __future__ import annotations

import difflib
import ipaddress
import os
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import URL

from wallet_api.core.money import FRACTION_DIGITS, Currency, currency_exponent

LogLevel = Literal["critical", "error", "warning", "info", "debug"]

DEFAULT_STATEMENT_TIMEOUT_MS = 10_000
#: How much longer than the server's statement_timeout the client waits by default: the
#: server cancels a slow statement itself, and the client gives up only on a server that
#: does not answer at all.
CLIENT_TIMEOUT_MARGIN_SECONDS = 2.0
#: Rate limits: requests a second (one an hour and a half at least), and at once.
RATE_RANGE = (0.0002, 1e9)
BURST_MAX = 1_000_000_000


class Settings(BaseSettings):
    """Every knob of the service. Names are the specification's environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Database (the specification's names).
    db_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description=(
            "Host name, IP, or a Unix socket directory; or several, comma-separated, each "
            "with an optional :port (libpq style, `pg1:5433,pg2:5433`), tried in order for "
            "one that accepts writes (see DB_TARGET_SESSION_ATTRS)."
        ),
    )
    db_port: int = Field(5432, ge=1, le=65535)
    db_name: str = Field("wallets", min_length=1)
    db_user: str = Field("postgres", min_length=1)
    db_password: SecretStr = SecretStr("")
    db_target_session_attrs: Literal["any", "read-write", "primary"] | None = Field(
        None,
        description=(
            "Which server of DB_HOST's list a connection may stay on (libpq's "
            "target_session_attrs). Unset: read-write when DB_HOST names several hosts, "
            "any for one."
        ),
    )

    # The asyncpg connection pool, per worker process (see docs/CONFIGURATION.md).
    db_pool_size: int = Field(20, ge=1, le=1000)
    db_max_overflow: int = Field(10, ge=0, le=1000)
    db_pool_timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds to wait for a pool slot."
    )
    db_pool_recycle: int = Field(
        1800, ge=-1, description="Seconds between renewals of every connection; -1 or 0 never."
    )
    db_connect_timeout: float = Field(5.0, gt=0, le=300)
    db_statement_timeout_ms: int = Field(
        DEFAULT_STATEMENT_TIMEOUT_MS,
        ge=0,
        description="PostgreSQL statement_timeout for the service's sessions; 0 is none.",
    )
    db_lock_timeout_ms: int = Field(
        2000,
        ge=0,
        description=(
            "PostgreSQL lock_timeout of the service's sessions: how long a write waits for a "
            "row lock held elsewhere before its batch is split (0 none)."
        ),
    )
    db_client_timeout: float | None = Field(
        None,
        gt=0,
        le=3600,
        description=(
            "Seconds the service waits for any one answer of the database before it gives "
            "up (a hung server, a network that drops packets). Unset: 2 s past "
            "DB_STATEMENT_TIMEOUT_MS, or 12 s when that is 0."
        ),
    )
    db_prepared_statement_cache_size: int = Field(
        100, ge=0, description="asyncpg prepared statements cached per connection."
    )
    db_pgbouncer: bool = Field(
        False,
        description=(
            "The database is reached through PgBouncer in transaction pooling mode: no "
            "prepared statement cache, every statement inside a transaction, no "
            "statement_timeout startup parameter."
        ),
    )

    # Server (the specification's names, plus PORT and HOST).
    workers_count: int = Field(2, ge=1, le=256)
    threads_count: int = Field(1, ge=1, le=1024)
    log_level: LogLevel = "info"
    log_format: Literal["json", "console"] = "json"
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8000, ge=1, le=65535)
    graceful_timeout: int = Field(30, ge=1, le=3600)
    max_request_body_bytes: int = Field(64 * 1024, ge=1, le=16 * 1024 * 1024)
    max_batch_body_bytes: int = Field(
        256 * 1024,
        ge=1,
        le=64 * 1024 * 1024,
        description="The limit for the batch endpoint's bodies (1,000 operations).",
    )

    # Money (see docs/API.md, "Currencies").
    default_currency: str = Field(
        "USD",
        description="The ISO 4217 currency of a wallet created without one: a currency "
        "of two fractional digits, the specification's (its bodies stay exactly as they "
        "are for such wallets).",
    )

    # Group commit: batches of writes and reads across wallets (see docs/PERFORMANCE.md).
    coalescing_enabled: bool = True
    coalescing_max_batch: int = Field(256, ge=1, le=10_000)
    coalescing_max_in_flight: int = Field(
        4, ge=1, le=1000, description="Batches a worker writes at once (each on a connection)."
    )
    coalescing_queue_limit: int = Field(2048, ge=1, le=1_000_000)
    operation_deadline: float = Field(
        5.0, gt=0, le=600, description="Seconds an operation may wait in its wallet's queue."
    )

    # Idempotency-Key retention (see docs/API.md, "Safe retries").
    idempotency_key_ttl: int = Field(
        86_400, ge=1, description="Seconds a key is kept at least (then purged)."
    )
    idempotency_purge_interval: float = Field(300.0, gt=0, description="Seconds between purges.")

    # Events (see docs/EVENTS.md).
    events_enabled: bool = Field(
        True,
        description="Write an event for every committed change (GET /api/v1/events); "
        "off, none is written (what the events cost is measured against this).",
    )
    events_retention_days: float = Field(
        90.0, gt=0, le=3650, description="Days an event is kept in the feed."
    )
    events_wait_max_seconds: float = Field(
        30.0,
        ge=0,
        le=30,
        description="The longest a feed page waits for its first event (`wait` above it "
        "waits this long): below a proxy's idle time-out.",
    )

    # Webhooks, sent by `wallet-api deliver` (see docs/EVENTS.md, "Webhooks").
    webhook_allow_private_addresses: bool = Field(
        False,
        description="Send to endpoints whose host resolves to a private, loopback or "
        "link-local address (off: refused, so that a key holder cannot make the service "
        "call into its own network).",
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="Seconds an attempt may take, connecting included."
    )
    webhook_backoff_seconds: float = Field(
        10.0, gt=0, le=3600, description="Seconds before the first retry (then doubling)."
    )
    webhook_retry_hours: float = Field(
        72.0, gt=0, le=720, description="Hours after its event a delivery is retried for."
    )
    webhook_max_attempts: int = Field(
        40, ge=1, le=1000, description="Attempts a delivery gets at most."
    )
    webhook_disable_after_seconds: float = Field(
        5 * 86_400.0,
        gt=0,
        description="An endpoint whose attempts have failed this long, without a success, "
        "is disabled.",
    )
    webhook_concurrency: int = Field(
        32, ge=1, le=1024, description="Deliveries a sender process sends at once."
    )
    webhook_metrics_port: int = Field(
        8001,
        ge=0,
        le=65535,
        description="Port of the sender's own /metrics, on HOST; 0: none.",
    )

    # Holds (see docs/API.md, "Holds").
    holds_sweep_seconds: float = Field(
        1.0,
        ge=0,
        description="Seconds between releases of expired holds in each worker; 0 turns them "
        "off (an expired hold stops counting at its expiry all the same).",
    )

    # Who may call (see docs/SECURITY.md).
    auth_mode: Literal["none", "keys"] = Field(
        "none",
        description=(
            "keys: every /api request needs an API key (Authorization: Bearer). none: the "
            "specification's open contract, allowed only on a loopback HOST unless "
            "AUTH_OPEN_TO_NETWORK says otherwise."
        ),
    )
    auth_open_to_network: bool = Field(
        False,
        description="Allow AUTH_MODE=none on a HOST other than a loopback address.",
    )
    auth_keys_refresh_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="How often each worker reads the key table: a revocation's delay.",
    )
    rate_limit_rate: float = Field(
        100.0,
        ge=RATE_RANGE[0],
        le=RATE_RANGE[1],
        allow_inf_nan=False,
        description="Requests a second per API key, unless the key says.",
    )
    rate_limit_burst: int = Field(
        200,
        ge=1,
        le=BURST_MAX,
        description="Requests at once per API key, unless the key says.",
    )
    redis_url: str | None = Field(
        None,
        description=(
            "A Redis server shared by every instance: rate limits hold across instances. "
            "Unset: across the workers of each instance."
        ),
    )

    @model_validator(mode="after")
    def _client_waits_for_the_server(self) -> Settings:
        if (
            self.db_client_timeout is not None
            and self.db_statement_timeout_ms
            and self.db_client_timeout * 1000 <= self.db_statement_timeout_ms
        ):
            raise ValueError(
                "DB_CLIENT_TIMEOUT must be longer than DB_STATEMENT_TIMEOUT_MS: a client that "
                "gives up first turns every slow statement into an unknown outcome"
            )
        return self

    @property
    def client_timeout_seconds(self) -> float:
        """How long the service waits for one answer of the database (DB_CLIENT_TIMEOUT)."""
        if self.db_client_timeout is not None:
            return self.db_client_timeout
        server_limit = self.db_statement_timeout_ms or DEFAULT_STATEMENT_TIMEOUT_MS
        return server_limit / 1000 + CLIENT_TIMEOUT_MARGIN_SECONDS

    @field_validator("db_host")
    @classmethod
    def _hosts_are_well_formed(cls, value: str) -> str:
        parse_hosts(value, 5432)  # raises ValueError naming what is wrong
        return value

    @field_validator("default_currency")
    @classmethod
    def _default_currency_has_two_digits(cls, value: str) -> str:
        exponent = currency_exponent(value)  # raises ValueError naming what is wrong
        if exponent != FRACTION_DIGITS:
            raise ValueError(
                f"{value} has {exponent} fractional digits; the default currency must have "
                f"{FRACTION_DIGITS}, as the specification's amounts do"
            )
        return value

    @property
    def implicit_currency(self) -> Currency:
        """DEFAULT_CURRENCY, which the specification's bodies leave unsaid."""
        return Currency(self.default_currency, FRACTION_DIGITS, implicit=True)

    @field_validator("redis_url")
    @classmethod
    def _redis_url_has_a_scheme_redis_knows(cls, value: str | None) -> str | None:
        # Checked here so that a typo stops the start in one line (the value, a secret,
        # unprinted), not each worker with a traceback when its client is made.
        if value is not None and not value.startswith(_REDIS_SCHEMES):
            raise ValueError(f"must start with {', '.join(_REDIS_SCHEMES)}")
        return value

    @property
    def db_hosts(self) -> list[tuple[str, int]]:
        """Every (host, port) DB_HOST names, in order; DB_PORT where a host names none."""
        return parse_hosts(self.db_host, self.db_port)

    @property
    def target_session_attrs(self) -> str | None:
        """DB_TARGET_SESSION_ATTRS, or read-write when DB_HOST names several hosts (the
        service writes: a standby of the list is of no use to it), else None (any)."""
        if self.db_target_session_attrs is not None:
            return self.db_target_session_attrs
        return "read-write" if len(self.db_hosts) > 1 else None

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def database_url(self) -> URL:
        """The SQLAlchemy URL of the service database (asyncpg driver)."""
        host, query = self.db_host, dict[str, str | list[str]]()
        attrs = self.target_session_attrs
        if attrs is not None:
            query["target_session_attrs"] = attrs
        if len(self.db_hosts) > 1:
            # SQLAlchemy's asyncpg dialect takes several hosts as repeated `host` parameters.
            query["host"] = [
                f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
                for name, port in self.db_hosts
            ]
            return URL.create(
                "postgresql+asyncpg",
                username=self.db_user,
                password=self.db_password.get_secret_value() or None,
                database=self.db_name,
                query=query,
            )
        if host.startswith("/"):
            # A Unix socket directory: asyncpg takes it as the host query parameter.
            host, query = "", {**query, "host": self.db_host}
        return URL.create(
            "postgresql+asyncpg",
            username=self.db_user,
            password=self.db_password.get_secret_value() or None,
            host=host or None,
            port=self.db_port,
            database=self.db_name,
            query=query,
        )


def parse_hosts(value: str, default_port: int) -> list[tuple[str, int]]:
    """`h1:p1,h2,/socket/dir` as [(h1, p1), (h2, default_port), ("/socket/dir", default_port)].

    A Unix socket directory takes DB_PORT (its socket file's number); an IPv6 address with a
    port is written in brackets (`[::1]:5433`)."""
    hosts = []
    for item in value.split(","):
        entry = item.strip()
        host, port = entry, default_port
        if not entry.startswith("/") and (
            entry.count(":") == 1 or (entry.startswith("[") and "]:" in entry)
        ):
            host, _, port_text = entry.rpartition(":")
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
            port = int(port_text)
        host = host.strip("[]") if host.startswith("[") else host
        if not host:
            raise ValueError(f"{value!r}: an empty host name")
        hosts.append((host, port))
    return hosts


def is_loopback(host: str) -> bool:
    """A loopback address (`localhost` in any case, 127.0.0.0/8, ::1, ::ffff:127.0.0.1);
    any other name may resolve to anything."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read once per process."""
    return Settings()


#: What redis-py's `from_url` accepts.
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

#: Settings whose values are never printed, not even when they are wrong.
_SECRET_SETTINGS = frozenset({"db_password", "redis_url"})


def _named(error: Any) -> str:
    """The variable a validation error is about, with its value unless it is a secret; a
    rule that spans several variables names none (its message does)."""
    location = ".".join(map(str, error["loc"]))
    if not location:
        return "settings"
    if location in _SECRET_SETTINGS:
        return location.upper()
    return f"{location.upper()}={error.get('input')!r}"


#: Set in the environment once the unknown names were reported, so that the processes a
#: command starts (Gunicorn under `wallet-api serve`) do not report them again: once a start.
UNKNOWN_REPORTED_VARIABLE = "WALLET_API_UNKNOWN_SETTINGS_REPORTED"
#: Names a `.env` may hold for another program: Compose reads WALLET_DB_HOST from it (the
#: container's DB_HOST, docker-compose.yml).
_OTHER_PROGRAMS_NAMES = frozenset({"WALLET_DB_HOST"})
#: How alike a name must be to a setting's to be suggested (difflib's ratio): one letter
#: more, less or swapped in any name of the service (WORKER_COUNT, LOGLEVEL, DB_PASWORD).
_SUGGESTION_CUTOFF = 0.75
#: The environment holds every program's variables: only a near miss of a longer name is
#: taken for a misspelt setting. Short names (HOST, PORT) resemble too many others (PGHOST,
#: PGPORT, HOSTNAME, PORT0) to tell a typo from a neighbour.
_ENVIRONMENT_CUTOFF = 0.85
_ENVIRONMENT_MIN_LENGTH = 7


def unknown_names(environment: Mapping[str, str], dotenv: Mapping[str, object]) -> list[str]:
    """A warning for each name of `dotenv` (the `.env` file) that is not a setting, and for
    each variable of `environment` that is not one but is a near miss of one: each names
    the variable and the setting it resembles, if any. Neither is read: a misspelt
    WORKERS_COUNT would otherwise leave the default in place without a word."""
    known = {name.upper() for name in Settings.model_fields}
    warnings, seen = [], set()
    for name in dotenv:
        upper = name.upper()
        if upper in known or upper in _OTHER_PROGRAMS_NAMES or upper in seen:
            continue
        seen.add(upper)
        close = difflib.get_close_matches(upper, known, n=1, cutoff=_SUGGESTION_CUTOFF)
        warnings.append(
            f".env sets {name}, which is not a setting of the service (ignored)"
            + (f"; did you mean {close[0]}?" if close else "")
        )
    longer = [name for name in known if len(name) >= _ENVIRONMENT_MIN_LENGTH]
    for name in sorted(environment):
        upper = name.upper()
        if upper in known or upper in seen or upper in _OTHER_PROGRAMS_NAMES:
            continue
        close = difflib.get_close_matches(upper, longer, n=1, cutoff=_ENVIRONMENT_CUTOFF)
        if close:
            seen.add(upper)
            warnings.append(
                f"the environment variable {name} is not a setting of the service (ignored); "
                f"did you mean {close[0]}?"
            )
    return warnings


def _report_unknown_names() -> None:
    """Write `unknown_names` to stderr, once per start (see UNKNOWN_REPORTED_VARIABLE)."""
    if os.environ.get(UNKNOWN_REPORTED_VARIABLE):
        return
    env_file = Path(str(Settings.model_config.get("env_file")))
    # Read as pydantic-settings reads it: with python-dotenv, a dependency of its own.
    dotenv = dotenv_values(env_file, encoding="utf-8") if env_file.is_file() else {}
    for warning in unknown_names(os.environ, dotenv):
        print(f"wallet-api: warning: {warning}", file=sys.stderr)
    os.environ[UNKNOWN_REPORTED_VARIABLE] = "1"


def load_settings_or_exit() -> Settings:
    """The settings, or exit at once naming each bad environment variable and why; each
    name the service does not know is named first (a warning: it is ignored)."""
    _report_unknown_names()
    try:
        return Settings()
    except ValidationError as exc:
        problems = "\n".join(f"  {_named(error)}: {error['msg']}" for error in exc.errors())
        print(f"wallet-api: invalid configuration:\n{problems}", file=sys.stderr)
        raise SystemExit(2) from None
