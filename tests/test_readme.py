"""The README and the API reference, run as a newcomer runs them: in a fresh copy of the
repository, with a shell.

The copy holds what a clone holds (the files git tracks, and new ones it does not ignore),
without `.venv` or `.data`. In it, the test types `make run` and, while it serves, every
`console` block of the pages in DOCUMENTS, in that order: each `$ ` line goes to one bash
session (so `W=...` carries on to the next line, and to the next page), and what it prints
is compared with the lines the page shows under it. A page that shows a command or an
answer the code no longer gives fails here. A block that restarts the server (a command
ending in `make run`, such as `AUTH_MODE=keys make run`) changes it for every block after
it, so such a block comes last.

Matching: `…` stands for anything within a line, and a line of `…` alone for any lines;
UUIDs and 12-hex key ids are compared by form, not value. The one liberty taken with the
commands: the port. The server listens on a free port instead of 8000 (which a developer's
own `make run` may hold), and `127.0.0.1:8000` in a command is typed with that port.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import plain_environment
from wallet_api.devtools.server import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: The pages whose `console` blocks are run, in this order, in one shell session.
DOCUMENTS = [README, ROOT / "docs" / "API.md"]

pytestmark = [
    pytest.mark.own_servers,  # the embedded PostgreSQL of `make run`, in its own copy
    pytest.mark.skipif(shutil.which("curl") is None, reason="the README's examples use curl"),
    pytest.mark.skipif(
        not (ROOT / ".git").exists() or shutil.which("git") is None,
        reason="needs a git checkout to copy as a clone",
    ),
]

#: Commands of the README's `sh` blocks that are run as well (each must be in the README),
#: with a line their output must hold.
SH_COMMANDS = {
    "make verify": '"consistent": true',
    ".venv/bin/alembic check": "No new upgrade operations detected.",
    "make migrate": "database 'wallets' on the embedded PostgreSQL of `make run`",
}

#: How long one command of the README may take.
STEP_SECONDS = 120


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)
    page: str = "README.md"


def console_steps(text: str, page: str = "README.md") -> list[Step]:
    """Every `$ ` command of a page's `console` blocks, with the lines shown under it.
    A command goes on over lines that end with a backslash or start indented."""
    steps: list[Step] = []
    for block in re.findall(r"^```console\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append(Step(line[2:], page=page))
            elif line.startswith("#"):
                continue  # a comment for the reader
            elif steps and (steps[-1].command.endswith("\\") or line.startswith(" ")):
                steps[-1].command += "\n" + line
            elif steps:
                steps[-1].expected.append(line)
    return steps


def normalized(line: str) -> str:
    line = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", line)
    return re.sub(r"\b[0-9a-f]{12}\b", "<id>", line)


def matches(expected: list[str], actual: list[str]) -> bool:
    """The lines a page shows against those printed (see the module's docstring)."""
    if not expected:
        return True  # the page shows no output for this command
    pattern = "\n".join(
        r"(?:.*\n)*?.*" if line.strip() == "…" else ".*".join(map(re.escape, line.split("…")))
        for line in map(normalized, expected)
    )
    return re.fullmatch(pattern, "\n".join(map(normalized, actual))) is not None


class Shell:
    """One bash session in the copy, as in a terminal: stdout and stderr together."""

    MARK = "__readme_step_done__"

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )

    def run(self, command: str) -> tuple[int, list[str]]:
        """The command's exit status and what it printed (within STEP_SECONDS)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        # The status is kept before the `echo` that ends an unterminated last line.
        self.process.stdin.write(f"{command}\n__status=$?; echo; echo {self.MARK} $__status\n")
        self.process.stdin.flush()
        output = b""
        deadline = time.monotonic() + STEP_SECONDS
        while (self.MARK.encode() + b" ") not in output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{command!r} still runs after {STEP_SECONDS} s: {output!r}"
            ready, _, _ = select.select([self.process.stdout], [], [], remaining)
            chunk = os.read(self.process.stdout.fileno(), 65536) if ready else b""
            assert chunk or not ready, f"the shell ended during {command!r}: {output!r}"
            output += chunk
        printed, _, status = output.decode().rpartition(self.MARK + " ")
        # The text before the mark ends with a newline; HTTP headers end with CR LF.
        lines = [line.rstrip("\r") for line in printed.split("\n")[:-1]]
        if lines and lines[-1] == "":
            lines.pop()  # the `echo` that ends an unterminated last line
        return int(status.split()[0]), lines

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


class Server:
    """`make run` in the copy, as typed in a terminal; stopped with Ctrl-C (SIGINT)."""

    def __init__(self, cwd: Path, env: dict[str, str], command: str, log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{env['PORT']}"
        deadline = time.monotonic() + 240  # the first start runs initdb
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(base + "/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()  # nothing of it left running
        raise AssertionError(f"{command!r} did not become ready:\n{log.read_text()}")

    def stop(self) -> str:
        """Ctrl-C: SIGINT to the terminal's foreground group (bash, make and the server).
        make then says "Interrupt" and exits non-zero, as it does in a terminal; what
        counts is what the server logged. Returns the log of this run."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=90)
        output = self.log.read_text()
        return output[output.rindex(".venv/bin/wallet-api serve") :]

    def assert_stopped_cleanly(self) -> None:
        output = self.stop()
        assert "Shutting down: Master" in output, output
        assert re.search(r"embedded PostgreSQL in \S+ stopped\n", output), output
        for noise in ("Traceback", "Bad file descriptor", "Context impl", "Will assume"):
            assert noise not in output, f"{noise!r} in the output of make run:\n{output}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository as a clone has it: tracked files and new unignored ones."""
    target = tmp_path_factory.mktemp("readme") / "wallet-api"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    # A clone's folders are readable by others: the embedded server runs as its own user.
    for folder in [target, *target.parents]:
        if folder == Path(tmp_path_factory.getbasetemp()).parent:
            break
        folder.chmod(0o755)
    return target


