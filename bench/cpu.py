"""CPU time of process trees, read from /proc: what the service and PostgreSQL spend.

A tree's CPU time is utime + stime of its root and of every live descendant, plus cutime +
cstime of each of them: the time of the children they have already reaped (an exited
Gunicorn worker, a PostgreSQL backend whose connection closed). Sampled before and after a
run, the difference is the tree's CPU over the run, exited processes included, as long as
they were reaped by a process of the tree. Children are found by scanning /proc/*/stat for
their parent (kernels without CONFIG_PROC_CHILDREN have no /proc/PID/task/*/children).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessTimes:
    """The fields of /proc/PID/stat a tree's CPU time needs, in clock ticks."""

    pid: int
    ppid: int
    ticks: int  # utime + stime
    child_ticks: int  # cutime + cstime: children it has waited for


def parse_stat(text: str) -> ProcessTimes:
    """/proc/PID/stat's line. The command name, field 2, is in parentheses and may itself
    hold spaces and parentheses: the fields after it are counted from the last ')'."""
    pid = int(text[: text.index(" ")])
    after = text[text.rindex(")") + 1 :].split()
    # after[0] is field 3 (state); proc(5) numbers ppid 4, utime 14 ... cstime 17.
    return ProcessTimes(
        pid=pid,
        ppid=int(after[1]),
        ticks=int(after[11]) + int(after[12]),
        child_ticks=int(after[13]) + int(after[14]),
    )


def tree_ticks(processes: Iterable[ProcessTimes], root: int) -> int | None:
    """utime + stime + cutime + cstime summed over `root` and its descendants; None when
    `root` is not among `processes`."""
    by_pid: dict[int, ProcessTimes] = {}
    children: dict[int, list[int]] = {}
    for process in processes:
        by_pid[process.pid] = process
        children.setdefault(process.ppid, []).append(process.pid)
    if root not in by_pid:
        return None
    total = 0
    pending = [root]
    seen: set[int] = set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        process = by_pid[pid]
        total += process.ticks + process.child_ticks
        pending.extend(children.get(pid, ()))
    return total


def read_processes(proc: Path = PROC) -> list[ProcessTimes]:
    """Every process /proc shows now (those that exit while it is read are left out)."""
    processes = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            processes.append(parse_stat((entry / "stat").read_text()))
        except (OSError, ValueError, IndexError):
            continue
    return processes


def sample(roots: Mapping[str, int | None]) -> dict[str, int | None]:
    """The CPU ticks of each named tree now (None for a root that is None or gone)."""
    processes = read_processes()
    return {
        name: None if root is None else tree_ticks(processes, root) for name, root in roots.items()
    }


def seconds_between(
    before: Mapping[str, int | None], after: Mapping[str, int | None]
) -> dict[str, float | None]:
    """Each tree's CPU seconds from one sample to the next."""
    spent: dict[str, float | None] = {}
    for name, start in before.items():
        end = after.get(name)
        spent[name] = None if start is None or end is None else (end - start) / CLOCK_TICKS
    return spent


def microseconds_per(seconds: Mapping[str, float | None], count: int) -> dict[str, float | None]:
    """CPU µs per request (or per operation) of each tree; None where unmeasured or no count."""
    return {
        name: None if spent is None or count <= 0 else round(spent * 1e6 / count, 1)
        for name, spent in seconds.items()
    }


def process_title(pid: int, proc: Path = PROC) -> str | None:
    """A process's command line as ps shows it (PostgreSQL's backends put their title
    there), or None when /proc does not show the process."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def parent_pid(pid: int, proc: Path = PROC) -> int | None:
    try:
        return parse_stat((proc / str(pid) / "stat").read_text()).ppid
    except (OSError, ValueError, IndexError):
        return None
