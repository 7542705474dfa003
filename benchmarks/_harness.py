"""The benchmark loop: one sandbox per scenario, contenders alternating run by run.

For each scenario the harness starts the sandbox as a child process (pinned to CPU 0 on a
machine with two or more CPUs), then runs ``rounds`` rounds; a round runs every contender once,
in the same order (us, peer a, peer b, peer c), each as its own child process pinned to CPU 1,
so that no contender always runs first or last. Before each run the sandbox's counters are
reset; after it the harness reads them, counts the results file, and flags a run whose numbers
do not add up.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from kaleyra_async.sandbox import SandboxConfig, SandboxProcess
from kaleyra_async.sandbox._process import make_realtime

from ._inputs import DATA_DIR, Kind, ensure_input
from ._plan import CONTENDERS, Contender, Scenario, contender_argv
from ._run import (
    ChildRun,
    ResultsCheck,
    busy_cpu_s,
    check_results,
    fetch_stats,
    process_cpu_s,
    reset_sandbox,
    run_child,
)

__all__ = ["CpuPlan", "RunRecord", "cpu_plan", "run_scenario", "snapshot_code", "warm_up"]

logger = logging.getLogger(__name__)

REPO: Final = Path(__file__).resolve().parent.parent
_SCRUBBED_ENV: Final = ("KALEYRA_BASE_URL", "KALEYRA_POD", "KALEYRA_CONFIG")


def snapshot_code(dest: Path, repo: Path = REPO) -> str:
    """Export ``kaleyra_async/`` at HEAD into ``dest``; return the commit (or "working tree").

    Every contender is a fresh process that imports the package when it starts, and other
    people commit to the checkout while a benchmark runs: without a snapshot, later rounds
    would measure newer code than earlier ones. ``git archive HEAD`` pins one commit (and leaves
    out uncommitted work in progress); without git, the working tree is copied.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", "HEAD", "kaleyra_async"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(
            repo / "kaleyra_async",
            dest / "kaleyra_async",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        return "working tree"
    archive_path = dest / "code.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(dest, filter="data")
    archive_path.unlink()
    return commit


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CpuPlan:
    """Which CPUs the sandbox and the client under test get (None: not pinned)."""

    sandbox: tuple[int, ...] | None
    client: tuple[int, ...] | None
    #: The sandbox runs at real-time priority (it stamps arrivals as they come in).
    realtime: bool = False

    def describe(self) -> str:
        priority = (
            "the sandbox at real-time priority"
            if self.realtime
            else "the sandbox at normal priority (real-time not permitted here: on a busy "
            "machine it may stamp arrivals late, in bursts)"
        )
        if self.sandbox is None or self.client is None:
            return f"not pinned (fewer than 2 CPUs available), {priority}"
        return f"sandbox on CPU {self.sandbox}, client under test on CPU {self.client}, {priority}"


def realtime_permitted() -> bool:
    """Whether a child may be given real-time priority: tried on a throwaway child, so the
    harness's own scheduling is never touched (nothing to undo, nothing to fail undoing)."""
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as probe:
        try:
            return make_realtime(probe.pid)
        finally:
            probe.kill()  # the with block closes its stdin and waits for it


