"""``python -m benchmarks`` (``make bench``): us against three peers, side by side, in one run.

    python -m benchmarks            # the default size: under 13 minutes on 2 cores
    python -m benchmarks --quick    # tiny, seconds (the smoke test runs this)
    python -m benchmarks --full     # every peer at full size (about half an hour)
    python -m benchmarks --rss-5m   # also: our peak RSS at 1M and at 5M rows
    python -m benchmarks --only bulk,otp --runs 5

Prints progress lines on stderr and the table on stdout; writes
``benchmarks/results/bench-<mode>.{json,md,png}`` (``rss-5m.json`` for the RSS step).
See benchmarks/README.md for what each scenario does and what the numbers mean.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson

from ._harness import (
    REPO,
    RunRecord,
    cpu_plan,
    progress,
    run_scenario,
    snapshot_code,
    warm_up,
)
from ._inputs import DATA_DIR, ensure_input
from ._plan import Mode, Scenario, scenarios_for
from ._redis_bench import REDIS_STEP, RedisRun, redis_markdown, redis_targets, run_redis_step
from ._report import environment, markdown, summarise, write_chart, write_json
from ._targets import evaluate_targets, rss_targets

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
RSS_STEP: Final = "rss5m"
RECEIPTS_STEP: Final = "receipts"
#: Two measuring runs at once would share the two pinned CPUs and both be wrong.
LOCK_PATH: Final = Path(tempfile.gettempdir()) / "kaleyra_async-benchmarks.lock"


@contextlib.contextmanager
def _one_at_a_time(enabled: bool) -> Iterator[None]:
    """Hold a machine-wide lock so that measuring runs never overlap (waits for the other)."""
    if not enabled:
        yield
        return
    with open(LOCK_PATH, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another benchmark run holds {LOCK_PATH}; waiting for it", file=sys.stderr)
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n".encode())
        fh.flush()
        yield


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny inputs, one round")
    size.add_argument("--full", action="store_true", help="every peer at full row counts")
    parser.add_argument("--runs", type=int, help="rounds per scenario (default 3; quick: 1)")
    parser.add_argument(
        "--only",
        help="comma-separated steps: bulk, otp, wan, limit200, limit2000, personalised, "
        "cpu_personalised, cpu_bulk, redis, rss5m, receipts",
    )
    parser.add_argument("--rss-5m", action="store_true", help="add the 1M-vs-5M RSS step")
    parser.add_argument("--rss-rows", default="1000000,5000000", help=argparse.SUPPRESS)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="input cache")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be >= 1")
    return args


def _rss_scenarios(small: int, large: int) -> tuple[Scenario, Scenario]:
    base = scenarios_for("default")[0]
    return (
        dataclasses.replace(base, key=f"rss-{small}", title="RSS", rows={"ours": small}),
        dataclasses.replace(
            base, key=f"rss-{large}", title="RSS", rows={"ours": large}, timeout_s=900.0
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # --quick asserts no timing (it is the smoke test), so it need not wait for a real run.
    with _one_at_a_time(enabled=not args.quick):
        return _main(args, argv)


def _main(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    mode: Mode = "quick" if args.quick else "full" if args.full else "default"
    rounds = args.runs or (1 if mode == "quick" else 3)
    all_scenarios = scenarios_for(mode)
    keys = {s.key for s in all_scenarios} | {RSS_STEP, REDIS_STEP, RECEIPTS_STEP}
    if args.only:
        steps = [k.strip() for k in args.only.split(",") if k.strip()]
        unknown = sorted(set(steps) - keys)
        if unknown:
            print(f"unknown step(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
    else:
        steps = [s.key for s in all_scenarios] + [REDIS_STEP] + ([RSS_STEP] if args.rss_5m else [])
        steps.append(RECEIPTS_STEP)
    scenarios = [s for s in all_scenarios if s.key in steps]
    cpus = cpu_plan()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    env = environment(REPO, cpus.describe())
    code_dir = args.data_dir / "code"
    env["code"] = snapshot_code(code_dir)
    print(
        f"benchmarks ({mode}, {rounds} round(s)): {env['nproc']} CPUs, {env['cpu_model']}, "
        f"Python {env['python']}; {env['pinning']}",
        file=sys.stderr,
    )

    t0 = time.monotonic()
    for scenario in scenarios:
        for count in set(scenario.rows.values()):
            ensure_input(scenario.kind, count, args.data_dir)
    print(f"inputs ready in {time.monotonic() - t0:.1f} s", file=sys.stderr)

    records: list[RunRecord] = []
    if scenarios:
        contenders = sorted({c for s in scenarios for c in s.contenders})
        warm_up(contenders, cpus=cpus, code_dir=code_dir, data_dir=args.data_dir)
    for scenario in scenarios:
        print(f"== {scenario.title}: {scenario.what}", file=sys.stderr)
        records += run_scenario(
            scenario,
            rounds=rounds,
            cpus=cpus,
            code_dir=code_dir,
            data_dir=args.data_dir,
            on_run=progress,
        )

    rows = [row for s in scenarios for row in summarise(s, records)]
    targets = evaluate_targets(rows, records)

    if RSS_STEP in steps:
        small, large = (int(x) for x in args.rss_rows.split(","))
        rss_small, rss_large = _rss_scenarios(small, large)
        print(f"== RSS step: ours at {small:,} and {large:,} bulk rows", file=sys.stderr)
        for count in (small, large):
            ensure_input("bulk", count, args.data_dir)
        rss_records: list[RunRecord] = []
        for rnd in range(1, rounds + 1):
            for s in (rss_small, rss_large):
                rss_records += run_scenario(
                    s, rounds=1, first_round=rnd, cpus=cpus, code_dir=code_dir,
                    data_dir=args.data_dir, on_run=progress,
                )  # fmt: skip
        rss_rows = [row for s in (rss_small, rss_large) for row in summarise(s, rss_records)]
        rss_t = rss_targets(rss_records, small, large)
        rss_problems = [p for r in rss_records for p in r.problems]
        if rss_problems:
            rss_t = [dataclasses.replace(t, passed=False) for t in rss_t]
        targets += rss_t
        write_json(
            args.results_dir / "rss-5m.json",
            meta={"mode": "rss-5m", "started": started_at, "environment": env,
                  "command": "python -m benchmarks " + " ".join(argv or sys.argv[1:])},
            scenarios=(rss_small, rss_large),
            rows=rss_rows,
            targets=rss_t,
            records=rss_records,
        )  # fmt: skip
        records += rss_records
        rows += rss_rows

    redis_runs: list[RedisRun] = []
    if REDIS_STEP in steps:
        print(
            f"== {REDIS_STEP}: queued mode, 1, 2 and 4 workers, one shared limit", file=sys.stderr
        )
        redis_runs = run_redis_step(
            mode, rounds=rounds, cpus=cpus, code_dir=code_dir, data_dir=args.data_dir
        )
        targets += redis_targets(redis_runs)

    receipts_table = ""
    if RECEIPTS_STEP in steps:
        from ._receipts import run_receipts_step

        figures = run_receipts_step(mode, args.data_dir, (cpus.client, cpus.sandbox))
        receipts_table = "\n" + figures.table()
        args.results_dir.mkdir(parents=True, exist_ok=True)
        (args.results_dir / f"receipts-{mode}.json").write_bytes(
            orjson.dumps(
                {"started": started_at, "environment": env, **dataclasses.asdict(figures),
                 "share_of_ceiling": figures.share_of_ceiling},
                option=orjson.OPT_INDENT_2,
            )
        )  # fmt: skip

    duration_s = time.monotonic() - started
    name = f"bench-{mode}" + ("" if not args.only else "-" + "+".join(steps))
    table = (markdown(rows, targets) if rows or targets else "") + receipts_table
    if redis_runs:
        table += "\n" + redis_markdown(redis_runs)
    if mode == "quick":
        # Its inputs last well under a second a run: start-up and the first second's burst
        # decide the figures, so the verdicts say nothing about the targets.
        table += (
            "\n--quick checks that the harness runs end to end; its runs are too short for the "
            "figures or the verdicts above to mean anything. Measure with `make bench`.\n"
        )
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    code = f"kaleyra_async at {env['code']}"
    header = (
        f"{command.strip()}  ({started_at}, {duration_s:.0f} s; {code}; {env['nproc']} CPUs, "
        f"{env['cpu_model']}, Python {env['python']}; {env['pinning']})\n\n"
    )
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{name}.md").write_text(header + table, encoding="utf-8")
    write_json(
        args.results_dir / f"{name}.json",
        meta={
            "mode": mode,
            "rounds": rounds,
            "command": command.strip(),
            "started": started_at,
            "duration_s": duration_s,
            "environment": env,
        },
        scenarios=scenarios,
        rows=rows,
        targets=targets,
        records=records,
    )
    if redis_runs:
        (args.results_dir / f"{name}-redis.json").write_bytes(
            orjson.dumps([dataclasses.asdict(r) for r in redis_runs], option=orjson.OPT_INDENT_2)
        )
    chart = write_chart(args.results_dir / f"{name}.png", rows, header.strip().split("  (")[0])
    print()
    print(header + table)
    written = [f"{name}.md", f"{name}.json"] + ([f"{name}.png"] if chart else [])
    print(f"wrote {', '.join(str(args.results_dir / w) for w in written)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
