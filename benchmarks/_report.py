"""From run records to figures, the Markdown table, the JSON file and the chart.

Every figure is the median of a contender's runs in a scenario, with min and max; a ratio to
peer (a) is the median of the per-round ratios (see :mod:`benchmarks._stats`). The targets
checked against the same figures are in :mod:`benchmarks._targets`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from ._harness import RunRecord
from ._plan import CONTENDERS, Scenario
from ._stats import Spread, paired_ratios, spread

if TYPE_CHECKING:
    from ._targets import Target

__all__ = [
    "Row",
    "environment",
    "markdown",
    "run_values",
    "summarise",
    "write_chart",
    "write_json",
]

BASELINE: Final = "aiohttp"
_METRICS: Final = (
    "recipients_per_s",
    "requests",
    "requests_per_s",
    "server_rate_per_s",
    "server_mean_rate_per_s",
    "max_in_1s",
    "cpu_s_per_100k",
    "max_rss_mb",
    "wall_s",
    "other_load_cores",
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One contender in one scenario: its runs summarised."""

    scenario: Scenario
    contender: str
    rows: int
    runs: int
    ok_runs: int
    problems: tuple[str, ...]
    figures: Mapping[str, Spread]
    #: Per-round ratio to peer (a) of the scenario's headline figure, summarised.
    vs_baseline: Spread | None
    #: Per-round ratio to peer (a) of recipients/s (the bulk target's figure).
    vs_baseline_recipients: Spread | None

    def fig(self, name: str) -> Spread | None:
        return self.figures.get(name)


def run_values(records: Sequence[RunRecord], name: str) -> list[float | None]:
    """Figure ``name`` of each run, in the records' order (None where a run lacks it)."""
    out: list[float | None] = []
    for r in records:
        if name == "wall_s":
            out.append(r.child.wall_s)
        elif name == "max_rss_mb":
            out.append(r.child.max_rss_mb)
        elif name == "other_load_cores":
            out.append(r.other_load_cores)
        else:
            out.append(r.metric(name))
    return out


def summarise(scenario: Scenario, records: Sequence[RunRecord]) -> list[Row]:
    """One :class:`Row` per contender of ``scenario``, in the scenario's contender order."""
    by_contender: dict[str, list[RunRecord]] = {key: [] for key in scenario.contenders}
    for record in records:
        if record.scenario == scenario.key:
            by_contender.setdefault(record.contender, []).append(record)
    for runs in by_contender.values():
        runs.sort(key=lambda r: r.round)
    base = by_contender.get(BASELINE, [])
    rows = []
    for key, runs in by_contender.items():
        figures = {}
        for name in _METRICS:
            s = spread([v for v in run_values(runs, name) if v is not None])
            if s is not None:
                figures[name] = s
        ratio = ratio_recipients = None
        if base and key != BASELINE:
            ratio = spread(
                paired_ratios(
                    run_values(runs, scenario.headline), run_values(base, scenario.headline)
                )
            )
            ratio_recipients = spread(
                paired_ratios(
                    run_values(runs, "recipients_per_s"), run_values(base, "recipients_per_s")
                )
            )
        problems = tuple(sorted({p for r in runs for p in r.problems}))
        rows.append(
            Row(
                scenario=scenario,
                contender=key,
                rows=scenario.rows[key],
                runs=len(runs),
                ok_runs=sum(r.ok for r in runs),
                problems=problems,
                figures=figures,
                vs_baseline=ratio,
                vs_baseline_recipients=ratio_recipients,
            )
        )
    return rows


# -- text ---------------------------------------------------------------------------------------


def _fmt(s: Spread | None, digits: int = 0, unit: str = "") -> str:
    if s is None:
        return "–"
    f = f"{{:,.{digits}f}}"
    if s.n == 1 or s.low == s.high:
        return f.format(s.median) + unit
    return f"{f.format(s.median)}{unit} ({f.format(s.low)}–{f.format(s.high)})"


def _ratio(s: Spread | None) -> str:
    if s is None:
        return "–"
    return f"{s.median:.2f}x ({s.low:.2f}–{s.high:.2f})" if s.n > 1 else f"{s.median:.2f}x"


def _load(s: Spread | None) -> str:
    return "–" if s is None else f"{s.high:.2f}"