def cpu_plan() -> CpuPlan:
    """Sandbox on the first allowed CPU, client on the second; unpinned on a 1-CPU machine."""
    allowed = sorted(os.sched_getaffinity(0))
    realtime = realtime_permitted()
    if len(allowed) < 2:
        return CpuPlan(sandbox=None, client=None, realtime=realtime)
    return CpuPlan(sandbox=(allowed[0],), client=(allowed[1],), realtime=realtime)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One contender's run in one round of one scenario, with everything derived from it."""

    scenario: str
    contender: str
    round: int
    rows: int
    child: ChildRun
    check: ResultsCheck
    stats: Mapping[str, Any]
    problems: tuple[str, ...]
    #: CPU-seconds that processes other than the child and the sandbox used during the run
    #: (the machine may be shared; the launcher's ~0.05 s is in here too).
    other_cpu_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def other_load_cores(self) -> float:
        """How many CPUs' worth of other work ran alongside (0 on a quiet machine)."""
        return self.other_cpu_s / self.child.wall_s

    @property
    def recipients_per_s(self) -> float:
        """Rows that got a ``sent`` line, per second of the child's whole life."""
        return self.check.sent / self.child.wall_s

    @property
    def requests(self) -> float:
        """Requests the sandbox accepted in the run."""
        return float(self.stats.get("accepted_requests", 0))

    @property
    def requests_per_s(self) -> float:
        """Requests the sandbox accepted, per second of the child's whole life."""
        return float(self.stats.get("accepted_requests", 0)) / self.child.wall_s

    @property
    def server_rate_per_s(self) -> float | None:
        """Accepted requests per second between the first and the last arrival (server clock)."""
        active_s = float(self.stats.get("active_s") or 0.0)
        accepted = int(self.stats.get("accepted_requests", 0))
        return (accepted - 1) / active_s if active_s > 0 and accepted > 1 else None

    @property
    def server_mean_rate_per_s(self) -> float:
        """The sandbox's ``mean_rate_per_s``: every arrival (429s too) over the active time."""
        return float(self.stats.get("mean_rate_per_s", 0.0))

    @property
    def max_in_1s(self) -> int:
        """The sandbox's ``max_requests_in_1s``: the busiest sliding second (429s too)."""
        return int(self.stats.get("max_requests_in_1s", 0))

    @property
    def cpu_s_per_100k(self) -> float:
        return self.child.cpu_s / max(self.rows, 1) * 100_000

    def metric(self, name: str) -> float | None:
        value = getattr(self, name)
        return None if value is None else float(value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "contender": self.contender,
            "round": self.round,
            "rows": self.rows,
            "ok": self.ok,
            "problems": list(self.problems),
            "exit_code": self.child.exit_code,
            "wall_s": self.child.wall_s,
            "cpu_s": self.child.cpu_s,
            "max_rss_mb": self.child.max_rss_mb,
            "launcher_rss_mb": self.child.launcher_rss_mb,
            "other_load_cores": self.other_load_cores,
            "recipients_per_s": self.recipients_per_s,
            "requests": self.requests,
            "requests_per_s": self.requests_per_s,
            "server_rate_per_s": self.server_rate_per_s,
            "server_mean_rate_per_s": self.server_mean_rate_per_s,
            "max_requests_in_1s": self.max_in_1s,
            "cpu_s_per_100k": self.cpu_s_per_100k,
            "results_lines": self.check.lines,
            "results_sent": self.check.sent,
            "results_distinct_rows": self.check.distinct_rows,
            "sandbox": dict(self.stats),
            **({"stderr_tail": self.child.stderr_tail} if self.problems else {}),
        }


def _problems(
    contender: Contender, rows: int, child: ChildRun, check: ResultsCheck, stats: Mapping[str, Any]
) -> tuple[str, ...]:
    """Why a run's numbers cannot be trusted; empty when they add up."""
    found = []
    if child.timed_out:
        found.append("killed at the time limit")
    elif child.exit_code != 0:
        found.append(f"exit code {child.exit_code}")
    if check.lines != rows:
        found.append(f"{check.lines} result lines for {rows} rows")
    if not check.rows_exact:
        found.append(f"{check.distinct_rows} distinct row numbers, not exactly 1..{rows}")
    if check.sent != rows:
        found.append(f"{check.sent} of {rows} rows sent")
    accepted = int(stats.get("accepted_recipients", -1))
    if accepted != check.sent:
        who = "we" if contender.ours else "it"
        found.append(f"sandbox accepted {accepted} recipients, {who} reported {check.sent} sent")
    return tuple(found)


def _sandbox_config(scenario: Scenario) -> SandboxConfig:
    return SandboxConfig(
        rate_per_s=scenario.sandbox_rate_per_s,
        latency_ms=scenario.sandbox_latency_ms,
        keep_in_memory=False,
        seed=1,
    )


