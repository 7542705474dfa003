"""The benchmark harness: pure helpers, input generation, and one ``--quick`` run end to end.

No timing is asserted anywhere: the smoke test checks that every contender wrote one result line
per row, that the sandbox accepted exactly those rows, and that the table and JSON exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import phonenumbers
import pytest

REPO = Path(__file__).resolve().parent.parent
if (
    str(REPO) not in sys.path
):  # benchmarks/ is a directory of the checkout, not an installed package
    sys.path.insert(0, str(REPO))

from benchmarks._harness import CpuPlan, realtime_permitted  # noqa: E402
from benchmarks._inputs import ensure_input, numbers  # noqa: E402
from benchmarks._plan import CONTENDERS, scenarios_for  # noqa: E402
from benchmarks._redis_bench import RedisRun, redis_markdown  # noqa: E402
from benchmarks._run import check_results  # noqa: E402
from benchmarks._stats import paired_ratios, spread  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([3.0], (3.0, 3.0, 3.0, 1), id="one-run"),
        pytest.param([5.0, 1.0, 3.0], (3.0, 1.0, 5.0, 3), id="odd"),
        pytest.param([4.0, 1.0, 2.0, 3.0], (2.5, 1.0, 4.0, 4), id="even-averages-middle"),
    ],
)
def test_spread_is_median_with_min_and_max(
    values: list[float], expected: tuple[float, float, float, int]
) -> None:
    """A spread is the median of the runs with their min, max and count."""
    s = spread(values)
    assert s is not None
    assert (s.median, s.low, s.high, s.n) == expected


def test_spread_of_nothing_is_none() -> None:
    """No runs give no figure rather than a zero."""
    assert spread([]) is None


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        pytest.param([2.0, 9.0], [1.0, 3.0], [2.0, 3.0], id="round-by-round"),
        pytest.param([2.0, None, 4.0], [1.0, 5.0, 2.0], [2.0, 2.0], id="failed-round-skipped"),
        pytest.param([2.0, 4.0], [0.0, 2.0], [2.0], id="zero-divisor-skipped"),
        pytest.param([1.0, 1.0, 1.0], [1.0], [1.0], id="unpaired-rounds-dropped"),
    ],
)
def test_ratios_pair_runs_by_round(
    ours: list[float | None], theirs: list[float | None], expected: list[float]
) -> None:
    """Ratios divide run i by run i of the peer, never a run of another round."""
    assert paired_ratios(ours, theirs) == expected


def test_numbers_are_unique_valid_deterministic_e164() -> None:
    """Generated numbers are unique, valid Indian numbers in E.164, the same on every call."""
    first = list(numbers(2_000))
    assert first == list(numbers(2_000))
    assert len(set(first)) == len(first)
    for n in first[:200]:
        parsed = phonenumbers.parse(n)
        assert phonenumbers.is_valid_number(parsed)
        assert phonenumbers.region_code_for_number(parsed) == "IN"
        assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == n


@pytest.mark.parametrize(
    ("kind", "header"),
    [
        pytest.param("bulk", "to", id="bulk"),
        pytest.param("otp", "to,type,body", id="otp"),
        pytest.param("txn1", "to,body", id="txn1"),
    ],
)
def test_input_file_has_header_and_rows(kind: Any, header: str, tmp_path: Path) -> None:
    """An input file has its header and exactly the requested data rows, and is reused."""
    path = ensure_input(kind, 50, tmp_path)
    lines = path.read_text().splitlines()
    assert lines[0] == header
    assert len(lines) == 51
    assert ensure_input(kind, 50, tmp_path) == path
    assert not list(tmp_path.glob("*.tmp"))


def test_check_results_counts_lines_sent_and_rows(tmp_path: Path) -> None:
    """The results check counts lines, sent lines and whether rows are exactly 1..N."""
    path = tmp_path / "r.ndjson"
    path.write_bytes(
        b'{"row":1,"status":"sent"}\n{"row":2,"status": "sent"}\n{"row":2,"status":"failed"}\n'
    )
    check = check_results(path, 3)
    assert (check.lines, check.sent, check.distinct_rows, check.rows_exact) == (3, 2, 2, False)
    assert check_results(tmp_path / "missing", 1).lines == 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--results-dir", str(out),
         "--data-dir", str(out / "data")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out, orjson.loads((out / "bench-quick.json").read_bytes())


@pytest.mark.timeout(150)
def test_quick_run_writes_table_json_and_chart(quick_run: tuple[Path, dict[str, Any]]) -> None:
    """--quick writes the Markdown table, the JSON file and the chart."""
    out, doc = quick_run
    table = (out / "bench-quick.md").read_text()
    for contender in CONTENDERS.values():
        assert contender.label in table
    assert "| target |" in table
    assert "too short for the figures or the verdicts" in table  # not mistaken for a result
    assert (out / "bench-quick.png").stat().st_size > 0
    assert doc["targets"]
    assert doc["environment"]["nproc"] >= 1


@pytest.mark.timeout(150)
def test_quick_run_every_contender_one_line_per_row(
    quick_run: tuple[Path, dict[str, Any]],
) -> None:
    """Every planned run happened and wrote one result line per input row, all accepted."""
    _, doc = quick_run
    runs = {(r["scenario"], r["contender"]): r for r in doc["runs"]}
    for scenario in scenarios_for("quick"):
        for contender, rows in scenario.rows.items():
            run = runs[(scenario.key, contender)]
            assert run["problems"] == [], (scenario.key, contender, run["problems"])
            assert run["results_lines"] == rows
            assert run["results_sent"] == rows
            assert run["sandbox"]["accepted_recipients"] == rows


def test_quick_run_measures_receipts(quick_run: tuple[Path, dict[str, Any]]) -> None:
    """--quick runs the receipts step: both servers answered, report ran at both sizes."""
    out, _ = quick_run
    figures = orjson.loads((out / "receipts-quick.json").read_bytes())
    assert figures["ingest_per_s"] > 0 and figures["ceiling_per_s"] > 0
    assert figures["ingest_per_cpu_s"] > 0 and figures["ceiling_per_cpu_s"] > 0
    assert figures["ingest_errors"] == 0
    assert [run["rows"] for run in figures["report"]] == [5_000, 20_000]
    assert "durable / ceiling" in (out / "bench-quick.md").read_text()


def test_redis_table_shows_the_tightest_span_of_limit_plus_one_arrivals() -> None:
    """The queued-mode table names the shortest span of 2,001 arrivals over a worker count's
    rounds (how much of the limiter's margin the runs left) and the silence before it (a stall's
    bunch), or a dash if none was measured."""

    def run(workers: int, rnd: int, span: float | None, silence: float | None = None) -> RedisRun:
        return RedisRun(
            workers=workers, round=rnd, rows=10, wall_s=1.0, accepted=10,
            accepted_rate_per_s=1960.0, busiest_1s=2000, refused_429=0, problems=(),
            tightest_span_s=span, silence_before_tightest_s=silence,
        )  # fmt: skip

    runs = [run(1, 1, 1.0121, 0.0041), run(1, 2, 1.0031, 0.0425), run(1, 3, None), run(2, 1, None)]
    table = redis_markdown(runs)
    assert "shortest span of 2,001 arrivals" in table and "silence before that span" in table
    one, two = (line for line in table.splitlines() if line.startswith(("| 1 |", "| 2 |")))
    assert "| 1.0031 s | 42.5 ms |" in one and "| – | – |" in two


def test_probing_real_time_priority_leaves_the_harness_at_normal_priority() -> None:
    """The probe tries real-time priority on the harness itself and undoes it; the report says
    which priority the sandbox gets."""
    before = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    permitted = realtime_permitted()
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before
    described = CpuPlan(sandbox=(0,), client=(1,), realtime=permitted).describe()
    assert ("the sandbox at real-time priority" in described) is permitted
    assert ("real-time not permitted here" in described) is not permitted


def test_the_real_time_probe_never_changes_the_harness_own_priority(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe tries real-time priority on a throwaway child, never on the harness: even when
    granting it works and undoing it would fail, the harness keeps its own scheduling."""
    calls: list[int] = []

    def setscheduler(pid: int, policy: int, param: os.sched_param) -> None:
        calls.append(pid)
        if len(calls) > 1:
            raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", setscheduler)
    assert realtime_permitted() is True
    assert calls and all(pid not in (0, os.getpid()) for pid in calls)
