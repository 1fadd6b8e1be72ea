"""The Docker route, built and run for real (`make docker-test`): build the images, run the
service against PostgreSQL in containers, and check what the specification's route promises.

    python -m tests.docker.run [--base auto|official|local] [--pytest-args "..."]
                               [--service-env NAME=VALUE ...] [--service-user USER]

Steps, each of which fails the run (exit 1) with what it saw:
  compose   docker-compose.yml is valid for the Compose installed (v1.29 and/or v2), has no
            v1-only syntax, names every setting of the service, and passes `.env` values on;
            as Compose resolves it, the service's DB_HOST is WALLET_DB_HOST's (a `.env`
            DB_HOST does not reach it), its port is published on 127.0.0.1 only, and its
            stop_grace_period is longer than GRACEFUL_TIMEOUT
  build     the service image (target `runtime`), the `tests` image, and a PostgreSQL image
            made from the base's Debian packages (the official `postgres` image may not pull)
  cached    the service's venv (stage `builder`) rebuilt from a copy of its context with a
            source file changed: the dependency install comes from the build cache, the source
            is installed anew
  image     runs as a non-root user, declares a health check, and keeps nothing of the machine
            that built it (no CA bundle or pip configuration added, no host paths)
  revision  `alembic revision` in the service image (no ruff there) succeeds, its hook says
            the file is left unformatted, and the file is what Alembic's template writes
  start     the service container on a private network with PostgreSQL, its port published on
            127.0.0.1 at a port Docker chooses, until Docker reports it `healthy`
  migrated  the container brought the schema to Alembic's head before serving
  non-root  every process in the container runs as a user other than root
  contract  create, deposit, withdraw, insufficient funds, balance, history, a replayed
            Idempotency-Key, through the published port
  stop      `docker stop` while requests wait in the service: all answered, exit status 0
  tests     the `tests` image runs the suite (a fast subset by default) against the database
            it is given, as the compose `tests` service does

--base: `official` builds FROM python:3.13-slim (Docker Hub); `local` from a Debian base made
by docker/local-base.sh (needs root and debootstrap); `auto` (default) takes the official one
when it is present or pulls, else the local one. A CA bundle for pip during the build is
passed as the build secret `pip_ca` (DOCKER_BUILD_CA, else PIP_CERT, else SSL_CERT_FILE, else
/etc/ssl/certs/ca-certificates.crt when present; DOCKER_BUILD_CA=none passes none).
--service-env and --service-user change the service container; they exist to show that the
checks fail when what they guard is broken (for example SKIP_MIGRATIONS=1, GRACEFUL_TIMEOUT=1
or --service-user 0).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_BASE = "python:3.13-slim"
LABEL = "wallet-api.docker-test=1"
SERVICE_IMAGE = "wallet-api:docker-test"
TESTS_IMAGE = "wallet-api-tests:docker-test"
POSTGRES_IMAGE = "wallet-api-postgres:docker-test"
DEFAULT_PYTEST_ARGS = "tests/test_wallet_contract.py tests/test_migrations.py"
#: Files in the image that would carry the building machine's trust or pip settings.
SUSPECT_FILES = r"\( -name '*.crt' -o -name '*.pem' -o -name 'pip.conf' -o -name 'pip.ini' \)"
#: The service's database in the PostgreSQL container.
DATABASE = "wallets"
#: Concurrent requests in flight during `docker stop`.
IN_FLIGHT = 6
#: Seconds the row lock is held after Gunicorn took SIGTERM (GRACEFUL_TIMEOUT is 30).
HELD_AFTER_SIGTERM = 3


class CheckFailed(Exception):
    """A promise of the Docker route does not hold; the message says what was seen."""


def say(message: str) -> None:
    print(f"docker-test: {message}", flush=True)


class Docker:
    """The docker client, one that builds with BuildKit (cache and secret mounts)."""

    def __init__(self) -> None:
        self.command, self.environment = self._find()

    @staticmethod
    def _find() -> tuple[str, dict[str, str]]:
        wanted = os.environ.get("DOCKER")
        candidates = [wanted] if wanted else ["docker", "/usr/bin/docker"]
        for candidate in candidates:
            path = shutil.which(candidate)
            if path is None:
                continue
            if _quiet([path, "buildx", "version"]).returncode == 0:
                return path, {}
            version = _quiet([path, "version", "--format", "{{.Client.Version}}"]).stdout
            major = version.strip().split(".")[0]
            # Clients before 23 build with BuildKit themselves; later ones need buildx.
            if major.isdigit() and int(major) < 23:
                return path, {"DOCKER_BUILDKIT": "1"}
        raise CheckFailed(
            f"no docker client that builds with BuildKit among {candidates} "
            "(a client >= 23 needs the buildx plugin; Debian's docker.io has one built in)"
        )

    def run(
        self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.command, *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=timeout,
            env={**os.environ, **self.environment},
            check=False,
        )
        if check and result.returncode != 0:
            raise CheckFailed(
                f"`docker {shlex.join(args)}` failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        return result

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.command, *args], text=True, env={**os.environ, **self.environment}, **kwargs
        )

    def inspect(self, kind: str, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.run(kind, "inspect", name).stdout)
        return found[0]


def _quiet(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return subprocess.CompletedProcess(command, 127, "", str(error))


# ---------------------------------------------------------------------------------------------
# compose


def compose_commands() -> list[list[str]]:
    found = []
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    if shutil.which("docker") and _quiet(["docker", "compose", "version"]).returncode == 0:
        found.append(["docker", "compose"])
    return found


def check_compose() -> None:
    """Valid for every Compose installed, no v1-only syntax, every setting passed on."""
    source_file = ROOT / "docker-compose.yml"
    source = yaml.safe_load(source_file.read_text())
    if "version" in source:
        raise CheckFailed("docker-compose.yml has a `version:` key (Compose v1 only; v2 warns)")
    from wallet_api.core.config import Settings

    # The webhook sender's settings go to `deliver`, every other one to `fastapi`.
    for service, wanted in (
        ("fastapi", [n for n in Settings.model_fields if not n.startswith("webhook_")]),
        ("deliver", [n for n in Settings.model_fields if n.startswith("webhook_")]),
    ):
        named = set(source["services"][service]["environment"])
        missing = sorted(name.upper() for name in wanted if name.upper() not in named)
        if missing:
            raise CheckFailed(f"{service} in docker-compose.yml does not pass on {missing}")
    commands = compose_commands()
    if not commands:
        raise CheckFailed("no Compose installed (docker-compose, or the docker compose plugin)")
    profiles = ["--profile", "test", "--profile", "pgbouncer"]
    with tempfile.TemporaryDirectory() as scratch:
        empty = Path(scratch) / "empty.env"
        empty.write_text("")
        dotenv = Path(scratch) / "some.env"
        # A `.env` written for local runs: its DB_HOST and HOST are not the containers'.
        dotenv.write_text(
            "WORKERS_COUNT=3   # a comment\nDB_NAME=from_dotenv\nDB_HOST=localhost\n"
            "HOST=127.0.0.1\n"
        )
        pgbouncer = Path(scratch) / "pgbouncer.env"
        pgbouncer.write_text("DB_HOST=localhost\nWALLET_DB_HOST=pgbouncer\n")
        for command in commands:
            base = [*command, "--project-directory", str(ROOT), "-f", str(source_file)]
            resolved_by_env_file = {}
            for env_file in (empty, pgbouncer, dotenv):
                result = subprocess.run(
                    [*base, "--env-file", str(env_file), *profiles, "config"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                if result.returncode != 0:
                    raise CheckFailed(f"`{' '.join(command)} config`: {result.stderr.strip()}")
                resolved_by_env_file[env_file.stem] = yaml.safe_load(result.stdout)["services"]
            check_resolved_service(" ".join(command), resolved_by_env_file)
            resolved = resolved_by_env_file[dotenv.stem]
            fastapi, postgres = resolved["fastapi"]["environment"], resolved["postgres"]
            seen = (fastapi.get("WORKERS_COUNT"), fastapi.get("DB_NAME"))
            if seen != ("3", "from_dotenv") or postgres["environment"]["POSTGRES_DB"] != (
                "from_dotenv"
            ):
                raise CheckFailed(f"`{' '.join(command)} config` did not pass .env on: {seen}")
            version = _quiet([*command, "version", "--short"]).stdout.strip()
            say(
                f"compose: `{' '.join(command)}` {version} validates every profile; the "
                "service's DB_HOST is WALLET_DB_HOST's, its port on 127.0.0.1 only, "
                f"stop_grace_period {resolved['fastapi'].get('stop_grace_period')}"
            )


def check_resolved_service(compose: str, resolved: dict[str, dict[str, Any]]) -> None:
    """The compose service as Compose resolves it, for each env file (`empty`, `some`: a local
    `.env` with DB_HOST and HOST, `pgbouncer`: WALLET_DB_HOST=pgbouncer)."""
    from tests.test_docker_files import EVERYWHERE, published_ports, seconds
    from wallet_api.core.config import Settings

    hosts = {
        name: services["fastapi"]["environment"]["DB_HOST"] for name, services in resolved.items()
    }
    expect(
        f"`{compose} config`: the service's DB_HOST for each env file",
        hosts,
        {"empty": "postgres", "some": "postgres", "pgbouncer": "pgbouncer"},
    )
    services = resolved["some"]
    expect(
        f"`{compose} config`: the service's HOST",
        services["fastapi"]["environment"]["HOST"],
        EVERYWHERE,
    )
    published = {name: published_ports(service) for name, service in services.items()}
    expect(
        f"`{compose} config`: the ports published",
        {name: ports for name, ports in published.items() if ports},
        {"fastapi": [("127.0.0.1", "8000", "8000")]},
    )
    grace = seconds(services["fastapi"].get("stop_grace_period", "10s"))  # Compose's default
    graceful_timeout = Settings.model_fields["graceful_timeout"].default
    if not grace > graceful_timeout:
        raise CheckFailed(
            f"`{compose} config`: stop_grace_period {grace:g} s is not longer than "
            f"GRACEFUL_TIMEOUT ({graceful_timeout} s)"
        )


# ---------------------------------------------------------------------------------------------
# build


def choose_base(docker: Docker, wanted: str) -> str:
    if wanted in ("auto", "official"):
        present = docker.run("image", "inspect", OFFICIAL_BASE, check=False).returncode == 0
        if present or docker.run("pull", OFFICIAL_BASE, check=False, timeout=600).returncode == 0:
            return OFFICIAL_BASE
        if wanted == "official":
            raise CheckFailed(f"{OFFICIAL_BASE} is not here and does not pull")
        say(f"{OFFICIAL_BASE} does not pull here: building on a base made from Debian's packages")
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise CheckFailed("a local base needs root and debootstrap (apt-get install debootstrap)")
    started = time.monotonic()
    result = subprocess.run(
        [str(ROOT / "docker" / "local-base.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **docker.environment, "DOCKER": docker.command},
        check=False,
    )
    if result.returncode != 0:
        raise CheckFailed(f"docker/local-base.sh failed: {result.stderr.strip()[-2000:]}")
    name = result.stdout.strip().splitlines()[-1]
    say(f"base: {name} ({time.monotonic() - started:.1f} s)")
    return name


def build_ca() -> Path | None:
    for candidate in (
        os.environ.get("DOCKER_BUILD_CA"),
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate == "none":
            return None
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def build(docker: Docker, base: str, ca: Path | None) -> None:
    secret = ["--secret", f"id=pip_ca,src={ca}"] if ca else []
    builds = [
        (SERVICE_IMAGE, ["--target", "runtime", "--build-arg", f"PYTHON_IMAGE={base}", *secret]),
        (TESTS_IMAGE, ["--target", "tests", "--build-arg", f"PYTHON_IMAGE={base}", *secret]),
    ]
    for tag, arguments in builds:
        started = time.monotonic()
        docker.run("build", "--label", LABEL, "-t", tag, *arguments, str(ROOT), timeout=1800)
        say(f"build: {tag} ({time.monotonic() - started:.1f} s)")
    started = time.monotonic()
    docker.run(
        "build",
        "--label",
        LABEL,
        "-t",
        POSTGRES_IMAGE,
        "-f",
        str(ROOT / "docker" / "postgres-debian.Dockerfile"),
        "--build-arg",
        f"BASE_IMAGE={base}",
        str(ROOT / "docker"),
        timeout=1800,
    )
    say(f"build: {POSTGRES_IMAGE} ({time.monotonic() - started:.1f} s)")
    # Superseded builds of these images, untagged by the new ones.
    docker.run("image", "prune", "--force", "--filter", f"label={LABEL}", check=False)


def check_code_change_cached(docker: Docker, base: str, ca: Path | None) -> None:
    """A code change reinstalls no dependency: the service image's `builder` stage (its venv)
    rebuilt from a copy of the build context (what the Dockerfile copies) with one source file
    changed, a change never built before, takes the dependency install from the build cache
    and installs the source anew."""
    from tests.test_docker_files import copied_sources, stages

    sources = {
        source
        for instructions in stages().values()
        for keyword, arguments in instructions
        if keyword in ("COPY", "ADD") and "--from=" not in arguments
        for source in copied_sources(arguments)
    }
    secret = ["--secret", f"id=pip_ca,src={ca}"] if ca else []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        context = Path(scratch)
        for name in sorted(sources | {"Dockerfile", ".dockerignore"}):
            original = ROOT / name
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            if original.is_dir():
                ignored = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.egg-info")
                shutil.copytree(original, context / name, ignore=ignored)
            else:
                shutil.copy2(original, context / name)
        changed = context / "src" / "wallet_api" / "__init__.py"
        change = f"\n# docker-test: a code change, {uuid.uuid4().hex}\n"
        changed.write_text(changed.read_text() + change)
        result = docker.run(
            "build", "--progress", "plain", "--label", LABEL, "--target", "builder",
            "--build-arg", f"PYTHON_IMAGE={base}", *secret, str(context), timeout=1800,
        )  # fmt: skip
    steps: dict[str, str] = {}
    cached: set[str] = set()
    for line in (result.stderr + result.stdout).splitlines():
        if found := re.match(r"#(\d+) (\[.*)", line):
            steps.setdefault(found[1], found[2])
        elif found := re.match(r"#(\d+) CACHED$", line):
            cached.add(found[1])

    def step(stage: str, text: str) -> str:
        matching = [
            number
            for number, name in steps.items()
            if name.startswith(f"[{stage} ") and text in name
        ]
        if len(matching) != 1:
            raise CheckFailed(f"no single build step of {stage} with {text!r} in {steps}")
        return matching[0]

    dependencies = step("dependencies", "--requirement")
    source_copy = step("builder", "COPY src/")
    if dependencies not in cached or source_copy in cached:
        raise CheckFailed(
            "after a code change, the dependency install was "
            f"{'cached' if dependencies in cached else 'run again'} and the source copy "
            f"{'cached' if source_copy in cached else 'run again'}:\n{result.stderr[-3000:]}"
        )
    docker.run("image", "prune", "--force", "--filter", f"label={LABEL}", check=False)
    say(
        f"cached: after a code change the service's venv rebuilt in "
        f"{time.monotonic() - started:.1f} s, the dependency install from the build cache"
    )


# ---------------------------------------------------------------------------------------------
# image


def suspect_files(docker: Docker, image: str) -> dict[str, str]:
    """Path -> sha256 of every CA bundle, certificate or pip configuration in the image."""
    listing = docker.run(
        "run", "--rm", "--user", "0", "--entrypoint", "sh", image, "-c",
        f"find / -xdev -type f {SUSPECT_FILES} -exec sha256sum {{}} + 2>/dev/null; true",
    ).stdout  # fmt: skip
    return {
        path: digest for digest, path in (line.split(maxsplit=1) for line in listing.splitlines())
    }


def check_image(docker: Docker, base: str, ca: Path | None) -> None:
    config = docker.inspect("image", SERVICE_IMAGE)["Config"]
    user = (config.get("User") or "0").split(":")[0]
    if user in ("", "0", "root"):
        raise CheckFailed(f"the image's user is {config.get('User')!r}: root")
    if not (config.get("Healthcheck") or {}).get("Test"):
        raise CheckFailed("the image declares no HEALTHCHECK")
    history = docker.run("history", "--no-trunc", "--format", "{{.CreatedBy}}", SERVICE_IMAGE)
    text = json.dumps(config) + history.stdout
    machine = [str(ROOT), "pip_ca", "PIP_CERT", "/opt/wheels", "/etc/xdg/pip"]
    leaked = [needle for needle in machine if needle in text]
    if leaked:
        raise CheckFailed(f"the image's configuration or history names {leaked}")
    before, after = suspect_files(docker, base), suspect_files(docker, SERVICE_IMAGE)
    added = {path: digest for path, digest in after.items() if before.get(path) != digest}
    host = hashlib.sha256(ca.read_bytes()).hexdigest() if ca else None
    carried = sorted(
        path
        for path, digest in added.items()
        if digest == host or Path(path).name in ("pip.conf", "pip.ini")
        or path.startswith("/run/secrets")
    )  # fmt: skip
    if carried:
        raise CheckFailed(
            f"the image keeps the building machine's CA bundle or pip config: {carried}"
        )
    say(
        f"image: user {config['User']}, health check declared, {len(added)} certificate file(s) "
        "added to the base and none is this machine's CA bundle or pip configuration"
    )


#: The revision `alembic revision` writes in the image (and here, to compare).
REVISION = ("docker test revision", "dockertest0001")


def check_revision(docker: Docker, image: str = SERVICE_IMAGE) -> None:
    """A revision generated in the runtime image, which has no ruff: `alembic revision`
    succeeds, the post-write hook says that the file is left unformatted, and the file is
    what Alembic's template writes (compared with one written here without the hook)."""
    message, revision = REVISION
    marker = "--- the revision file ---"
    script = (
        f"alembic revision -m '{message}' --rev-id {revision} && echo '{marker}' "
        f"&& cat migrations/versions/*{revision}_*.py"
    )
    result = docker.run("run", "--rm", "--entrypoint", "sh", image, "-c", script)
    log, _, written = result.stdout.partition(f"{marker}\n")
    said = re.search(r"ruff is not installed here: run `make format` on (\S+) before", log)
    if said is None or not said[1].endswith(f"{revision}_docker_test_revision.py"):
        raise CheckFailed(f"the hook did not say the revision is left unformatted: {log}")
    plain = revision_without_hook(message, revision)

    def undated(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("Create Date:")]

    if undated(written) != undated(plain):
        raise CheckFailed(
            f"the revision written in the image is not Alembic's template:\n{written}\n"
            f"--- Alembic's, without the hook ---\n{plain}"
        )
    say(f"revision: written in {image} as Alembic's template has it, and the hook says so")