def _child_env(sandbox: SandboxProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["KALEYRA_SID"] = sandbox.sid
    env["KALEYRA_API_KEY"] = sandbox.api_key
    return env


def _run_once(
    scenario: Scenario,
    contender: Contender,
    rnd: int,
    *,
    sandbox: SandboxProcess,
    input_path: Path,
    rows: int,
    cpus: CpuPlan,
    work_dir: Path,
    code_dir: Path,
) -> RunRecord:
    out = work_dir / f"{scenario.key}-{contender.key}.ndjson"
    for stale in (out, out.with_name(out.name + ".journal")):
        stale.unlink(missing_ok=True)
    reset_sandbox(sandbox.base_url)
    argv = contender_argv(
        contender, scenario, input_path=input_path, out_path=out, base_url=sandbox.base_url
    )
    busy_before, sandbox_before = busy_cpu_s(), process_cpu_s(sandbox.pid)
    child = run_child(
        argv,
        env=_child_env(sandbox),
        cpus=cpus.client,
        timeout_s=scenario.timeout_s,
        stderr_path=work_dir / f"{scenario.key}-{contender.key}-{rnd}.stderr",
        # ``python -m kaleyra_async`` finds the package in its working directory first.
        cwd=code_dir,
    )
    busy_after, sandbox_after = busy_cpu_s(), process_cpu_s(sandbox.pid)
    other_cpu_s = (busy_after - busy_before) - child.cpu_s - (sandbox_after - sandbox_before)
    stats = fetch_stats(sandbox.base_url)
    check = check_results(out, rows)
    for done in (out, out.with_name(out.name + ".journal")):
        done.unlink(missing_ok=True)
    return RunRecord(
        scenario=scenario.key,
        contender=contender.key,
        round=rnd,
        rows=rows,
        child=child,
        check=check,
        stats=stats,
        problems=_problems(contender, rows, child, check, stats),
        other_cpu_s=max(0.0, other_cpu_s),
    )


def _inputs_for(scenario: Scenario, data_dir: Path) -> dict[str, Path]:
    """Each contender's input file (contenders with the same row count share one)."""
    kind: Kind = scenario.kind
    return {key: ensure_input(kind, rows, data_dir) for key, rows in scenario.rows.items()}


def run_scenario(
    scenario: Scenario,
    *,
    rounds: int,
    cpus: CpuPlan,
    code_dir: Path,
    data_dir: Path = DATA_DIR,
    first_round: int = 1,
    on_run: Callable[[RunRecord], None] = lambda record: None,
) -> list[RunRecord]:
    """Every round of one scenario: one sandbox, contenders alternating within each round."""
    inputs = _inputs_for(scenario, data_dir)
    work_dir = data_dir / "runs"
    work_dir.mkdir(parents=True, exist_ok=True)
    records: list[RunRecord] = []
    config = _sandbox_config(scenario)
    with SandboxProcess(config, cpus=cpus.sandbox, realtime=cpus.realtime) as sandbox:
        for rnd in range(first_round, first_round + rounds):
            for key in scenario.contenders:
                record = _run_once(
                    scenario,
                    CONTENDERS[key],
                    rnd,
                    sandbox=sandbox,
                    input_path=inputs[key],
                    rows=scenario.rows[key],
                    cpus=cpus,
                    work_dir=work_dir,
                    code_dir=code_dir,
                )
                records.append(record)
                on_run(record)
    return records


def warm_up(
    contenders: Sequence[str], *, cpus: CpuPlan, code_dir: Path, data_dir: Path = DATA_DIR
) -> list[RunRecord]:
    """One tiny unrecorded run per contender, so that no measured run pays for cold caches."""
    tiny = Scenario(
        key="warmup",
        title="warm-up",
        what="not recorded",
        kind="bulk",
        rows=dict.fromkeys(contenders, 200),
    )
    return run_scenario(tiny, rounds=1, cpus=cpus, code_dir=code_dir, data_dir=data_dir)


def describe_record(record: RunRecord) -> str:
    """One progress line for stderr."""
    mark = "ok" if record.ok else "PROBLEM: " + "; ".join(record.problems)
    server = record.server_rate_per_s
    return (
        f"[{record.scenario}] round {record.round} {record.contender:<8} "
        f"{record.rows:>9,} rows in {record.child.wall_s:6.2f} s: "
        f"{record.recipients_per_s:>9,.0f} rcpt/s, {record.requests_per_s:>7,.0f} req/s"
        + (f" (server {server:,.0f}/s, busiest 1 s {record.max_in_1s})" if server else "")
        + f", cpu {record.child.cpu_s:.2f} s, rss {record.child.max_rss_mb:.0f} MB"
        + f", other load {record.other_load_cores:.2f} CPUs  {mark}"
    )


def progress(record: RunRecord) -> None:
    print(describe_record(record), file=sys.stderr, flush=True)


def elapsed_since(started: float) -> float:
    return time.monotonic() - started
