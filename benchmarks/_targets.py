"""The fixed targets a benchmark run is checked against, from the same figures the tables show:
each is PASS or FAIL as measured (n/a when its scenario did not run), never adjusted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ._harness import RunRecord
from ._report import Row, run_values
from ._stats import Spread, paired_ratios, spread

__all__ = ["Target", "evaluate_targets", "rss_targets"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One fixed check: its goal, the measured value and whether it was met."""

    name: str
    goal: str
    measured: str
    #: None: not measured in this run.
    passed: bool | None = None

    @property
    def verdict(self) -> str:
        return "n/a" if self.passed is None else ("PASS" if self.passed else "FAIL")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "goal": self.goal,
            "measured": self.measured,
            "verdict": self.verdict,
        }


def _find(rows: Sequence[Row], scenario: str, contender: str) -> Row | None:
    for row in rows:
        if row.scenario.key == scenario and row.contender == contender:
            return row
    return None


def _ratio_target(row: Row | None, goal: float, figure: str, name: str) -> Target:
    """Ours against peer (a) on ``figure``, from the per-round ratios."""
    if row is None:
        return Target(name=name, goal=f">= {goal:g}x", measured="not run", passed=None)
    ratios = row.vs_baseline_recipients if figure == "recipients_per_s" else row.vs_baseline
    if ratios is None:
        return Target(name=name, goal=f">= {goal:g}x", measured="no paired runs", passed=None)
    correct = row.ok_runs == row.runs
    measured = f"{ratios.median:.2f}x (runs {ratios.low:.2f}-{ratios.high:.2f})"
    if not correct:
        measured += f"; {row.runs - row.ok_runs} wrong run(s)"
    return Target(
        name=name, goal=f">= {goal:g}x", measured=measured, passed=ratios.median >= goal and correct
    )


def _paired_vs(
    records: Sequence[RunRecord], scenario: str, other: str, figure: str
) -> Spread | None:
    ours = sorted(
        (r for r in records if r.scenario == scenario and r.contender == "ours"),
        key=lambda r: r.round,
    )
    theirs = sorted(
        (r for r in records if r.scenario == scenario and r.contender == other),
        key=lambda r: r.round,
    )
    return spread(paired_ratios(run_values(ours, figure), run_values(theirs, figure)))


_NEEDS: Final[Mapping[str, frozenset[str]]] = {
    "bulk recipients/s vs (a) aiohttp": frozenset({"bulk"}),
    "bulk recipients/s vs (b) httpx": frozenset({"bulk"}),
    "OTP requests/s vs (a) aiohttp": frozenset({"otp"}),
    "WAN accepted req/s": frozenset({"wan"}),
    "personalised: requests": frozenset({"personalised"}),
    "personalised: wall time": frozenset({"personalised"}),
    "CPU /100k rows: personalised vs bulk": frozenset({"cpu_personalised", "cpu_bulk"}),
}

#: Nodes per /sms/json request at our default (``dispatch.json_batch_size``).
_NODES_PER_REQUEST: Final = 100


