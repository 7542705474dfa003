"""Run the sandbox in a child process, so that its CPU is not the client's CPU.

``SandboxProcess`` starts ``python -m kaleyra_async sandbox --port 0 ...``, reads the
"sandbox listening on <url> (sid <SID>)" line, and sends SIGTERM on exit (SIGKILL if the child
does not stop in time). It works as a sync (``with``) and an async (``async with``) context
manager; the async one runs the blocking start and stop in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from typing import IO, Any, Final

import orjson

from ._config import SandboxConfig

__all__ = ["SandboxProcess", "config_to_args", "make_realtime"]

_LISTENING: Final = re.compile(r"sandbox listening on (?P<url>http://\S+) \(sid (?P<sid>[^)]+)\)")


def config_to_args(config: SandboxConfig) -> list[str]:
    """The ``sandbox`` command-line arguments that reproduce ``config``."""
    args = [
        "--host", config.host,
        "--port", str(config.port),
        "--sid", config.sid,
        "--api-key", config.api_key,
        "--pod", config.pod,
        "--rate", str(config.rate_per_s),
        "--latency-ms", repr(config.latency_ms),
        "--slow-ms", repr(config.slow_ms),
        "--deliver-after-s", repr(config.deliver_after_s),
        "--flush-interval-s", repr(config.flush_interval_s),
        "--status-capacity", str(config.status_capacity),
        "--faults", ",".join(f"{n}={p!r}" for n, p in config.faults.probabilities) or "none",
        "--fail-numbers",
        ",".join(f"{r.suffix}={r.status}:{r.trace}" for r in config.fail_rules) or "none",
    ]  # fmt: skip
    if config.seed is not None:
        args += ["--seed", str(config.seed)]
    if config.ledger_path is not None:
        args += ["--ledger", config.ledger_path]
    if config.keep_in_memory:
        args.append("--keep-in-memory")
    return args


def make_realtime(pid: int) -> bool:
    """Give process ``pid`` the lowest ``SCHED_FIFO`` priority; False if not permitted (no
    ``CAP_SYS_NICE`` nor ``RLIMIT_RTPRIO``) or not supported here."""
    try:
        policy = os.SCHED_FIFO
        os.sched_setscheduler(pid, policy, os.sched_param(os.sched_get_priority_min(policy)))
    except (OSError, AttributeError):
        return False
    return True


class SandboxProcess:
    """The sandbox as a child process.

    Args:
        config: the behaviour; its ``port`` is usually 0 (a free port). The API key is passed on
            the child's command line, which is fine for the sandbox's public key only.
        extra_args: more ``sandbox`` arguments, appended after the ones from ``config``.
        cpus: pin the child to these CPUs (``os.sched_setaffinity``), e.g. for fair benchmarks.
        realtime: run the child at the lowest real-time priority (``SCHED_FIFO``) if the system
            permits, so it reads each request as it comes in and stamps its arrival then, even
            on a machine the client keeps busy (Kaleyra's servers do not share the client's
            cores); :attr:`realtime` says whether it took effect.
        startup_timeout_s: how long to wait for the "listening" line.
        stop_timeout_s: how long SIGTERM may take before SIGKILL.
        python: the interpreter (default: this one).
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        extra_args: Sequence[str] = (),
        cpus: Sequence[int] | None = None,
        realtime: bool = False,
        startup_timeout_s: float = 15.0,
        stop_timeout_s: float = 10.0,
        python: str = sys.executable,
    ) -> None:
        self.config = config or SandboxConfig()
        self.command = [
            python,
            "-m",
            "kaleyra_async",
            "sandbox",
            *config_to_args(self.config),
            *extra_args,
        ]
        self.cpus = tuple(cpus) if cpus is not None else None
        #: Asked for, then whether the child runs at real-time priority (once started).
        self.realtime = realtime
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._popen: subprocess.Popen[bytes] | None = None
        self._base_url: str | None = None
        self._sid: str | None = None
        #: The child's exit code once stopped.
        self.returncode: int | None = None

    # -- what callers read --

    @property
    def base_url(self) -> str:
        """The URL the child printed, e.g. ``http://127.0.0.1:41234``."""
        if self._base_url is None:
            raise RuntimeError("the sandbox process is not started")
        return self._base_url

    @property
    def sid(self) -> str:
        return self._sid or self.config.sid

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def pid(self) -> int:
        proc = self._popen
        if proc is None:
            raise RuntimeError("the sandbox process is not started")
        return proc.pid

    def fetch_stats(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """``GET /_sandbox/stats`` (blocking; use a thread from async code)."""
        url = f"{self.base_url}/_sandbox/stats"
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            result: dict[str, Any] = orjson.loads(response.read())
        return result

    def _found_line(self, line: bytes) -> None:
        match = _LISTENING.search(line.decode("utf-8", "replace"))
        if match is None:
            raise RuntimeError(f"unexpected first line from the sandbox: {line[:200]!r}")
        self._base_url = match["url"]
        self._sid = match["sid"]
        if self.cpus is not None:
            os.sched_setaffinity(self.pid, self.cpus)
        if self.realtime:
            self.realtime = make_realtime(self.pid)

    # -- sync --

    def start(self) -> None:
        """Start the child and wait for its URL line."""
        if self._popen is not None:
            raise RuntimeError("already started")
        self._popen = subprocess.Popen(self.command, stdout=subprocess.PIPE)
        stdout = self._popen.stdout
        assert stdout is not None
        try:
            self._found_line(_readline(stdout, self.startup_timeout_s))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> int:
        """SIGTERM the child, wait for it (SIGKILL after ``stop_timeout_s``); its exit code."""
        proc = self._popen
        if proc is None:
            raise RuntimeError("not started")
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self.returncode = proc.returncode
        return proc.returncode

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- async --
    # The blocking calls run in a worker thread: asyncio's child watchers misreport exit codes
    # of children that die fast (3.11), and startup/shutdown are far from any hot path.

    async def astart(self) -> None:
        """Start the child and wait for its URL line, without blocking the loop."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> int:
        """SIGTERM the child and wait for it (SIGKILL after ``stop_timeout_s``)."""
        return await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> SandboxProcess:
        await self.astart()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.astop()


def _readline(stream: IO[bytes], timeout_s: float) -> bytes:
    """One line from a pipe, or ``RuntimeError`` after ``timeout_s`` or at EOF."""
    deadline = time.monotonic() + timeout_s
    fd = stream.fileno()
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise RuntimeError(f"the sandbox did not start within {timeout_s} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError("the sandbox exited before it was listening")
            buffer += chunk
    return buffer.split(b"\n", 1)[0]
