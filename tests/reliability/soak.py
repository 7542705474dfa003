"""``make soak``: the reliability scenarios at full size, with a table of what they showed.

    PYTHONPATH=tests python -m reliability.soak              # about 3-5 minutes on 2 cores
    PYTHONPATH=tests python -m reliability.soak --scale 0.01 # the same scenarios, 1% of the rows

Every scenario drives the real CLI against a sandbox child process (see ``scenarios.py``) and
audits the results file against the sandbox's ledger file. Prints a Markdown table; exits 1 if
any row was lost, any SMS went out twice, any other invariant broke, a scenario saw no fault at
all, or the peak RSS at 1M rows is over 1.25x that at 100k (memory must stay flat).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .scenarios import Report, Scenario, run_scenario

EVERY_FAULT = (
    "429=0.001,503=0.01,500_after_accept=0.002,reset_before=0.002,"
    "reset_after_accept=0.002,slow=0.001"
)

SCENARIOS = (
    Scenario("every fault", rows=100_000, otp_every=1000, invalid_every=997, faults=EVERY_FAULT),
    Scenario("every fault", rows=1_000_000, otp_every=1000, invalid_every=997, faults=EVERY_FAULT),
    Scenario(
        "kill -9 x10 + resume, faults on",
        rows=200_000,
        kills=10,
        faults="503=0.01,500_after_accept=0.005,reset_after_accept=0.005",
        seed=11,
    ),
    Scenario("sandbox restarted x3", rows=200_000, batch_size=20, restarts=3, seed=12),
    Scenario(
        "429 storm (client 5x the sandbox's limit)",
        rows=20_000,
        batch_size=10,
        sandbox_rate=100,
        client_rate=500,
        seed=13,
    ),
)
#: Peak RSS at 1M rows may be at most this many times that at 100k: memory must stay flat.
FLAT_RSS_RATIO = 1.25

HEADER = (
    "| scenario | rows | faults injected | rows lost | duplicate sends | unknown rows "
    "| peak RSS | time |\n|---|---:|---:|---:|---:|---:|---:|---:|"
)


def table_line(report: Report) -> str:
    audit = report.audit
    faults = ", ".join(f"{name} {n}" for name, n in sorted(report.fault_counts.items()))
    return (
        f"| {report.scenario.name} | {report.scenario.rows:,} "
        f"| {report.faults_injected:,} ({faults or 'none'}) "
        f"| {len(audit.lost) + len(audit.repeated)} "
        f"| {len(audit.accepted_twice)} "
        f"| {audit.unknown:,} ({report.accepted.get('unknown', 0):,} accepted) "
        f"| {report.peak_rss_mib:.0f} MiB | {report.seconds:.0f} s |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.soak", description=__doc__)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fraction of each row count (at least 2,000)"
    )
    parser.add_argument("--workdir", type=Path, help="keep inputs, results and ledgers here")
    args = parser.parse_args(argv)

    problems: list[str] = []
    reports: list[Report] = []
    with tempfile.TemporaryDirectory(prefix="kaleyra-soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        print(HEADER, flush=True)
        for n, scenario in enumerate(SCENARIOS, 1):
            scaled = dataclasses.replace(scenario, rows=max(int(scenario.rows * args.scale), 2000))
            report = run_scenario(scaled, workdir / f"{n}")
            reports.append(report)
            print(table_line(report), flush=True)
            problems += [f"{scenario.name}: {p}" for p in report.audit.problems()]
            if report.faults_injected == 0:
                problems.append(f"{scenario.name}: no fault happened, so it proved nothing")
    small, large = reports[0].peak_rss_mib, reports[1].peak_rss_mib
    if large > FLAT_RSS_RATIO * small:
        problems.append(
            f"memory is not flat: {large:.0f} MiB at {reports[1].scenario.rows:,} rows, "
            f"{small:.0f} MiB at {reports[0].scenario.rows:,} (at most {FLAT_RSS_RATIO}x)"
        )
    for problem in problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    print(
        "\nrows lost: rows with no result line, or with more than one. duplicate sends: numbers "
        "the sandbox accepted more than once. unknown rows: rows whose request may have been "
        "accepted (in brackets, how many the sandbox did accept); never resent. The soak fails "
        f"on any lost row or duplicate send, a scenario without faults, or peak RSS at 1M rows "
        f"over {FLAT_RSS_RATIO}x that at 100k.",
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
