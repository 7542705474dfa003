"""Reliability scenarios: the real CLI against a sandbox child process, faults and crashes on.

One scenario is one input file sent to completion by ``python -m kaleyra_async send-bulk``,
however many invocations that takes: the CLI may be ``kill -9``-ed at chosen moments and resumed
with ``--resume``, the sandbox may be restarted under it, and the sandbox injects faults. At the
end, the results file and the sandbox's ledger file are audited (see ``invariants.py``).

The same scenarios run small in ``make test`` (``test_faults.py``, ``test_crash_resume.py``) and
large in ``make soak`` (``soak.py``), so the soak's table and the tests check one thing.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kaleyra_async.sandbox import SandboxConfig, SandboxProcess, parse_faults

from .invariants import Audit, audit, iter_results, ledger_from_file

BODY = "Your order has shipped"
TEMPLATE_ID = "1107161234567890123"

#: What a kill -9 in the middle of a write leaves at the end of each file: part of a line.
TORN_RESULT = b'{"row":1,"to":"+9198000'
TORN_JOURNAL = b'{"inflight":[1,'


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One reliability run: an input, the sandbox's faults, and what happens to the processes."""

    name: str
    rows: int
    #: The sandbox's ``--faults`` spec.
    faults: str = "none"
    #: The sandbox's own limit (requests/s, 0: none); a client above it meets a 429 storm.
    sandbox_rate: int = 0
    client_rate: int = 100_000
    batch_size: int = 100
    concurrency: int = 16
    #: Every n-th row is an OTP (one recipient a request); 0: none.
    otp_every: int = 0
    #: Every n-th row has a number that can't be valid; 0: none.
    invalid_every: int = 0
    #: ``kill -9`` the CLI this many times, at seeded moments, resuming after each.
    kills: int = 0
    #: After every other kill, leave a torn last line in the results file and the journal.
    tear_on_kill: bool = True
    #: Restart (SIGTERM, then start again on the same port) the sandbox this many times.
    restarts: int = 0
    slow_ms: float = 2_000.0
    #: The client's read timeout; None: 0.5 s when ``slow`` faults are on (they must outlast it),
    #: else a generous 10 s, so that a loaded machine never turns a late answer into ``unknown``.
    read_timeout_s: float | None = None
    max_attempts: int = 10
    seed: int = 1


@dataclasses.dataclass
class Report:
    scenario: Scenario
    audit: Audit
    #: Faults the sandbox injected, 429s of its own limit, kills and restarts, together.
    faults_injected: int
    #: The same, by kind.
    fault_counts: dict[str, int]
    #: Highest peak RSS of any CLI invocation, in MiB (its VmHWM, sampled every 5 ms).
    peak_rss_mib: float
    #: Exit code of every CLI invocation, in order (-9: killed by us).
    exit_codes: list[int]
    seconds: float
    #: Rows whose number the sandbox accepted, by row status.
    accepted: dict[str, int]
    #: API requests each sandbox instance received (one entry per start, restarts included).
    requests_by_instance: list[int]


def number(i: int) -> str:
    return f"+9198{i:08d}"


def write_input(scenario: Scenario, path: Path) -> None:
    """Rows 1..rows, a distinct number each (so ledger lines map to rows)."""
    with path.open("w") as fh:
        fh.write("to,type\n")
        for i in range(1, scenario.rows + 1):
            if scenario.invalid_every and i % scenario.invalid_every == 0:
                fh.write(f"12{i},\n")  # too short to be a number anywhere
            elif scenario.otp_every and i % scenario.otp_every == 0:
                fh.write(f"{number(i)},OTP\n")
            else:
                fh.write(f"{number(i)},\n")


def write_config(scenario: Scenario, path: Path) -> None:
    read_timeout_s = scenario.read_timeout_s
    if read_timeout_s is None:
        read_timeout_s = 0.5 if "slow" in scenario.faults else 10.0
    path.write_text(
        "[retry]\n"
        f"max_attempts = {scenario.max_attempts}\n"
        "max_total_s = 30.0\n"
        "initial_backoff_s = 0.02\n"
        "max_backoff_s = 0.5\n"
        "jitter_s = 0.02\n"
        "[http]\n"
        f"read_timeout_s = {read_timeout_s}\n"
        "connect_timeout_s = 2.0\n"
    )


