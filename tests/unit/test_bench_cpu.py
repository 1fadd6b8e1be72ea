"""The benchmark's CPU accounting (bench/cpu.py): /proc/PID/stat parsed past an odd command
name, a process tree's ticks summed with the children it reaped, and a reaped child's CPU
kept in its parent's tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.cpu import (
    CLOCK_TICKS,
    ProcessTimes,
    microseconds_per,
    parent_pid,
    parse_stat,
    process_title,
    read_processes,
    sample,
    seconds_between,
    tree_ticks,
)


def stat_line(
    pid: int, comm: str, *, ppid: int, utime: int, stime: int, cutime: int, cstime: int
) -> str:
    # Fields 1-17 of proc(5), then the rest (here zeros) up to field 52.
    fields = [str(pid), f"({comm})", "S", str(ppid), *["0"] * 9]
    fields += [str(utime), str(stime), str(cutime), str(cstime)]
    return " ".join(fields + ["0"] * 35) + "\n"


def test_parse_stat_counts_fields_from_the_last_parenthesis() -> None:
    line = stat_line(
        4242, "post gres: (odd) ) name", ppid=17, utime=100, stime=20, cutime=7, cstime=3
    )
    assert parse_stat(line) == ProcessTimes(pid=4242, ppid=17, ticks=120, child_ticks=10)


def test_tree_ticks_sums_the_root_and_its_descendants_only() -> None:
    processes = [
        ProcessTimes(pid=10, ppid=1, ticks=5, child_ticks=100),  # root, reaped 100
        ProcessTimes(pid=11, ppid=10, ticks=7, child_ticks=0),
        ProcessTimes(pid=12, ppid=10, ticks=3, child_ticks=1),
        ProcessTimes(pid=13, ppid=12, ticks=2, child_ticks=0),  # a grandchild
        ProcessTimes(pid=20, ppid=1, ticks=1000, child_ticks=1000),  # not in the tree
        ProcessTimes(pid=21, ppid=20, ticks=1000, child_ticks=0),
    ]
    assert tree_ticks(processes, 10) == 5 + 100 + 7 + 3 + 1 + 2
    assert tree_ticks(processes, 12) == 3 + 1 + 2
    assert tree_ticks(processes, 99) is None


def test_tree_ticks_ends_on_a_cycle() -> None:
    processes = [
        ProcessTimes(pid=1, ppid=2, ticks=1, child_ticks=0),
        ProcessTimes(pid=2, ppid=1, ticks=1, child_ticks=0),
    ]
    assert tree_ticks(processes, 1) == 2


def test_seconds_and_microseconds_per_request() -> None:
    spent = seconds_between(
        {"service": 100, "postgres": None, "gone": 5},
        {"service": 100 + 3 * CLOCK_TICKS, "postgres": 50, "gone": None},
    )
    assert spent == {"service": 3.0, "postgres": None, "gone": None}
    assert microseconds_per(spent, 20_000) == {"service": 150.0, "postgres": None, "gone": None}
    assert microseconds_per({"service": 1.0}, 0) == {"service": None}


def test_a_fake_proc(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()  # not a pid
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text(
        stat_line(7, "postgres", ppid=1, utime=4, stime=1, cutime=0, cstime=0)
    )
    (tmp_path / "7" / "cmdline").write_bytes(b"postgres: bench db [local] idle\0")
    (tmp_path / "8").mkdir()
    (tmp_path / "8" / "stat").write_text("garbage")
    (tmp_path / "9").mkdir()  # exited while read: no stat
    assert read_processes(tmp_path) == [ProcessTimes(pid=7, ppid=1, ticks=5, child_ticks=0)]
    assert process_title(7, tmp_path) == "postgres: bench db [local] idle"
    assert process_title(9, tmp_path) is None
    assert parent_pid(7, tmp_path) == 1
    assert parent_pid(9, tmp_path) is None


def test_a_reaped_child_stays_in_its_parents_tree() -> None:
    roots = {"me": os.getpid(), "none": None}
    before = sample(roots)
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)  # runs, exits, is reaped
    spent = seconds_between(before, sample(roots))
    assert spent["none"] is None
    assert spent["me"] is not None
    assert spent["me"] >= 0.3 - 2 / CLOCK_TICKS


def test_the_real_proc_shows_this_process_and_its_parent() -> None:
    mine = [process for process in read_processes() if process.pid == os.getpid()]
    assert [process.ppid for process in mine] == [os.getppid()]