def _personalised_targets(rows: Sequence[Row], records: Sequence[RunRecord]) -> list[Target]:
    """Requests and wall time of ours at the 166/s limit; CPU per row against bulk's."""
    targets: list[Target] = []
    runs = [r for r in records if r.scenario == "personalised" and r.contender == "ours"]
    if runs:
        row = _find(rows, "personalised", "ours")
        rate = row.scenario.sandbox_rate_per_s if row else 0
        most = -(-runs[0].rows // _NODES_PER_REQUEST)
        made = [r.requests for r in runs]
        correct = all(r.ok for r in runs)
        targets.append(
            Target(
                name="personalised: requests",
                goal=f"<= {most:,} for {runs[0].rows:,} rows",
                measured=f"{min(made):,.0f}-{max(made):,.0f}",
                passed=max(made) <= most and correct,
            )
        )
        slack = [r.child.wall_s / (r.requests / rate) for r in runs if r.requests and rate]
        if slack:
            s = spread(slack)
            assert s is not None
            targets.append(
                Target(
                    name="personalised: wall time",
                    goal=f"<= 1.2x requests / {rate}",
                    measured=f"{s.median:.2f}x (runs {s.low:.2f}-{s.high:.2f})",
                    passed=s.median <= 1.2 and correct,
                )
            )
    mine = sorted(
        (r for r in records if r.scenario == "cpu_personalised" and r.contender == "ours"),
        key=lambda r: r.round,
    )
    bulk = sorted(
        (r for r in records if r.scenario == "cpu_bulk" and r.contender == "ours"),
        key=lambda r: r.round,
    )
    ratio = spread(
        paired_ratios([r.cpu_s_per_100k for r in mine], [r.cpu_s_per_100k for r in bulk])
    )
    if ratio is not None:
        targets.append(
            Target(
                name="CPU /100k rows: personalised vs bulk",
                goal="<= 1.2x",
                measured=f"{ratio.median:.2f}x (runs {ratio.low:.2f}-{ratio.high:.2f})",
                passed=ratio.median <= 1.2 and all(r.ok for r in mine + bulk),
            )
        )
    return targets


def evaluate_targets(rows: Sequence[Row], records: Sequence[RunRecord]) -> list[Target]:
    """The brief's targets, from this run's figures (only those of scenarios that ran)."""
    targets: list[Target] = []
    bulk = _find(rows, "bulk", "ours")
    targets.append(_ratio_target(bulk, 0.8, "recipients_per_s", "bulk recipients/s vs (a) aiohttp"))
    vs_httpx = _paired_vs(records, "bulk", "httpx", "recipients_per_s")
    if bulk is None or vs_httpx is None:
        no_run = Target(name="bulk recipients/s vs (b) httpx", goal=">= 5x", measured="not run")
        targets.append(no_run)
    else:
        targets.append(
            Target(
                name="bulk recipients/s vs (b) httpx",
                goal=">= 5x",
                measured=f"{vs_httpx.median:.2f}x (runs {vs_httpx.low:.2f}-{vs_httpx.high:.2f})",
                passed=vs_httpx.median >= 5 and bulk.ok_runs == bulk.runs,
            )
        )
    targets.append(
        _ratio_target(
            _find(rows, "otp", "ours"),
            0.6,
            "requests_per_s",
            "OTP requests/s vs (a) aiohttp",
        )
    )
    wan = _find(rows, "wan", "ours")
    rate = wan.fig("server_rate_per_s") if wan else None
    if wan is None or rate is None:
        targets.append(Target(name="WAN accepted req/s", goal=">= 95%", measured="not run"))
    else:
        limit = wan.scenario.sandbox_rate_per_s
        targets.append(
            Target(
                name="WAN accepted req/s (server clock)",
                goal=f">= {0.95 * limit:g} (95% of {limit})",
                measured=f"{rate.median:.1f} (runs {rate.low:.1f}-{rate.high:.1f})",
                passed=rate.median >= 0.95 * limit and wan.ok_runs == wan.runs,
            )
        )
    for key in ("limit200", "limit2000"):
        row = _find(rows, key, "ours")
        if row is None:
            continue
        configured = row.scenario.client_rate_per_s
        busiest = row.fig("max_in_1s")
        mean = row.fig("server_mean_rate_per_s")
        if busiest is None or mean is None:
            continue
        targets.append(
            Target(
                name=f"limiter {configured:g}/s: busiest sliding 1 s",
                goal=f"<= {configured:g} in every run",
                measured=f"max {busiest.high:g} (median {busiest.median:g})",
                passed=busiest.high <= configured and row.ok_runs == row.runs,
            )
        )
        targets.append(
            Target(
                name=f"limiter {configured:g}/s: mean rate",
                goal=f">= {0.98 * configured:g} (98%)",
                measured=f"{mean.median:.1f} (runs {mean.low:.1f}-{mean.high:.1f})",
                passed=mean.median >= 0.98 * configured and row.ok_runs == row.runs,
            )
        )
    targets += _personalised_targets(rows, records)
    ran = {row.scenario.key for row in rows}
    targets = [t for t in targets if t.measured != "not run" or not ran.isdisjoint(_NEEDS[t.name])]
    if bulk is not None and (rss := bulk.fig("max_rss_mb")) is not None:
        targets.append(
            Target(
                name=f"peak RSS, ours, {bulk.rows:,} rows",
                goal="<= 150 MB",
                measured=f"{rss.high:.1f} MB max (median {rss.median:.1f})",
                passed=rss.high <= 150,
            )
        )
    return targets


def rss_targets(records: Sequence[RunRecord], small: int, large: int) -> list[Target]:
    """Peak RSS at ``large`` rows within 10% of ``small`` rows (the --rss-5m step)."""

    def peak(rows: int) -> Spread | None:
        return spread([r.child.max_rss_mb for r in records if r.rows == rows])

    a, b = peak(small), peak(large)
    if a is None or b is None:
        return []
    return [
        Target(
            name=f"peak RSS, ours, {large:,} rows",
            goal="<= 150 MB",
            measured=f"{b.high:.1f} MB max (median {b.median:.1f})",
            passed=b.high <= 150,
        ),
        Target(
            name=f"peak RSS {large:,} vs {small:,} rows",
            goal="within 10%",
            measured=f"{b.median:.1f} vs {a.median:.1f} MB: {b.median / a.median - 1:+.1%}",
            passed=b.median <= 1.10 * a.median,
        ),
    ]