class _LineCounter:
    """Counts the lines of a growing file, reading only what was appended since last time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def update(self) -> int:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return self.lines
        self.offset += len(chunk)
        self.lines += chunk.count(b"\n")
        return self.lines


def _sandbox(scenario: Scenario, ledger: Path, port: int = 0) -> SandboxProcess:
    config = SandboxConfig(
        port=port,
        faults=parse_faults(scenario.faults),
        seed=scenario.seed,
        rate_per_s=scenario.sandbox_rate,
        slow_ms=scenario.slow_ms,
        ledger_path=str(ledger),
        keep_in_memory=False,
    )
    sandbox = SandboxProcess(config)
    sandbox.start()
    return sandbox


def _moments(rng: random.Random, count: int, rows: int) -> list[int]:
    """``count`` result-line counts, spread over the run, at which something happens."""
    if count == 0:
        return []
    span = max(rows // (count + 1), 1)
    return [k * span + rng.randrange(span) // 2 for k in range(1, count + 1)]


def _add_faults(counts: dict[str, int], stats: dict[str, object], served: list[int]) -> None:
    requests = stats.get("requests_total", 0)
    assert isinstance(requests, int)
    served.append(requests)
    faults = stats.get("faults", {})
    assert isinstance(faults, dict)
    for name, n in faults.items():
        counts[name] = counts.get(name, 0) + int(n)
    by_status = stats.get("by_status", {})
    assert isinstance(by_status, dict)
    throttled = int(by_status.get("429", 0)) - int(faults.get("429", 0))
    if throttled:
        counts["429_rate_limit"] = counts.get("429_rate_limit", 0) + throttled


def run_scenario(scenario: Scenario, workdir: Path, *, timeout_s: float = 600.0) -> Report:
    """Send the scenario's input to completion, crashing and restarting as it says; audit it."""
    workdir.mkdir(parents=True, exist_ok=True)
    src, out = workdir / "in.csv", workdir / "results.ndjson"
    ledger, config = workdir / "ledger.ndjson", workdir / "config.toml"
    write_input(scenario, src)
    write_config(scenario, config)
    rng = random.Random(scenario.seed)
    kill_at = _moments(rng, scenario.kills, scenario.rows)
    restart_at = _moments(rng, scenario.restarts, scenario.rows)
    counts: dict[str, int] = {}
    served: list[int] = []
    exit_codes: list[int] = []
    peak_rss_kib = 0
    started = time.monotonic()
    deadline = started + timeout_s

    sandbox = _sandbox(scenario, ledger)
    try:
        env = {**os.environ, "KALEYRA_SID": sandbox.sid, "KALEYRA_API_KEY": sandbox.api_key}
        kills_done = 0
        while True:
            resume = ("--resume",) if exit_codes else ()
            command = _command(scenario, sandbox.base_url, src, out, config, resume)
            stderr_path = workdir / f"stderr-{len(exit_codes) + 1}.txt"
            with stderr_path.open("wb") as stderr:
                child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
            lines = _LineCounter(out)
            killed = False
            while True:
                peak_rss_kib = max(peak_rss_kib, _peak_rss_kib(child.pid))
                pid, status = os.waitpid(child.pid, os.WNOHANG)
                if pid:
                    child.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    child.kill()
                    raise TimeoutError(f"{scenario.name}: not done after {timeout_s} s")
                done = lines.update()
                if kill_at and done >= kill_at[0]:
                    # One planned kill per child: a second moment already passed waits for the
                    # next run (signalling a dying child again would use it up uncounted).
                    kill_at.pop(0)
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                    killed = True
                    break
                if restart_at and done >= restart_at[0]:
                    restart_at.pop(0)
                    _add_faults(counts, sandbox.fetch_stats(), served)
                    port = int(sandbox.base_url.rsplit(":", 1)[1])
                    sandbox.stop()
                    sandbox = _sandbox(scenario, ledger, port)
                    counts["sandbox_restart"] = counts.get("sandbox_restart", 0) + 1
                time.sleep(0.005)
            exit_codes.append(child.returncode)
            if killed:
                kills_done += 1
                counts["kill_9"] = kills_done
                if scenario.tear_on_kill and kills_done % 2 == 1:
                    _tear(out)
                continue
            said = stderr_path.read_text(errors="replace")
            if "Traceback" in said:
                raise AssertionError(f"{scenario.name}: the CLI crashed:\n{said}")
            if child.returncode in (0, 1):
                break
            # Exit 2 after a start means the run stopped itself (e.g. no server while the
            # sandbox restarted); anything else, or too many of them, is a failure.
            if child.returncode != 2 or "stopping the run" not in said or len(exit_codes) > 20:
                raise AssertionError(f"{scenario.name}: exit {child.returncode}:\n{said}")
        _add_faults(counts, sandbox.fetch_stats(), served)
        if kill_at or restart_at:
            raise AssertionError(
                f"{scenario.name}: the run ended before every planned kill or restart "
                f"happened ({len(kill_at)} kills, {len(restart_at)} restarts left): use more rows"
            )
    finally:
        sandbox.stop()

    checked = audit(scenario.rows, iter_results(out), ledger_from_file(ledger))
    accepted_numbers = {line.recipient for line in ledger_from_file(ledger)}
    accepted: dict[str, int] = {}
    for record in iter_results(out):
        if record["to"] in accepted_numbers:
            accepted[record["status"]] = accepted.get(record["status"], 0) + 1
    return Report(
        scenario=scenario,
        audit=checked,
        faults_injected=sum(counts.values()),
        fault_counts=counts,
        peak_rss_mib=peak_rss_kib / 1024,
        exit_codes=exit_codes,
        seconds=time.monotonic() - started,
        accepted=accepted,
        requests_by_instance=served,
    )


def _peak_rss_kib(pid: int) -> int:
    """The process's own high-water RSS mark.

    Not ``wait4``'s ``ru_maxrss``: Linux carries that over from the forking parent across
    ``exec``, so a child of a big harness would report the harness's size.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # already gone (a zombie has no VmHWM line either)
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _command(
    scenario: Scenario, base_url: str, src: Path, out: Path, config: Path, extra: Sequence[str]
) -> list[str]:
    return [
        sys.executable, "-m", "kaleyra_async", "send-bulk", str(src),
        "--out", str(out), "--config", str(config), "--base-url", base_url,
        "--sender", "KLRHXA", "--type", "TXN", "--body", BODY, "--template-id", TEMPLATE_ID,
        "--rate", str(scenario.client_rate), "--batch-size", str(scenario.batch_size),
        "--concurrency", str(scenario.concurrency), "--no-progress", *extra,
    ]  # fmt: skip


def _tear(out: Path) -> None:
    """Leave what a kill in the middle of a write leaves: a last line without its newline."""
    for path, torn in ((out, TORN_RESULT), (Path(f"{out}.journal"), TORN_JOURNAL)):
        if path.exists():
            with path.open("ab") as fh:
                fh.write(torn)
