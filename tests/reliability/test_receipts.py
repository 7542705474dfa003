"""Receipts end to end: the receiver killed with -9 while the sandbox streams receipts loses
none it acknowledged; the report equals the sandbox's truth for every row; orphans are kept."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from kaleyra_async._receipt_store import ReceiptReader
from kaleyra_async.sandbox import Sandbox, SandboxCallbacks, SandboxConfig, parse_faults
from tests.conftest import CLI, cli_env, free_port, run_cli, sandbox_sends

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@contextlib.asynccontextmanager
async def receiver(db: Path, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """``receipts serve`` as a child process on ``port``, once it listens."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, "receipts", "serve", "--db", str(db), "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=cli_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"listening on "), line
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()


async def test_kill_9_receiver_loses_no_acknowledged_receipt(tmp_path: Path) -> None:
    db = tmp_path / "receipts.sqlite"
    port = free_port()
    callbacks = SandboxCallbacks(
        url=f"http://127.0.0.1:{port}/dlr",
        max_delay_s=1.5,
        retries=8,
        retry_spacing_s=0.1,
        duplicate=0.1,
        out_of_order=0.1,
        early=0.05,
        connections=16,
    )
    async with Sandbox(SandboxConfig(seed=11, fail_rules=()), callbacks=callbacks) as sandbox:
        sender = sandbox.callbacks
        assert sender is not None
        async with receiver(db, port) as first:
            sending = asyncio.create_task(sandbox_sends(sandbox, 60, 40, pause_s=0.01))
            while sender.stats.acknowledged < 300:  # noqa: ASYNC110 - another task's counter
                await asyncio.sleep(0.01)
            first.kill()  # kill -9, mid-stream
            await first.wait()
        acked_before_restart = sender.stats.acknowledged
        await asyncio.sleep(0.3)
        async with receiver(db, port) as second:
            while sender.stats.acknowledged < acked_before_restart + 1500:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            second.kill()
            await second.wait()
        async with receiver(db, port):
            accepted = await sending
            orphans = await sandbox_sends(sandbox, 2, 5)  # not in the results file below
            await asyncio.wait_for(sender.wait_idle(), 60)
        assert sender.stats.given_up == 0
        assert sender.stats.retried > 0  # the kills were felt
        acknowledged = sender.acknowledged
        truth = sandbox.state.delivery_truth
    assert acknowledged is not None and truth is not None
    with ReceiptReader(db) as reader:
        stored = {(r.message_id, r.status, r.timestamp) for r in reader.all()}
    missing = {(a["id"], a["status"], a["timestamp"]) for a in acknowledged} - stored
    assert not missing, (
        f"{len(missing)} acknowledged receipts not stored, e.g. {sorted(missing)[:3]}"
    )
    assert {mid for mid, _ in orphans} <= {key[0] for key in stored}

    results = tmp_path / "results.ndjson"
    results.write_bytes(b"".join(
        orjson.dumps({"row": n, "to": to, "status": "sent", "message_id": mid}) + b"\n"
        for n, (mid, to) in enumerate(accepted, 1)
    ))  # fmt: skip
    out = tmp_path / "delivery.ndjson"
    done = await run_cli("report", results, "--db", db, "--out", out)
    assert done.returncode == 0, done.stderr.decode()
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(lines) == len(accepted) == 2400
    wrong = [
        (line["message_id"], line["delivery"], line["delivery_trace"], fate)
        for line in lines
        if (fate := truth.fate(line["message_id"]))
        and (line["delivery"], line["delivery_trace"]) != (fate.outcome, fate.trace)
    ]
    assert not wrong, f"{len(wrong)} rows differ from the sandbox's truth, e.g. {wrong[:3]}"


async def test_receipts_settle_unknown_rows_of_a_fault_run(tmp_path: Path) -> None:
    """Resets after accepting leave rows unknown; their receipts (ref + number) settle them
    as sent with the message id the sandbox gave, and every other row's delivery is its fate."""
    db = tmp_path / "receipts.sqlite"
    port = free_port()
    callbacks = SandboxCallbacks(
        url=f"http://127.0.0.1:{port}/dlr", max_delay_s=0.3, retry_spacing_s=0.1, early=0.0
    )
    config = SandboxConfig(seed=5, fail_rules=(), faults=parse_faults("reset_after_accept=0.3"))
    src = tmp_path / "in.csv"
    src.write_text("to\n" + "".join(f"+9198765{n:05d}\n" for n in range(300)))
    results = tmp_path / "results.ndjson"
    async with receiver(db, port), Sandbox(config, callbacks=callbacks) as sandbox:
        done = await run_cli(
            "send-bulk", src, "--base-url", sandbox.base_url, "--out", results, "--no-progress",
            "--sender", "KLRHXA", "--type", "TXN", "--body", "Hi", "--template-id", "1" * 19,
            "--batch-size", "10", "--callback-profile-id", "IN_profile",
            env=cli_env(sandbox),
        )  # fmt: skip
        assert done.returncode == 1, done.stderr.decode()  # some rows are unknown
        assert sandbox.callbacks is not None
        await asyncio.wait_for(sandbox.callbacks.wait_idle(), 60)
        ledger = {r.recipient: r.message_id for r in sandbox.ledger_records()}
        truth = sandbox.state.delivery_truth
    assert truth is not None
    rows = [orjson.loads(line) for line in results.read_bytes().splitlines()]
    unknown = {r["row"] for r in rows if r["status"] == "unknown"}
    assert unknown and all(r["ref"] and r["ref"].startswith("ka-") for r in rows)
    assert len({r["ref"] for r in rows}) == 30  # one reference per request

    out = tmp_path / "delivery.ndjson"
    report = await run_cli("report", results, "--db", db, "--out", out)
    assert report.returncode == 0, report.stderr.decode()
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    settled = [line for line in lines if line["row"] in unknown]
    assert all(line["resolved_by"] == "receipt" for line in settled)
    assert all(line["status"] == "sent" for line in lines)
    assert all(line["message_id"] == ledger[line["to"]] for line in lines)
    assert all(line["delivery"] == truth.fate(line["message_id"]).outcome for line in lines)
