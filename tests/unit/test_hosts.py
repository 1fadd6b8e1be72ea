"""DB_HOST's list of hosts (libpq style) and which server of it the service may stay on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from wallet_api.core.config import Settings, parse_hosts


@pytest.mark.parametrize(
    ("value", "hosts"),
    [
        ("127.0.0.1", [("127.0.0.1", 5555)]),
        ("/run/postgresql", [("/run/postgresql", 5555)]),
        ("pg1:5433,pg2", [("pg1", 5433), ("pg2", 5555)]),
        ("pg1, pg2:6000", [("pg1", 5555), ("pg2", 6000)]),
        ("/a,/b", [("/a", 5555), ("/b", 5555)]),
        ("::1", [("::1", 5555)]),
        ("[::1]:5433", [("::1", 5433)]),
    ],
)
def test_hosts_are_read_in_order_with_db_port_where_none_is_named(
    value: str, hosts: list[tuple[str, int]]
) -> None:
    assert parse_hosts(value, 5555) == hosts


@pytest.mark.parametrize("value", ["pg1:x", "pg1:0", "pg1:65536", ",pg2", "pg1,", ":5432"])
def test_a_malformed_list_stops_the_service_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="db_host"):
        Settings(db_host=value)


def test_several_hosts_mean_the_read_write_one_and_one_host_means_any() -> None:
    assert Settings(db_host="pg1,pg2").target_session_attrs == "read-write"
    assert Settings(db_host="pg1").target_session_attrs is None
    assert Settings(db_host="pg1", db_target_session_attrs="primary").target_session_attrs == (
        "primary"
    )
    assert Settings(db_host="pg1,pg2", db_target_session_attrs="any").target_session_attrs == (
        "any"
    )


def test_migrations_get_every_host_and_the_same_choice() -> None:
    url = Settings(db_host="pg1:5433,pg2", db_port=5434).database_url
    assert url.query == {
        "host": ("pg1:5433", "pg2:5434"),
        "target_session_attrs": "read-write",
    }
    assert Settings(db_host="pg1", db_port=5434).database_url.render_as_string() == (
        "postgresql+asyncpg://postgres@pg1:5434/wallets"
    )
