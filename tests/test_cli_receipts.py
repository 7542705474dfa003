"""The delivery commands through the real CLI: report, status polling into the database,
receipts serve's start line and clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from kaleyra_async._delivery import ReceiptRecord
from kaleyra_async._receipt_store import ReceiptReader, ReceiptStore
from kaleyra_async.sandbox import Sandbox, SandboxConfig
from tests.conftest import CLI, TEMPLATE_ID, cli_env, run_cli

pytestmark = pytest.mark.timeout(60)

RESULTS = [
    {"row": 1, "to": "+919876500001", "status": "sent", "message_id": "q:1", "ref": "run-a"},
    {"row": 2, "to": "+919876500002", "status": "sent", "message_id": "q:2", "ref": "run-a"},
    {"row": 3, "to": "+919876500003", "status": "sent", "message_id": "q:3", "ref": "run-a"},
    {
        "row": 4,
        "to": "+919876500004",
        "status": "unknown",
        "message_id": None,
        "ref": "run-b",
        "error_code": "response_lost",
    },
    {"row": 5, "to": "12", "status": "invalid", "error_code": "invalid_to"},
    {"row": 6, "to": "+919876500006", "status": "unknown", "message_id": None, "ref": "run-c"},
]
RECEIPTS = [
    ReceiptRecord(message_id="q:1", status="DELIVERED", timestamp="2025-04-17 18:35:20"),
    ReceiptRecord(message_id="q:1", status="Sent"),  # late and lower: no downgrade
    ReceiptRecord(message_id="q:2", status="UnDelivered", status_trace="ABSENT-SUB"),
    ReceiptRecord(message_id="r:7", status="Delivered", recipient="919876500004", ref="run-b"),
    ReceiptRecord(message_id="orphan:1", status="Delivered"),
]


async def fixture_files(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "results.ndjson"
    results.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in RESULTS))
    db = tmp_path / "r.sqlite"
    async with ReceiptStore(db) as store:
        await store.add(RECEIPTS)
    return results, db


async def test_report_lines_and_summary(tmp_path: Path) -> None:
    """One line per result in order, result keys kept; unknown settled by ref and number."""
    results, db = await fixture_files(tmp_path)
    out = tmp_path / "delivery.ndjson"
    done = await run_cli("report", results, "--db", db, "--out", out)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["row"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert [line["delivery"] for line in lines] == [
        "delivered",
        "undelivered",
        "pending",
        "delivered",
        None,
        None,
    ]
    assert lines[0]["delivered_at"] == "2025-04-17 18:35:20"
    assert lines[1]["delivery_trace"] == "ABSENT-SUB"
    assert (lines[3]["status"], lines[3]["message_id"], lines[3]["resolved_by"]) == (
        "sent",
        "r:7",
        "receipt",
    )
    assert lines[5]["status"] == "unknown" and "resolved_by" not in lines[5]
    assert {k: lines[4][k] for k in RESULTS[4]} == RESULTS[4]
    assert "delivery rate: 50.0% of 4 accepted" in err
    assert "ABSENT-SUB=1" in err and "settled by a receipt: 1" in err


async def test_report_output_reads_back_for_resume(tmp_path: Path) -> None:
    """A report's lines are result lines: resume's reader counts the settled row as sent."""
    from kaleyra_async._resume import load_progress

    results, db = await fixture_files(tmp_path)
    out = tmp_path / "delivery.ndjson"
    assert (await run_cli("report", results, "--db", db, "--out", out)).returncode == 0
    journal = anyio.Path(f"{out}.journal")
    await journal.write_bytes(b'{"journal":1,"started":"2026-01-01T00:00:00+00:00","input":{}}\n')
    progress = load_progress(out)
    assert progress.statuses["sent"] == 4 and progress.statuses["unknown"] == 1
    assert all(progress.is_done(row) for row in range(1, 7))


async def test_report_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results, db = await fixture_files(tmp_path)
    chart = tmp_path / "chart.png"
    done = await run_cli("report", results, "--db", db, "--out", tmp_path / "o", "--chart", chart)
    assert done.returncode == 0, done.stderr.decode()
    assert chart.read_bytes().startswith(b"\x89PNG")


async def test_report_chart_without_matplotlib_says_how_to_get_it(tmp_path: Path) -> None:
    results, db = await fixture_files(tmp_path)
    shim = tmp_path / "shim" / "matplotlib"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = cli_env(PYTHONPATH=os.pathsep.join([str(shim.parent), os.getcwd()]))
    done = await run_cli("report", results, "--db", db, "--chart", tmp_path / "c.png", env=env)
    assert done.returncode == 2
    assert "pip install 'kaleyra_async[chart]'" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()


async def test_report_refuses_a_missing_database(tmp_path: Path) -> None:
    results, _ = await fixture_files(tmp_path)
    done = await run_cli("report", results, "--db", tmp_path / "none.sqlite")
    assert done.returncode == 2 and "no such receipts database" in done.stderr.decode()


async def test_status_polls_open_rows_into_the_database(tmp_path: Path) -> None:
    """Sent rows without a final receipt are asked about and stored as polled receipts; a
    second poll asks about none of them."""
    async with Sandbox(SandboxConfig(seed=2, deliver_after_s=0.0)) as sandbox:
        async with httpx.AsyncClient(
            base_url=f"{sandbox.base_url}/v1/{sandbox.sid}", headers={"api-key": sandbox.api_key}
        ) as http:
            to = ",".join(f"+91987650{n:04d}" for n in range(150)) + ",+919876549999"
            ids = []
            for chunk in (to.split(",")[:100], to.split(",")[100:]):
                answer = await http.post(
                    "/sms",
                    json={
                        "to": ",".join(chunk),
                        "body": "x",
                        "type": "TXN",
                        "sender": "KLRHXA",
                        "template_id": TEMPLATE_ID,
                    },
                )
                ids += [(d["message_id"], "+" + d["recipient"]) for d in answer.json()["data"]]
        results = tmp_path / "results.ndjson"
        results.write_bytes(
            b"".join(
                orjson.dumps({"row": n, "to": to_, "status": "sent", "message_id": mid}) + b"\n"
                for n, (mid, to_) in enumerate(ids, 1)
            )
        )
        db = tmp_path / "r.sqlite"
        args = ("status", results, "--db", db, "--base-url", sandbox.base_url)
        first = await run_cli(*args, env=cli_env(sandbox))
        assert first.returncode == 0, first.stderr.decode()
        assert "asked: 151" in first.stderr.decode()
        second = await run_cli(*args, env=cli_env(sandbox))
        assert "already final: 151; asked: 0" in second.stderr.decode()
    with ReceiptReader(db) as reader:
        stored = list(reader.all())
    assert len(stored) == 151 and {r.source for r in stored} == {"poll"}
    absent = [r for r in stored if r.recipient.endswith("9999")]
    assert [(r.status, r.status_trace) for r in absent] == [("UnDelivered", "ABSENT-SUB")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_serve_prints_listening_and_stops_cleanly(tmp_path: Path, signum: int) -> None:
    db = tmp_path / "r.sqlite"
    proc = await asyncio.create_subprocess_exec(
        *CLI, "receipts", "serve", "--db", str(db), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    assert line.startswith("listening on http://127.0.0.1:")
    url = line.split()[-1]
    async with httpx.AsyncClient() as http:
        answer = await http.get(url + "/dlr", params={"id": "a:1", "status": "Sent"})
    assert answer.status_code == 200
    proc.send_signal(signum)
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    with ReceiptReader(db) as reader:
        assert [r.message_id for r in reader.all()] == ["a:1"]