def revision_without_hook(message: str, revision: str) -> str:
    """The revision file Alembic writes from this repository's migrations, no hook run."""
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(
            ROOT / "migrations",
            Path(scratch) / "migrations",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        ini, hooks = re.subn(r"(?m)^hooks = .*$", "hooks =", (ROOT / "alembic.ini").read_text())
        if hooks != 1:
            raise CheckFailed("alembic.ini names no post-write hook")
        (Path(scratch) / "alembic.ini").write_text(ini)
        result = subprocess.run(
            [sys.executable, "-m", "alembic", "revision", "-m", message, "--rev-id", revision],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise CheckFailed(f"alembic revision here: {result.stderr.strip()[-2000:]}")
        (written,) = (Path(scratch) / "migrations" / "versions").glob(f"*{revision}_*.py")
        return written.read_text()


# ---------------------------------------------------------------------------------------------
# the running service


class Service:
    """A PostgreSQL container and the service container, on a network of their own."""

    def __init__(self, docker: Docker, environment: list[str], user: str | None) -> None:
        self.docker = docker
        suffix = uuid.uuid4().hex[:8]
        self.network = f"wallet-docker-test-{suffix}"
        self.postgres = f"wallet-docker-test-postgres-{suffix}"
        self.api = f"wallet-docker-test-api-{suffix}"
        self.extra_environment = environment
        self.user = user
        self.port = 0

    def start_database(self) -> None:
        self.docker.run("network", "create", self.network)
        self.docker.run(
            "run", "--detach", "--name", self.postgres, "--network", self.network,
            "--shm-size", "256m",
            "--volume", f"{ROOT / 'docker' / 'postgresql.conf'}:/etc/postgresql/postgresql.conf:ro",
            POSTGRES_IMAGE,
        )  # fmt: skip
        self.wait_healthy(self.postgres, timeout=60)
        self.psql("postgres", f"CREATE DATABASE {DATABASE}")

    def start(self) -> float:
        # Requests of the `stop` step wait on a row lock on purpose: longer limits than default.
        environment = {
            "DB_HOST": self.postgres,
            "DB_USER": "postgres",
            "DB_NAME": DATABASE,
            "AUTH_OPEN_TO_NETWORK": "true",
            "DB_LOCK_TIMEOUT_MS": "30000",
            "DB_STATEMENT_TIMEOUT_MS": "30000",
            "OPERATION_DEADLINE": "30",
        }
        for item in self.extra_environment:
            name, _, value = item.partition("=")
            environment[name] = value
        options = [
            option for name, value in environment.items() for option in ("-e", f"{name}={value}")
        ]
        if self.user is not None:
            options += ["--user", self.user]
        started = time.monotonic()
        self.docker.run(
            "run", "--detach", "--name", self.api, "--network", self.network,
            "--publish", "127.0.0.1::8000", *options, SERVICE_IMAGE,
        )  # fmt: skip
        self.wait_healthy(self.api, timeout=120)
        published = self.docker.run("port", self.api, "8000/tcp").stdout.split()[0]
        self.port = int(published.rsplit(":", 1)[1])
        return time.monotonic() - started

    def wait_healthy(self, container: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        status = "?"
        while time.monotonic() < deadline:
            state = self.docker.inspect("container", container)["State"]
            if not state["Running"]:
                raise CheckFailed(
                    f"{container} exited ({state['ExitCode']}) before it was healthy:\n"
                    + self.logs(container)[-3000:]
                )
            status = (state.get("Health") or {}).get("Status", "none")
            if status == "healthy":
                return
            if status == "unhealthy":
                log = state["Health"]["Log"][-1]["Output"].strip()
                raise CheckFailed(f"Docker reports {container} unhealthy: {log[-1000:]}")
            time.sleep(0.5)
        raise CheckFailed(f"{container} not healthy after {timeout:.0f} s ({status})")

    def logs(self, container: str) -> str:
        result = self.docker.run("logs", container, check=False)
        return result.stdout + result.stderr

    def psql(self, database: str, sql: str) -> str:
        return self.docker.run(
            "exec", self.postgres, "psql", "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-Atc", sql,
        ).stdout.strip()  # fmt: skip

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, http.client.HTTPMessage, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body)
            sent = {"Content-Type": "application/json"} if payload else {}
            connection.request(method, path, body=payload, headers={**sent, **(headers or {})})
            response = connection.getresponse()
            raw = response.read()
            parsed = json.loads(raw, parse_float=Decimal) if raw else None
            return response.status, response.headers, parsed
        finally:
            connection.close()

    def remove(self) -> None:
        for container in (self.api, self.postgres):
            self.docker.run("rm", "--force", "--volumes", container, check=False)
        self.docker.run("network", "rm", self.network, check=False)


def expect(what: str, seen: object, wanted: object) -> None:
    if seen != wanted:
        raise CheckFailed(f"{what}: expected {wanted!r}, got {seen!r}")


def check_migrated(service: Service) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()
    tables = service.psql(DATABASE, "SELECT to_regclass('alembic_version') IS NOT NULL")
    if tables != "t":
        raise CheckFailed("no alembic_version table: the container did not migrate at start")
    expect(
        "the database's Alembic revision",
        service.psql(DATABASE, "SELECT version_num FROM alembic_version"),
        head,
    )
    # Both streams, in the order Docker received their lines (timestamps sort as text).
    streams = service.docker.run("logs", "--timestamps", service.api)
    log = "\n".join(sorted((streams.stdout + streams.stderr).splitlines()))
    upgraded, listening = log.rfind("Running upgrade"), log.find("Listening at:")
    if not 0 <= upgraded < listening:
        raise CheckFailed(
            "the container's log does not show Alembic's upgrade before Gunicorn listens"
        )
    say(f"migrated: the container brought the schema to head ({head}) before serving")


def check_non_root(service: Service) -> None:
    rows = service.docker.run("top", service.api, "-eo", "pid,uid,args").stdout.splitlines()[1:]
    processes = [row.split(maxsplit=2)[1:] for row in rows if row.strip()]
    root = [args for uid, args in processes if uid in ("0", "root")]
    if root:
        raise CheckFailed(f"processes run as root in the container: {root}")
    if len(processes) < 2:
        raise CheckFailed(f"expected Gunicorn and its workers, saw {processes}")
    uids = sorted({uid for uid, _ in processes})
    say(f"non-root: {len(processes)} processes, uid {', '.join(uids)}")


def check_contract(service: Service) -> str:
    status, headers, body = service.request("POST", "/api/v1/wallets/create_wallet")
    expect("create_wallet status", status, 201)
    wallet = str(uuid.UUID(body["wallet_uuid"]))
    path = f"/api/v1/wallets/{wallet}"
    expect("a new wallet's balance", service.request("GET", path)[::2], (200, {"balance": 0}))

    def operate(operation: str, amount: object, key: str | None = None) -> tuple[int, Any, Any]:
        status, headers, body = service.request(
            "POST",
            f"{path}/operation",
            {"operation": operation, "amount": amount},
            {"Idempotency-Key": key} if key else None,
        )
        return status, headers, body

    status, _, body = operate("DEPOSIT", 100.5)
    expect("deposit", (status, body), (200, {"status": "success", "balance": Decimal("100.5")}))
    status, _, body = operate("WITHDRAW", "30.00")
    expect("withdraw", (status, body), (200, {"status": "success", "balance": Decimal("70.5")}))
    status, headers, body = operate("WITHDRAW", 1000)
    expect("insufficient funds status", status, 400)
    expect("insufficient funds code", body.get("code"), "insufficient_funds")
    expect("problem content type", headers.get_content_type(), "application/problem+json")
    expect(
        "balance after a refusal",
        service.request("GET", path)[::2],
        (200, {"balance": Decimal("70.5")}),
    )

    key = f"docker-test-{uuid.uuid4().hex}"
    first = operate("DEPOSIT", 10, key)
    expect(
        "deposit with a key", first[::2], (200, {"status": "success", "balance": Decimal("80.5")})
    )
    replay = operate("DEPOSIT", "10.00", key)
    expect("the replay's answer", replay[::2], first[::2])
    expect("the replay's header", replay[1].get("Idempotent-Replayed"), "true")
    expect(
        "balance after the replay",
        service.request("GET", path)[::2],
        (200, {"balance": Decimal("80.5")}),
    )

    status, _, history = service.request("GET", f"{path}/operations")
    expect("history status", status, 200)
    seen = [(item["operation"], item["amount"], item["balance_after"]) for item in history["items"]]
    wanted = [
        ("DEPOSIT", Decimal(10), Decimal("80.5")),
        ("WITHDRAW", Decimal(30), Decimal("70.5")),
        ("DEPOSIT", Decimal("100.5"), Decimal("100.5")),
    ]
    expect("history (newest first, the refusal and the replay not listed)", seen, wanted)
    expect("history's idempotency key", history["items"][0].get("idempotency_key"), key)
    expect("unknown wallet", service.request("GET", f"/api/v1/wallets/{uuid.uuid4()}")[0], 404)
    say(
        "contract: create, deposit, withdraw, insufficient funds, balance, history, replay, "
        f"on 127.0.0.1:{service.port}"
    )
    return wallet


def wait_for(what: str, condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def check_graceful_stop(service: Service, wallet: str) -> None:
    """Requests held on a row lock when SIGTERM arrives are all answered; exit status 0."""
    balance = Decimal(service.psql(DATABASE, f"SELECT balance FROM wallets WHERE id = '{wallet}'"))
    holder = service.docker.popen(
        "exec", "-i", service.postgres, "psql", "-U", "postgres", "-d", DATABASE, "-q",
        "-v", "ON_ERROR_STOP=1",
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdin is not None
    holder.stdin.write(f"BEGIN;\nSELECT 1 FROM wallets WHERE id = '{wallet}' FOR UPDATE;\n")
    holder.stdin.flush()
    activity = "SELECT count(*) FROM pg_stat_activity WHERE "
    wait_for(
        "the row lock",
        lambda: service.psql(DATABASE, activity + "state = 'idle in transaction'") == "1",
        15,
    )
    answers: list[object] = []

    def deposit() -> None:
        try:
            status, _, body = service.request(
                "POST", f"/api/v1/wallets/{wallet}/operation",
                {"operation": "DEPOSIT", "amount": 1}, timeout=60,
            )  # fmt: skip
            answers.append((status, body))
        except (OSError, http.client.HTTPException) as error:
            answers.append(repr(error))

    threads = [threading.Thread(target=deposit) for _ in range(IN_FLIGHT)]
    for thread in threads:
        thread.start()
    waiting = activity + "application_name = 'wallet-api' AND wait_event_type = 'Lock'"
    wait_for("the service to wait on the lock", lambda: service.psql(DATABASE, waiting) != "0", 15)
    stopping = service.docker.popen(
        "stop", "--time", "40", service.api, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_for(
        "Gunicorn to take SIGTERM", lambda: "Handling signal: term" in service.logs(service.api), 15
    )
    # Held a while past SIGTERM: a stop that does not wait for in-flight requests shows here.
    time.sleep(HELD_AFTER_SIGTERM)
    expect("requests answered before the lock was released", answers, [])
    holder.stdin.write("COMMIT;\n")
    holder.stdin.close()
    holder.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=60)
    stopping.wait(timeout=60)
    state = service.docker.inspect("container", service.api)["State"]
    ok = (200, {"status": "success", "balance": None})
    shapes = [
        (answer[0], {**answer[1], "balance": None}) if isinstance(answer, tuple) else answer
        for answer in answers
    ]
    expect("answers to the requests in flight at SIGTERM", shapes, [ok] * IN_FLIGHT)
    expect(
        "the container's exit status after docker stop",
        (state["Status"], state["ExitCode"]),
        ("exited", 0),
    )
    final = Decimal(service.psql(DATABASE, f"SELECT balance FROM wallets WHERE id = '{wallet}'"))
    expect("balance after the stop (minor units)", final - balance, Decimal(IN_FLIGHT * 100))
    say(
        f"stop: {IN_FLIGHT} requests waiting on a row lock at SIGTERM, all answered 200; "
        "exit status 0"
    )


def check_tests_image(service: Service, pytest_args: str) -> float:
    started = time.monotonic()
    result = service.docker.run(
        "run", "--rm", "--network", service.network,
        "-e", f"TEST_DATABASE_URL=postgresql://postgres@{service.postgres}:5432/postgres",
        TESTS_IMAGE, "pytest", "-q", "-p", "no:cacheprovider", *shlex.split(pytest_args),
        check=False, timeout=1800,
    )  # fmt: skip
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    if result.returncode != 0 or " passed" not in summary:
        raise CheckFailed(
            f"the tests image ({result.returncode}): {result.stdout[-3000:]}{result.stderr[-2000:]}"
        )
    say(f"tests: the tests image against the database it was given: {summary}")
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def running(service: Service) -> Iterator[Service]:
    try:
        yield service
    except CheckFailed:
        if service.port or service.docker.run("inspect", service.api, check=False).returncode == 0:
            say("service log (last lines):\n" + service.logs(service.api)[-3000:])
        raise
    finally:
        service.remove()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", choices=["auto", "official", "local"], default="auto")
    parser.add_argument("--pytest-args", default=DEFAULT_PYTEST_ARGS)
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--service-user", default=None)
    options = parser.parse_args(argv)
    started = time.monotonic()
    try:
        check_compose()
        docker = Docker()
        if docker.run("info", check=False, timeout=30).returncode != 0:
            raise CheckFailed("the Docker daemon does not answer (start dockerd)")
        base = choose_base(docker, options.base)
        ca = build_ca()
        build(docker, base, ca)
        check_code_change_cached(docker, base, ca)
        check_image(docker, base, ca)
        check_revision(docker)
        with running(Service(docker, options.service_env, options.service_user)) as service:
            service.start_database()
            took = service.start()
            say(f"start: healthy after {took:.1f} s, published on 127.0.0.1:{service.port}")
            check_migrated(service)
            check_non_root(service)
            wallet = check_contract(service)
            check_graceful_stop(service, wallet)
            check_tests_image(service, options.pytest_args)
    except CheckFailed as failure:
        say(f"FAILED: {failure}")
        return 1
    say(f"all checks passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
