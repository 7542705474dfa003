"""Running one contender once: spawn, wait, measure, check the results file (the I/O shell).

The child is measured by the kernel, not by itself: ``os.wait4`` returns its user + system CPU
time and its peak resident set size (``ru_maxrss``, KiB on Linux), and the wall clock runs from
just before ``Popen`` to the return of ``wait4``, so interpreter start-up and imports count, as
they do for a user. The child may be pinned to a set of CPUs (``os.sched_setaffinity`` in the
child before ``exec``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

__all__ = ["ChildRun", "ResultsCheck", "check_results", "fetch_stats", "reset_sandbox", "run_child"]

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


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cpus: Sequence[int] | None,
    timeout_s: float,
    stderr_path: Path,
    cwd: Path | None = None,
) -> ChildRun:
    """Run ``argv`` to completion (SIGKILL after ``timeout_s``) and measure it."""
    cpu_set = set(cpus) if cpus is not None else None

    def pin() -> None:
        if cpu_set is not None:
            os.sched_setaffinity(0, cpu_set)

    with open(stderr_path, "wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=pin,  # the harness has no other threads yet: preexec_fn is safe
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            os.kill(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall_s = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
    tail = stderr_path.read_bytes()[-2000:].decode("utf-8", "replace")
    return ChildRun(
        exit_code=proc.returncode,
        wall_s=wall_s,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,
        timed_out=timed_out.is_set(),
        stderr_tail=tail,
    )


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
