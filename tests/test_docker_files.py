"""What docker-compose.yml and the Dockerfile promise, read from the files themselves.

No Docker daemon needed, so the suite always runs these; `make docker-test`
(tests/docker/run.py) checks the same compose settings as Compose resolves them, and the
images built and running. Compose's variable substitution (`${NAME:-default}` and the rest,
from the shell or `.env`) is done here as Compose documents it, so that a value is judged as
the container would get it, whatever `.env` holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.support import ROOT
from wallet_api.core.config import Settings

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

pytestmark = [
    pytest.mark.server_agnostic,
    pytest.mark.skipif(
        not (COMPOSE_FILE.is_file() and DOCKERFILE.is_file()),
        reason="no docker-compose.yml or Dockerfile here (the `tests` image has neither)",
    ),
]

#: A `.env` written for local runs (`make run` against some server): none of it is meant for
#: the containers' network.
#: Every interface: where a port is published when its address is left out.
EVERYWHERE = "0.0.0.0"  # noqa: S104  (an address read from the compose file, not bound here)

LOCAL_DOTENV = {"DB_HOST": "localhost", "DB_PORT": "5433", "HOST": "127.0.0.1"}

_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """`text` with Compose's substitutions made: `$$`, `$NAME`, `${NAME}`, `${NAME-x}`,
    `${NAME:-x}` (also when NAME is empty), `${NAME+x}`, `${NAME:+x}`, `${NAME?e}`,
    `${NAME:?e}`; a default may itself hold a substitution (Compose v2). An escaped dollar
    comes out as NUL, for `resolved` to restore once nothing is substituted any more."""
    text = text.replace("$$", "\x00")
    previous = None
    while previous != text:  # innermost `${...}` first: a default may nest another
        previous = text
        text = re.sub(r"\$\{[^${}]*\}", lambda match: _substitute(match[0], variables), text)
    return re.sub(r"\$[A-Za-z_][A-Za-z0-9_]*", lambda match: _substitute(match[0], variables), text)


def _substitute(token: str, variables: Mapping[str, str]) -> str:
    """One substitution; its result is not substituted again (a `$` in it is kept)."""
    if not token.startswith("${"):
        return variables.get(token[1:], "").replace("$", "\x00")
    parsed = _BRACED.fullmatch(token[2:-1])
    assert parsed, f"not a Compose substitution: {token}"
    name, op, arg = parsed["name"], parsed["op"], parsed["arg"]
    value = variables.get(name)
    unset_or_empty = not value if op and op.startswith(":") else value is None
    if op in ("-", ":-"):
        result = arg if unset_or_empty else str(value)
    elif op in ("+", ":+"):
        result = "" if unset_or_empty else arg
    else:
        assert not (op and unset_or_empty), f"Compose refuses to start: {name} {arg}"
        result = value or ""
    return result.replace("$", "\x00")


def resolved(value: object, variables: Mapping[str, str]) -> Any:
    """A compose value with every substitution made, as Compose hands it on."""
    if isinstance(value, str):
        return interpolate(value, variables).replace("\x00", "$")
    if isinstance(value, list):
        return [resolved(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: resolved(item, variables) for key, item in value.items()}
    return value


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def container_environment(
    service: Mapping[str, Any], variables: Mapping[str, str]
) -> dict[str, str]:
    """The environment a service's container gets from its `environment:` (a name without a
    value is passed on from the shell or `.env` when set there)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    environment: dict[str, str] = {}
    for name, value in raw.items():
        if value is None:
            if name in variables:
                environment[name] = variables[name]
        else:
            environment[name] = str(resolved(value, variables))
    return environment


def test_interpolation_as_compose_documents_it() -> None:
    """The helper the checks below judge by, on Compose's documented cases."""
    variables = {"SET": "value", "EMPTY": ""}
    cases = {
        "${SET:-x}": "value",
        "${EMPTY:-x}": "x",
        "${EMPTY-x}": "",
        "${UNSET-x}": "x",
        "${UNSET:-${SET}}": "value",
        "${UNSET:-${ALSO_UNSET:-deep}}": "deep",
        "${SET:+alt}": "alt",
        "${UNSET+alt}": "",
        "$SET/$$SET": "value/$SET",
        "${SET}": "value",
        "${UNSET}": "",
    }
    assert {text: resolved(text, variables) for text in cases} == cases


@pytest.mark.parametrize(
    ("variables", "wanted"),
    [
        ({}, "postgres"),
        (LOCAL_DOTENV, "postgres"),
        ({**LOCAL_DOTENV, "WALLET_DB_HOST": "pgbouncer"}, "pgbouncer"),
    ],
    ids=["nothing-set", "a-local-dotenv", "wallet-db-host"],
)
def test_the_service_db_host_is_wallet_db_hosts_so_a_dotenv_db_host_does_not_leak_in(
    variables: dict[str, str], wanted: str
) -> None:
    """docs/DOCKER.md, "Run": the compose file sets the service's DB_HOST from
    WALLET_DB_HOST (default `postgres`), so that a DB_HOST in `.env` meant for local runs
    does not reach the container; the same for the other values that must differ inside the
    compose network (port, listen address)."""
    services = compose()["services"]
    assert "env_file" not in services["fastapi"], "an env_file would pass `.env` on whole"
    environment = container_environment(services["fastapi"], variables)
    assert environment["DB_HOST"] == wanted
    assert (environment["DB_PORT"], environment["HOST"], environment["PORT"]) == (
        "5432",
        EVERYWHERE,
        "8000",
    )


