"""Running one contender once: spawn, wait, measure, check the results file (the I/O shell).

The child is measured by the kernel, not by itself: ``os.wait4`` returns its user + system CPU
time and its peak resident set size (``ru_maxrss``, KiB on Linux), and the wall clock runs from
just before ``Popen`` to the return of ``wait4``, so interpreter start-up and imports count, as
they do for a user. The child may be pinned to a set of CPUs (``os.sched_setaffinity`` in the
child before ``exec``). Both happen in ``_launch.py``, a clean parent process.

The machine may be shared: :func:`busy_cpu_s` and :func:`process_cpu_s` let the harness work
out how much CPU *other* processes used during a run, so a noisy run is visible in the report.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

__all__ = [
    "ChildRun",
    "ResultsCheck",
    "busy_cpu_s",
    "check_results",
    "fetch_stats",
    "process_cpu_s",
    "reset_sandbox",
    "run_child",
]

_LAUNCHER: Final = Path(__file__).resolve().parent / "_launch.py"
_SENT: Final = re.compile(rb'"status":\s*"sent"')
_ROW: Final = re.compile(rb'"row":\s*(\d+)')


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChildRun:
    """How one child process went, as the kernel saw it."""

    exit_code: int
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    timed_out: bool
    #: The last part of the child's stderr, for the report when something went wrong.
    stderr_tail: str
    #: The launcher's own peak RSS: the floor below which the child's figure means nothing.
    launcher_rss_mb: float = 0.0


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cpus: Sequence[int] | None,
    timeout_s: float,
    stderr_path: Path,
    cwd: Path | None = None,
) -> ChildRun:
    """Run ``argv`` to completion (SIGKILL after ``timeout_s``) and measure it.

    The child is started by ``_launch.py`` in a fresh interpreter, so that its peak RSS is its
    own and not the harness's (see that module's docstring).
    """
    spec = {
        "argv": list(argv),
        "env": dict(env),
        "cwd": str(cwd) if cwd is not None else None,
        "cpus": list(cpus) if cpus is not None else None,
        "timeout_s": timeout_s,
        "stderr_path": str(stderr_path),
    }
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(_LAUNCHER), orjson.dumps(spec).decode()],
        capture_output=True,
        check=False,
        timeout=timeout_s + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the launcher failed: {done.stderr.decode(errors='replace')[-2000:]}")
    measured = orjson.loads(done.stdout)
    tail = stderr_path.read_bytes()[-2000:].decode("utf-8", "replace")
    return ChildRun(
        exit_code=measured["exit_code"],
        wall_s=measured["wall_s"],
        cpu_s=measured["cpu_s"],
        max_rss_mb=measured["max_rss_kb"] / 1024,
        timed_out=measured["timed_out"],
        stderr_tail=tail,
        launcher_rss_mb=measured["launcher_rss_kb"] / 1024,
    )


def busy_cpu_s() -> float:
    """CPU-seconds all CPUs have spent busy since boot (``/proc/stat``), 0.0 if unreadable."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return 0.0
    # cpu user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    ticks = [int(x) for x in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU-seconds of a running process (``/proc/<pid>/stat``), 0.0 if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")" closing the command name, utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResultsCheck:
    """What a results file holds, counted without trusting the contender's own summary."""

    lines: int
    sent: int
    #: Distinct row numbers, and whether they are exactly 1..rows.
    distinct_rows: int
    rows_exact: bool


def check_results(path: Path, rows: int) -> ResultsCheck:
    """Count the lines, the ``sent`` lines and the distinct row numbers in ``path``."""
    if not path.exists():
        return ResultsCheck(lines=0, sent=0, distinct_rows=0, rows_exact=False)
    data = path.read_bytes()
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    seen = {int(m) for m in _ROW.findall(data)}
    exact = len(seen) == rows and (not seen or (min(seen) == 1 and max(seen) == rows))
    return ResultsCheck(
        lines=lines, sent=len(_SENT.findall(data)), distinct_rows=len(seen), rows_exact=exact
    )


def reset_sandbox(base_url: str, timeout_s: float = 10.0) -> None:
    """``POST /_sandbox/reset``: zero the sandbox's counters before a run."""
    request = urllib.request.Request(f"{base_url}/_sandbox/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        response.read()


def fetch_stats(base_url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """``GET /_sandbox/stats``."""
    with urllib.request.urlopen(f"{base_url}/_sandbox/stats", timeout=timeout_s) as response:
        stats: dict[str, Any] = orjson.loads(response.read())
    return stats
