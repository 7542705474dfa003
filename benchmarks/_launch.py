"""Start one program, wait for it, print its rusage as JSON: a clean parent for measured runs.

Run as ``python -I -S _launch.py '<json>'`` with ``{"argv", "env", "cwd", "cpus", "timeout_s",
"stderr_path"}``; prints ``{"exit_code", "wall_s", "cpu_s", "max_rss_kb", "timed_out",
"launcher_rss_kb"}`` on stdout.

Why a separate process: Linux copies a process's peak-RSS mark into a forked child and keeps it
across ``exec``, so a child's ``ru_maxrss`` is at least its parent's peak at fork time. The
harness reads large result files and its peak grows to tens of MB, which would then show up as
every contender's "peak RSS". This launcher is a fresh interpreter with no site packages and
only the standard library (about 10 MB), so what ``wait4`` reports is the contender's own peak
whenever that is above the launcher's (every Python program measured here is).

Standard library only, no imports from the package: ``-S`` leaves site-packages off the path.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    spec = json.loads(sys.argv[1])
    cpus = set(spec["cpus"]) if spec.get("cpus") is not None else None

    def pin() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    with open(spec["stderr_path"], "wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            spec["argv"],
            env=spec["env"],
            cwd=spec.get("cwd"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=pin,  # this process has no other threads yet: preexec_fn is safe
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            os.kill(proc.pid, signal.SIGKILL)

        timer = threading.Timer(spec["timeout_s"], kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall_s = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
    json.dump(
        {
            "exit_code": proc.returncode,
            "wall_s": wall_s,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_kb": usage.ru_maxrss,
            "timed_out": timed_out.is_set(),
            "launcher_rss_kb": _rss_kb(),
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