def published_ports(service: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each port a service publishes, in
    either of Compose's syntaxes; an address left out is every interface (`0.0.0.0`)."""
    published = []
    for port in resolved(service.get("ports") or [], {}):
        if isinstance(port, dict):
            published.append(
                (
                    str(port.get("host_ip", EVERYWHERE)),
                    str(port.get("published", "")),
                    str(port["target"]),
                )
            )
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        address = parts[0].strip("[]") if len(parts) == 3 else EVERYWHERE
        host_port = parts[-2] if len(parts) >= 2 else ""
        published.append((address, host_port, parts[-1]))
    return published


def test_the_port_is_published_on_the_hosts_loopback_only() -> None:
    """docs/DOCKER.md, "Who may call": the service listens on its container's network
    address without authentication (AUTH_OPEN_TO_NETWORK=true), so its port is published on
    the host's loopback only, at 8000; no service publishes a port elsewhere, nor shares the
    host's network."""
    services = compose()["services"]
    assert published_ports(services["fastapi"]) == [("127.0.0.1", "8000", "8000")]
    for name, service in services.items():
        assert service.get("network_mode") != "host", name
        elsewhere = [port for port in published_ports(service) if port[0] != "127.0.0.1"]
        assert not elsewhere, f"{name} publishes {elsewhere} beyond the host's loopback"


def seconds(duration: object) -> float:
    """A Compose duration (`40s`, `1m30s`, `1h`, `500ms`, `1.5s`) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(duration))
    assert parts, duration
    assert "".join(a + b for a, b in parts) == str(duration), duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_stop_grace_period_is_40_seconds_longer_than_graceful_timeout() -> None:
    """docs/DOCKER.md, "The image": `docker compose stop` waits 40 s before SIGKILL, longer
    than Gunicorn's drain (GRACEFUL_TIMEOUT, 30 s by default), so in-flight requests and
    queued batches finish; Compose's own default, 10 s, would cut the drain short."""
    assert [seconds(value) for value in ("1m30s", "500ms", "1.5s", "2h")] == [
        90,
        0.5,
        1.5,
        7200,
    ]
    fastapi = compose()["services"]["fastapi"]
    assert "stop_grace_period" in fastapi, "Compose's default is 10 s"
    grace = seconds(fastapi["stop_grace_period"])
    graceful_timeout = Settings.model_fields["graceful_timeout"].default
    assert graceful_timeout == 30
    assert grace == 40
    assert grace > graceful_timeout
    assert fastapi.get("stop_signal", "SIGTERM") == "SIGTERM", "Gunicorn drains on SIGTERM"


# --- the Dockerfile's layers ---------------------------------------------------------------

_DEPENDENCY_FILES = frozenset({"pyproject.toml", "requirements.lock"})


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions (keyword, arguments), continuation lines joined, with
    `FROM <stage>` first when it builds on another stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arguments.split()
            current = [("FROM", words[0])]
            found[words[2] if len(words) == 3 and words[1].upper() == "AS" else ""] = current
        else:
            current.append((keyword, arguments.strip()))
    return found


def copied_sources(arguments: str) -> list[str]:
    words = [word for word in arguments.split() if not word.startswith("--")]
    return [source.rstrip("/") for source in words[:-1]]


def chain_of_stages(target: str) -> list[tuple[str, str]]:
    """The instructions of `target`'s chain of stages, base first."""
    all_stages = stages()
    instructions: list[tuple[str, str]] = []
    stage = target
    while stage in all_stages:
        instructions = all_stages[stage][1:] + instructions
        stage = all_stages[stage][0][1]
    return instructions


@pytest.mark.parametrize("target", ["runtime", "tests"])
def test_a_code_change_reinstalls_no_dependency(target: str) -> None:
    """docs/DOCKER.md, "The image": the dependency layers come before the source. In the
    chain of stages that builds `target` (for `runtime`, the `builder` stage its venv comes
    from), every `pip install` that installs dependencies sees no file but pyproject.toml
    and requirements.lock, so only a change to those can rebuild it; the source is
    installed afterwards (`make docker-test` checks the layers cached after a code change)."""
    all_stages = stages()
    if target == "runtime":
        venv_from = [
            arguments
            for keyword, arguments in all_stages["runtime"]
            if keyword == "COPY" and "/opt/venv" in arguments
        ]
        assert venv_from == ["--from=builder /opt/venv /opt/venv"], venv_from
        target = "builder"
    seen: set[str] = set()
    dependency_installs = 0
    source_installed = False
    for keyword, arguments in chain_of_stages(target):
        if keyword in ("COPY", "ADD") and "--from=" not in arguments:
            seen.update(copied_sources(arguments))
        if keyword == "RUN" and "pip install" in arguments:
            if "--requirement" in arguments:
                beyond = sorted(seen - _DEPENDENCY_FILES)
                assert not beyond, f"a dependency install sees {beyond}: {arguments[-120:]}"
                assert not source_installed
                dependency_installs += 1
            elif re.search(r"pip install [^&]*\.$", arguments):
                assert "src" in seen
                source_installed = True
    wanted = 1 if target == "builder" else 2  # the tests image adds the `dev` extra
    assert dependency_installs == wanted
    assert source_installed


def test_every_setting_of_the_service_is_passed_on_to_its_container() -> None:
    """DOCKER §Run: the compose file passes every setting on (a `.env` value reaches the
    service), so a setting added to the code is one the container can be given. Checked
    here without Docker (make docker-test checks it too, as Compose resolves the file)."""
    services = compose()["services"]
    # The webhook sender's settings go to `deliver` (the sender), every other to `fastapi`.
    for service, wanted in (
        ("fastapi", [n for n in Settings.model_fields if not n.startswith("webhook_")]),
        ("deliver", [n for n in Settings.model_fields if n.startswith("webhook_")]),
    ):
        named = set(services[service]["environment"])
        assert sorted(n.upper() for n in wanted if n.upper() not in named) == [], service
