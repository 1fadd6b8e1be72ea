"""The one settings object, read once from the environment and `.env`."""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import URL

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class Settings(BaseSettings):
    """Every knob of the service. Names are the specification's environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Database (the specification's names).
    db_host: str = Field(
        "127.0.0.1", min_length=1, description="Host name, IP, or a Unix socket directory."
    )
    db_port: int = Field(5432, ge=1, le=65535)
    db_name: str = Field("wallets", min_length=1)
    db_user: str = Field("postgres", min_length=1)
    db_password: SecretStr = SecretStr("")

    # The asyncpg connection pool, per worker process (see README).
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
        10_000,
        ge=0,
        description="PostgreSQL statement_timeout for the service's sessions; 0 is none.",
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

    # Per-wallet write coalescing (see docs/PERFORMANCE.md).
    coalescing_enabled: bool = True
    coalescing_max_batch: int = Field(256, ge=1, le=10_000)
    coalescing_queue_limit: int = Field(2048, ge=1, le=1_000_000)
    operation_deadline: float = Field(
        5.0, gt=0, le=600, description="Seconds an operation may wait in its wallet's queue."
    )

    # Idempotency-Key retention (see README).
    idempotency_key_ttl: int = Field(
        86_400, ge=1, description="Seconds a key is kept at least (then purged)."
    )
    idempotency_purge_interval: float = Field(300.0, gt=0, description="Seconds between purges.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def database_url(self) -> URL:
        """The SQLAlchemy URL of the service database (asyncpg driver)."""
        host, query = self.db_host, {}
        if host.startswith("/"):
            # A Unix socket directory: asyncpg takes it as the host query parameter.
            host, query = "", {"host": self.db_host}
        return URL.create(
            "postgresql+asyncpg",
            username=self.db_user,
            password=self.db_password.get_secret_value() or None,
            host=host or None,
            port=self.db_port,
            database=self.db_name,
            query=query,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read once per process."""
    return Settings()


def load_settings_or_exit() -> Settings:
    """The settings, or exit at once naming each bad environment variable and why."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(map(str, error['loc'])).upper()}={error.get('input')!r}: {error['msg']}"
            for error in exc.errors()
        )
        sys.exit(f"wallet-api: invalid configuration:\n{problems}")