def markdown(rows: Sequence[Row], targets: Sequence[Target]) -> str:
    """The main table and the targets table, as Markdown (readable in a terminal too)."""
    out = [
        "| scenario | contender | rows/run | runs ok | recipients/s | requests/s (wall) | "
        "server req/s · busiest 1 s | CPU s /100k rcpt | peak RSS MB | × (a), headline | "
        "other load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    full_rows: dict[str, int] = {}
    for row in rows:
        full_rows[row.scenario.key] = max(full_rows.get(row.scenario.key, 0), row.rows)
    for row in rows:
        scaled = row.rows < full_rows[row.scenario.key]
        rows_text = f"{row.rows:,}" + (" (scaled)" if scaled else "")
        ok = f"{row.ok_runs}/{row.runs}" + ("" if row.ok_runs == row.runs else " WRONG")
        server = row.fig("server_rate_per_s")
        busiest = row.fig("max_in_1s")
        server_text = (
            "–" if server is None else f"{_fmt(server)} · {busiest.high if busiest else 0:g}"
        )
        out.append(
            f"| {row.scenario.key} | {CONTENDERS[row.contender].label} | {rows_text} | {ok} | "
            f"{_fmt(row.fig('recipients_per_s'))} | {_fmt(row.fig('requests_per_s'))} | "
            f"{server_text} | {_fmt(row.fig('cpu_s_per_100k'), 2)} | "
            f"{_fmt(row.fig('max_rss_mb'), 1)} | {_ratio(row.vs_baseline)} | "
            f"{_load(row.fig('other_load_cores'))} |"
        )
    out += ["", "| target | goal | measured | verdict |", "|---|---|---|---|"]
    out += [f"| {t.name} | {t.goal} | {t.measured} | **{t.verdict}** |" for t in targets]
    problems = [
        f"- {row.scenario.key} / {CONTENDERS[row.contender].label}: {p}"
        for row in rows
        for p in row.problems
    ]
    if problems:
        out += ["", "Runs whose numbers do not add up (their figures are still shown above):"]
        out += problems
    return "\n".join(out) + "\n"


# -- files --------------------------------------------------------------------------------------


def _git_commit(repo: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(repo: Path, pinning: str) -> dict[str, Any]:
    """The machine and the software, for the JSON file and the README."""
    versions: dict[str, str | None] = {}
    for name in ("aiohttp", "httpx", "requests", "phonenumbers", "orjson", "httptools", "anyio"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pinning": pinning,
        "git_head_at_start": _git_commit(repo),
        "versions": versions,
    }


def write_json(
    path: Path,
    *,
    meta: Mapping[str, Any],
    scenarios: Sequence[Scenario],
    rows: Sequence[Row],
    targets: Sequence[Target],
    records: Sequence[RunRecord],
) -> None:
    """Everything measured: environment, per-run records, summaries, targets."""
    doc = {
        **meta,
        "scenarios": [
            {
                "key": s.key,
                "title": s.title,
                "what": s.what,
                "input": s.kind,
                "sandbox_rate_per_s": s.sandbox_rate_per_s,
                "sandbox_latency_ms": s.sandbox_latency_ms,
                "client_rate_per_s": s.client_rate_per_s,
                "rows": dict(s.rows),
            }
            for s in scenarios
        ],
        "summary": [
            {
                "scenario": r.scenario.key,
                "contender": r.contender,
                "label": CONTENDERS[r.contender].label,
                "rows": r.rows,
                "runs": r.runs,
                "ok_runs": r.ok_runs,
                "problems": list(r.problems),
                "figures": {k: v.as_dict() for k, v in r.figures.items()},
                "vs_aiohttp_headline": r.vs_baseline.as_dict() if r.vs_baseline else None,
                "vs_aiohttp_recipients": (
                    r.vs_baseline_recipients.as_dict() if r.vs_baseline_recipients else None
                ),
            }
            for r in rows
        ],
        "targets": [t.as_dict() for t in targets],
        "runs": [r.as_dict() for r in records],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))


_PANELS: Final = (
    ("bulk", "recipients_per_s", "Bulk: recipients/s"),
    ("otp", "requests_per_s", "OTP: requests/s"),
    ("wan", "server_rate_per_s", "WAN (limit 500): accepted req/s"),
)


def write_chart(path: Path, rows: Sequence[Row], title: str) -> bool:
    """A bar chart of the headline figures (median, min-max whiskers); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [p for p in _PANELS if any(r.scenario.key == p[0] for r in rows)]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    colors = {"ours": "#1f77b4", "aiohttp": "#2ca02c", "httpx": "#ff7f0e", "requests": "#7f7f7f"}
    for ax, (key, figure, label) in zip(axes[0], panels, strict=True):
        mine = [r for r in rows if r.scenario.key == key and r.fig(figure) is not None]
        full = max((r.rows for r in mine), default=0)
        names, medians, lows, highs = [], [], [], []
        for r in mine:
            s = r.fig(figure)
            assert s is not None
            tag = "" if r.rows == full else f"\n({r.rows:,} rows)"
            wrong = "" if r.ok_runs == r.runs else "\nWRONG"
            names.append(CONTENDERS[r.contender].label.replace(" ", "\n", 1) + tag + wrong)
            medians.append(s.median)
            lows.append(s.median - s.low)
            highs.append(s.high - s.median)
        bars = ax.bar(
            range(len(names)),
            medians,
            yerr=[lows, highs],
            capsize=4,
            color=[colors.get(r.contender, "#999") for r in mine],
        )
        ax.bar_label(bars, labels=[f"{m:,.0f}" for m in medians], padding=2, fontsize=8)
        ax.set_xticks(range(len(names)), names, fontsize=7)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
