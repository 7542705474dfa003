"""The benchmark targets (benchmarks/_targets.py): each verdict follows the figures it names.

Records are built by hand, so no benchmark runs here; every case sits on one side of a goal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from benchmarks._harness import RunRecord
from benchmarks._plan import scenarios_for
from benchmarks._report import markdown, summarise
from benchmarks._run import ChildRun, ResultsCheck
from benchmarks._targets import Target, evaluate_targets, rss_targets

SCENARIOS = {s.key: s for s in scenarios_for("quick")}


def run(
    scenario: str,
    contender: str = "ours",
    *,
    round_: int = 1,
    rows: int | None = None,
    wall_s: float = 1.0,
    cpu_s: float = 1.0,
    rss_mb: float = 50.0,
    stats: Mapping[str, Any] | None = None,
    problems: tuple[str, ...] = (),
) -> RunRecord:
    """One run in which every row was sent; figures not given are unremarkable."""
    n = SCENARIOS[scenario].rows[contender] if rows is None else rows
    child = ChildRun(
        exit_code=0, wall_s=wall_s, cpu_s=cpu_s, max_rss_mb=rss_mb, timed_out=False, stderr_tail=""
    )
    check = ResultsCheck(lines=n, sent=n, distinct_rows=n, rows_exact=True)
    return RunRecord(
        scenario=scenario,
        contender=contender,
        round=round_,
        rows=n,
        child=child,
        check=check,
        stats=stats or {},
        problems=problems,
    )


def targets_of(records: Sequence[RunRecord]) -> dict[str, Target]:
    """The targets of ``records``, summarised as the harness does, by name."""
    ran = {r.scenario for r in records}
    rows = [row for key, s in SCENARIOS.items() if key in ran for row in summarise(s, records)]
    return {t.name: t for t in evaluate_targets(rows, records)}


def bulk_rounds(ours_wall_s: float) -> list[RunRecord]:
    """Three paired bulk rounds whose ratios to peer (a) are 0.5x, ``1 / ours_wall_s`` and 2x."""
    walls = {1: 2.0, 2: ours_wall_s, 3: 0.5}
    ours = [run("bulk", round_=r, wall_s=wall_s) for r, wall_s in walls.items()]
    return ours + [run("bulk", "aiohttp", round_=r) for r in walls]


def personalised(requests: int, slack: float = 1.0) -> list[RunRecord]:
    """One personalised run of 2,000 rows in ``slack`` times what its requests take at 166/s."""
    wall_s = slack * requests / 166
    return [run("personalised", wall_s=wall_s, stats={"accepted_requests": requests})]


def wan(accepted: int) -> list[RunRecord]:
    """One WAN run whose arrivals span half a second of the sandbox's clock."""
    return [run("wan", stats={"accepted_requests": accepted, "active_s": 0.5})]


def cpu(personalised_cpu_s: float) -> list[RunRecord]:
    """Personalised and bulk CPU runs of 2,000 rows, bulk taking 1 CPU-second."""
    return [run("cpu_personalised", cpu_s=personalised_cpu_s), run("cpu_bulk", cpu_s=1.0)]


#: Each target once: its name, its goal, records just meeting it and records just missing it.
#: The mean of the bulk rounds' ratios would pass both: the verdict is the median's.
THRESHOLDS = [
    ("bulk recipients/s vs (a) aiohttp", ">= 0.8x", bulk_rounds(1.25), bulk_rounds(1.3)),
    ("WAN accepted req/s (server clock)", ">= 475 (95% of 500)", wan(239), wan(238)),
    ("personalised: requests", "<= 20 for 2,000 rows", personalised(20), personalised(21)),
    (
        "personalised: wall time",
        "<= 1.2x requests / 166",
        personalised(20, slack=1.19),
        personalised(20, slack=1.21),
    ),
    ("CPU /100k rows: personalised vs bulk", "<= 1.2x", cpu(1.2), cpu(1.3)),
]


@pytest.mark.parametrize(
    ("records", "name", "goal", "verdict"),
    [
        pytest.param(records, name, goal, verdict, id=f"{name}: {verdict}")
        for name, goal, meets, misses in THRESHOLDS
        for records, verdict in ((meets, "PASS"), (misses, "FAIL"))
    ],
)
def test_each_target_passes_at_its_goal_and_fails_just_past_it(
    records: list[RunRecord], name: str, goal: str, verdict: str
) -> None:
    """Every ratio, rate and count target compares its figure with its stated goal."""
    target = targets_of(records)[name]
    assert (target.goal, target.verdict) == (goal, verdict)


def test_a_wrong_run_fails_a_target_however_fast() -> None:
    """A run whose results do not add up fails the target and is counted in the measurement."""
    records = [
        run("bulk", round_=1, wall_s=0.5),
        run("bulk", round_=2, wall_s=0.5, problems=("results: 1 line missing",)),
        *(run("bulk", "aiohttp", round_=r) for r in (1, 2)),
    ]
    target = targets_of(records)["bulk recipients/s vs (a) aiohttp"]
    assert target.verdict == "FAIL"
    assert target.measured.endswith("; 1 wrong run(s)")


def test_targets_of_scenarios_that_did_not_run_are_left_out_and_a_missing_peer_is_na() -> None:
    """Only the scenarios that ran get targets; one whose peer did not run says n/a, in the
    table too."""
    records = [run("bulk"), run("bulk", "aiohttp")]
    targets = targets_of(records)
    assert list(targets) == [
        "bulk recipients/s vs (a) aiohttp",
        "bulk recipients/s vs (b) httpx",
        "peak RSS, ours, 2,000 rows",
    ]
    assert targets["bulk recipients/s vs (b) httpx"].verdict == "n/a"
    table = markdown(summarise(SCENARIOS["bulk"], records), list(targets.values()))
    assert "| bulk recipients/s vs (b) httpx | >= 5x | not run | **n/a** |" in table


def test_limiter_busiest_second_fails_when_any_run_exceeds_the_configured_rate() -> None:
    """The busiest sliding second is judged by the worst run; the mean rate by the median."""
    records = [
        run("limit200", round_=1, stats={"max_requests_in_1s": 190, "mean_rate_per_s": 197.0}),
        run("limit200", round_=2, stats={"max_requests_in_1s": 201, "mean_rate_per_s": 199.0}),
    ]
    targets = targets_of(records)
    busiest = targets["limiter 200/s: busiest sliding 1 s"]
    assert (busiest.measured, busiest.verdict) == ("max 201 (median 195.5)", "FAIL")
    assert targets["limiter 200/s: mean rate"].verdict == "PASS"


@pytest.mark.parametrize(
    ("large_mb", "verdicts"),
    [
        pytest.param(110.0, ["PASS", "PASS"], id="10%-more"),
        pytest.param(111.0, ["PASS", "FAIL"], id="11%-more"),
        pytest.param(151.0, ["FAIL", "FAIL"], id="over-150-MB"),
    ],
)
def test_rss_step_bounds_the_peak_and_its_growth(large_mb: float, verdicts: list[str]) -> None:
    """--rss-5m: the peak at the large size is at most 150 MB and within 10% of the small one."""
    records = [
        run("bulk", rows=2_000, rss_mb=100.0),
        run("bulk", rows=5_000_000, rss_mb=large_mb),
    ]
    targets = rss_targets(records, 2_000, 5_000_000)
    assert [t.verdict for t in targets] == verdicts


def test_rss_step_without_both_sizes_has_no_targets() -> None:
    """Without a run at each size there is nothing to compare, so no verdict."""
    assert rss_targets([run("bulk", rows=2_000)], 2_000, 5_000_000) == []