def newcomer_environment(port: int) -> dict[str, str]:
    """A fresh shell's environment (a newcomer sets no setting), with the test's port."""
    return {**plain_environment(), "PORT": str(port)}


def test_the_readme_runs_as_written_from_a_fresh_clone(clone: Path) -> None:
    text = README.read_text()
    steps: list[Step] = []
    for document in DOCUMENTS:
        page = str(document.relative_to(ROOT))
        found = console_steps(document.read_text(), page)
        assert found, f"{page}: its console blocks were not found"
        steps += found
    assert len(steps) > 10, "the console blocks were not found"
    for command in SH_COMMANDS:
        assert command in text, f"{command!r} is no longer in the README"
    port = free_port()
    env = newcomer_environment(port)
    log = clone.parent / "make-run.log"
    subprocess.run(["make", "install"], cwd=clone, env=env, check=True, capture_output=True)
    server = Server(clone, env, "make run", log)
    shell = Shell(clone, env)
    try:
        for step in steps:
            command = step.command.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            if command.endswith("make run"):
                server.assert_stopped_cleanly()
                server = Server(clone, env, command, log)
                continue
            status, printed = shell.run(command)
            where = f"{step.page}: $ {step.command}"
            assert status == 0, f"{where}\nexit {status}:\n" + "\n".join(printed)
            assert matches(step.expected, printed), (
                f"{where}\nthe page shows:\n"
                + "\n".join(step.expected)
                + "\nit printed:\n"
                + "\n".join(printed)
            )
        for command, expected in SH_COMMANDS.items():
            status, printed = shell.run(command)
            assert status == 0, f"$ {command}\nexit {status}:\n" + "\n".join(printed)
            assert any(expected in line for line in printed), f"$ {command}:\n" + "\n".join(printed)
    finally:
        shell.close()
        server.stop()
    server.assert_stopped_cleanly()
