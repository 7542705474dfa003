"""The receipts step (``--only receipts``): ingest rate with durability on against an empty
``aiohttp.web`` handler, and ``report`` over a large results file.

* **Ingest**: ``receipts serve`` (WAL, ``synchronous=FULL``, group commit) and the empty
  handler (``_receipt_load empty``) each get the same load (``_receipt_load load``: JSON POSTs,
  unique ids, ``connections`` keep-alive connections) for ``seconds``; server and load on
  separate CPUs. Targets: at least 5,000 receipts/s, and at least 50 % of the empty handler.
* **Report**: a results file of ``rows`` sent rows and a database with a ``Sent`` and a final
  receipt for 90 % of them; ``python -m kaleyra_async report`` over it, wall time and the
  child's peak RSS (``wait4``), at two sizes to show that memory does not grow with rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from benchmarks._harness import REPO
from kaleyra_async._delivery import ReceiptRecord
from kaleyra_async._receipt_store import ReceiptStore

__all__ = ["ReceiptsFigures", "run_receipts_step"]

_SIZES: Final = {"quick": (2.0, (5_000, 20_000)), "default": (10.0, (100_000, 1_000_000))}
_SIZES_FULL: Final = (15.0, (1_000_000, 3_000_000))
_CONNECTIONS: Final = 64


@dataclasses.dataclass(slots=True)
class ReceiptsFigures:
    #: Receipts answered 200 per wall second, and per CPU-second of the server process.
    ingest_per_s: float = 0.0
    ingest_per_cpu_s: float = 0.0
    ceiling_per_s: float = 0.0
    ceiling_per_cpu_s: float = 0.0
    ingest_errors: int = 0
    report: list[dict[str, float]] = dataclasses.field(default_factory=list)

    @property
    def share_of_ceiling(self) -> float:
        """Per CPU-second: on a shared machine wall rates swing with the neighbours' load."""
        return self.ingest_per_cpu_s / self.ceiling_per_cpu_s if self.ceiling_per_cpu_s else 0.0

    def table(self) -> str:
        lines = [
            "| receipts step | figure | target |",
            "|---|---|---|",
            f"| ingest, durable (WAL, synchronous=FULL, group commit) | "
            f"{self.ingest_per_s:,.0f} receipts/s ({self.ingest_per_cpu_s:,.0f} per CPU-s) | "
            f">= 5,000/s: {'met' if self.ingest_per_s >= 5000 else 'MISSED'} |",
            f"| empty aiohttp.web handler (ceiling) | {self.ceiling_per_s:,.0f} requests/s "
            f"({self.ceiling_per_cpu_s:,.0f} per CPU-s) | |",
            f"| durable / ceiling, per CPU-s | {self.share_of_ceiling:.0%} | >= 50 %: "
            f"{'met' if self.share_of_ceiling >= 0.5 else 'MISSED'} |",
        ]
        for run in self.report:
            lines.append(
                f"| report, {run['rows']:,.0f} rows | {run['rows_per_s']:,.0f} rows/s, "
                f"peak RSS {run['peak_rss_mib']:.0f} MiB | flat RSS |"
            )
        return "\n".join(lines) + "\n"


def _pinned(cpus: Sequence[int] | None) -> Any:
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _start_server(
    command: list[str], cpus: Sequence[int] | None
) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=_pinned(cpus),
        cwd=REPO,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"{command}: did not start ({line!r})")
    return proc, line.split()[-1]


def _cpu_s(pid: int) -> float:
    """User + system CPU-seconds of a process, all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(url: str, seconds: float, cpus: Sequence[int] | None) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._receipt_load", "load", url, str(seconds),
         str(_CONNECTIONS)],
        capture_output=True, check=True, preexec_fn=_pinned(cpus), cwd=REPO,
    )  # fmt: skip
    figures: dict[str, float] = orjson.loads(done.stdout)
    return figures


def _ingest(seconds: float, work: Path, cpus: tuple[Sequence[int] | None, Sequence[int] | None],
            figures: ReceiptsFigures) -> None:  # fmt: skip
    server_cpus, load_cpus = cpus
    for name in ("ceiling", "ours"):
        if name == "ours":
            command = [sys.executable, "-m", "kaleyra_async", "-q", "receipts", "serve",
                       "--db", str(work / "ingest.sqlite"), "--port", "0"]  # fmt: skip
        else:
            command = [sys.executable, "-m", "benchmarks._receipt_load", "empty"]
        proc, url = _start_server(command, server_cpus)
        try:
            cpu_before = _cpu_s(proc.pid)
            result = _load(url, seconds, load_cpus)
            cpu_s = _cpu_s(proc.pid) - cpu_before
        finally:
            proc.terminate()
            proc.wait(30)
        rate = result["ok"] / result["elapsed_s"]
        per_cpu = result["ok"] / cpu_s if cpu_s > 0 else 0.0
        if name == "ours":
            figures.ingest_per_s, figures.ingest_errors = rate, int(result["other"])
            figures.ingest_per_cpu_s = per_cpu
        else:
            figures.ceiling_per_s, figures.ceiling_per_cpu_s = rate, per_cpu
        print(
            f"   {name}: {rate:,.0f}/s, {per_cpu:,.0f} per CPU-s ({result['other']:.0f} not 200)",
            file=sys.stderr,
        )


async def _fill(db: Path, rows: int) -> None:
    async with ReceiptStore(db, max_pending=10**9) as store:
        batch: list[ReceiptRecord] = []
        for n in range(1, rows + 1):
            if n % 10 == 0:
                continue  # 10 % without receipts: pending
            mid = f"req{n // 100}:{n % 100 + 1}"
            batch.append(ReceiptRecord(message_id=mid, status="Sent", received_s=1.0))
            final = "UnDelivered" if n % 17 == 0 else "Delivered"
            batch.append(
                ReceiptRecord(message_id=mid, status=final, status_trace="X", received_s=2.0)
            )
            if len(batch) >= 200_000:
                await store.add(batch)
                batch = []
        if batch:
            await store.add(batch)


def _report(rows: int, work: Path) -> dict[str, float]:
    results = work / f"results-{rows}.ndjson"
    db = work / f"report-{rows}.sqlite"
    if not results.exists():
        with open(results, "wb") as fh:
            for n in range(1, rows + 1):
                fh.write(orjson.dumps({
                    "row": n, "to": f"+9198{n:08d}", "status": "sent",
                    "message_id": f"req{n // 100}:{n % 100 + 1}", "request_id": f"req{n // 100}",
                    "error_code": None, "error": None, "attempts": 1, "segments": 1,
                    "encoding": "GSM-7"}) + b"\n")  # fmt: skip
        asyncio.run(_fill(db, rows))
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaleyra_async", "report", str(results), "--db", str(db),
         "--out", os.devnull],
        stderr=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall_s = time.monotonic() - started
    if status != 0:
        raise RuntimeError(f"report over {rows} rows failed ({status})")
    run = {"rows": rows, "wall_s": wall_s, "rows_per_s": rows / wall_s,
           "peak_rss_mib": usage.ru_maxrss / 1024}  # fmt: skip
    print(f"   report {rows:,} rows: {run['rows_per_s']:,.0f} rows/s, "
          f"peak RSS {run['peak_rss_mib']:.0f} MiB", file=sys.stderr)  # fmt: skip
    return run


def run_receipts_step(
    mode: str,
    data_dir: Path,
    cpus: tuple[Sequence[int] | None, Sequence[int] | None],
) -> ReceiptsFigures:
    """Run both halves of the step; progress on stderr."""
    seconds, sizes = _SIZES_FULL if mode == "full" else _SIZES.get(mode, _SIZES["default"])
    figures = ReceiptsFigures()
    print("== receipts: ingest (durable vs empty handler) and report", file=sys.stderr)
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        _ingest(seconds, Path(tmp), cpus, figures)
    work = data_dir / "receipts"
    work.mkdir(parents=True, exist_ok=True)
    figures.report = [_report(rows, work) for rows in sizes]
    return figures
