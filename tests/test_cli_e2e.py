"""send-bulk end to end: the real CLI in a child process, the sandbox over a loopback socket.

Every test checks the results file against the sandbox's ledger: nothing lost, nothing sent
twice. No test sleeps to wait for timing: a child is interrupted once its results file shows
progress.
"""

from __future__ import annotations

import collections
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from kaleyra_async.sandbox import Sandbox, parse_faults
from tests.conftest import CLI, cli_env, numbers, run_cli, write_csv

pytestmark = pytest.mark.timeout(120)

BODY = "Your order has shipped"
TEMPLATE = "1107161234567890123"


def read_results(path: Path) -> dict[int, dict[str, Any]]:
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    by_row = {r["row"]: r for r in records}
    assert len(by_row) == len(records), "a row has more than one result line"
    return by_row


def cli(sandbox: Sandbox, *args: str | Path) -> list[str]:
    """``send-bulk ARGS`` against the sandbox with this module's message options."""
    return [
        "send-bulk", *map(str, args),
        "--base-url", sandbox.base_url, "--sender", "KLRHXA", "--type", "TXN",
        "--body", BODY, "--template-id", TEMPLATE, "--no-progress",
    ]  # fmt: skip


async def send_bulk_cli(
    sandbox: Sandbox, *args: str | Path, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """``send-bulk ARGS`` against the sandbox with the module's message defaults."""
    return await run_cli(*cli(sandbox, *args), env=cli_env(sandbox, **env))


def assert_matches_ledger(results: dict[int, dict[str, Any]], sandbox: Sandbox) -> None:
    """Sent rows are in the ledger once each; every ledger entry is a sent or unknown row."""
    ledger = sandbox.ledger_records()
    ids = collections.Counter(r.message_id for r in ledger)
    assert all(count == 1 for count in ids.values())
    recipients = collections.Counter(r.recipient for r in ledger)
    sent = [r for r in results.values() if r["status"] == "sent"]
    for row in sent:
        assert ids[row["message_id"]] == 1
    by_id = {r.message_id: r for r in ledger}
    for row in sent:
        assert by_id[row["message_id"]].recipient == row["to"]
    accounted = {r["to"] for r in results.values() if r["status"] in ("sent", "unknown")}
    assert set(recipients) <= accounted, "the sandbox accepted an SMS no row accounts for"


async def test_send_bulk_records_every_row_once_and_matches_the_ledger(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Bulk, OTP, invalid and duplicate rows: one line each, batches of 100, OTP alone."""
    rows = [f"{n}," for n in numbers(250)]
    rows += [f"+9197000000{i:02d},OTP" for i in range(3)]
    rows += ["12345,", ",", f"{numbers(1)[0]},", "+919812345678,PROMO"]
    src = write_csv(tmp_path / "in.csv", rows, header="to,type")
    out = tmp_path / "out.ndjson"

    done = await send_bulk_cli(sandbox, src, "--out", out, "--dedupe")

    assert done.returncode == 1, done.stderr.decode()  # some rows were not sent
    results = read_results(out)
    assert sorted(results) == list(range(1, len(rows) + 1))
    status = collections.Counter(r["status"] for r in results.values())
    assert status == {"sent": 253, "invalid": 3, "skipped": 1}
    assert results[256]["error_code"] == "duplicate"
    assert results[257]["error_code"] == "invalid_type"
    assert_matches_ledger(results, sandbox)
    per_request = collections.Counter(r.request_id for r in sandbox.ledger_records())
    otp_requests = {r.request_id for r in sandbox.ledger_records() if r.type == "OTP"}
    assert len(otp_requests) == 3
    assert all(per_request[rid] == 1 for rid in otp_requests)
    assert sorted(n for rid, n in per_request.items() if rid not in otp_requests) == [50, 100, 100]
    assert b"sent 253" in done.stderr


async def test_results_go_to_stdout_from_stdin(sandbox: Sandbox) -> None:
    """`send-bulk -` reads stdin and, without --out, writes result lines to stdout."""
    csv = ("to\n" + "\n".join(numbers(5)) + "\n").encode()
    done = await run_cli(*cli(sandbox, "-"), env=cli_env(sandbox), stdin=csv)
    assert done.returncode == 0, done.stderr.decode()
    lines = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert sorted(r["row"] for r in lines) == [1, 2, 3, 4, 5]
    assert {r["status"] for r in lines} == {"sent"}


async def test_verbose_says_where_and_how_fast_before_sending(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """-v names the input, the server, the pace and the output up front; never the key."""
    src = write_csv(tmp_path / "in.csv", numbers(3))
    out = tmp_path / "out.ndjson"
    done = await send_bulk_cli(sandbox, src, "--out", out, "--rate", "50", "-v")
    assert done.returncode == 0, done.stderr.decode()
    err = done.stderr.decode()
    assert f"sending {src} to {sandbox.base_url} (pod IN, 50 requests/s" in err
    assert f"results to {out}" in err
    assert sandbox.api_key not in err


async def test_dry_run_sends_nothing_and_prints_a_plan(sandbox: Sandbox, tmp_path: Path) -> None:
    """--dry-run: rows 'planned', a plan on stderr, no request reaches the sandbox."""
    rows = [*numbers(150), "bad"]
    src = write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.ndjson"
    done = await send_bulk_cli(sandbox, src, "--out", out, "--dry-run")
    assert done.returncode == 1  # one invalid row
    results = read_results(out)
    assert collections.Counter(r["status"] for r in results.values()) == {
        "planned": 150,
        "invalid": 1,
    }
    plan = done.stderr.decode()
    assert "Dry run" in plan
    assert "requests:         2" in plan
    assert sandbox.stats.requests_total == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--to-column", "phone"), "no 'phone' column", id="missing-column"),
        pytest.param(("--unicode", "7"), "default unicode", id="bad-default-unicode"),
        pytest.param(("--time", "tomorrow"), "default time", id="bad-default-time"),
        pytest.param(("--batch-size", "0"), "must be >= 1", id="bad-batch-size"),
        pytest.param(("--resume",), "needs --out", id="resume-without-out"),
    ],
)
async def test_usage_errors_exit_2_and_send_nothing(
    sandbox: Sandbox, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """Configuration mistakes are exit code 2 with a message naming the problem."""
    src = write_csv(tmp_path / "in.csv", numbers(3))
    done = await send_bulk_cli(sandbox, src, *args)
    assert done.returncode == 2
    assert message in done.stderr.decode()
    assert sandbox.stats.requests_total == 0


async def test_existing_results_file_is_not_overwritten(sandbox: Sandbox, tmp_path: Path) -> None:
    """Without --resume or --overwrite an existing results file is left alone (exit 2)."""
    src = write_csv(tmp_path / "in.csv", numbers(3))
    out = tmp_path / "out.ndjson"
    out.write_text('{"row": 1}\n')
    done = await send_bulk_cli(sandbox, src, "--out", out)
    assert done.returncode == 2
    assert "--resume" in done.stderr.decode()
    assert out.read_text() == '{"row": 1}\n'


async def wait_for_lines(path: Path, at_least: int) -> None:
    """Wait until another process has written ``at_least`` lines (no event crosses processes)."""
    file = anyio.Path(path)
    with anyio.fail_after(60):
        while not await file.exists() or (await file.read_bytes()).count(b"\n") < at_least:  # noqa: ASYNC110
            await anyio.sleep(0.02)


SLOW = {"latency_ms": 25.0}


@pytest.mark.parametrize("sandbox", [SLOW], indirect=True)
async def test_resume_after_kill_9_sends_the_rest_once(sandbox: Sandbox, tmp_path: Path) -> None:
    """kill -9 mid-run, then --resume: every row once, no SMS twice, in-flight rows unknown."""
    total = 1500
    src = write_csv(tmp_path / "in.csv", numbers(total))
    out = tmp_path / "out.ndjson"
    args = ("--out", out, "--batch-size", "5", "--concurrency", "4", "--rate", "100000")
    process = await anyio.open_process([*CLI, *cli(sandbox, src, *args)], env=cli_env(sandbox))
    async with process:
        await wait_for_lines(out, 100)
        process.send_signal(signal.SIGKILL)
        await process.wait()
    first = read_results(out)
    assert 100 <= len(first) < total

    done = await send_bulk_cli(sandbox, src, *args, "--resume")
    assert done.returncode in (0, 1), done.stderr.decode()
    results = read_results(out)
    assert sorted(results) == list(range(1, total + 1))
    for row, record in first.items():
        assert results[row] == record  # the first run's outcomes stand
    unknown = [r for r in results.values() if r["status"] == "unknown"]
    assert all(r["error_code"] == "inflight_at_crash" for r in unknown)
    assert len(unknown) <= 4 * 5  # at most the requests in flight at the kill
    recipients = collections.Counter(r.recipient for r in sandbox.ledger_records())
    assert max(recipients.values()) == 1, "an SMS was sent twice"
    assert set(recipients) == {r["to"] for r in results.values() if r["status"] == "sent"} | (
        set(recipients) & {r["to"] for r in unknown}
    )
    assert {r["status"] for r in results.values()} <= {"sent", "unknown"}


@pytest.mark.parametrize("sandbox", [SLOW], indirect=True)
async def test_sigint_drains_exits_130_and_resume_finishes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Ctrl-C: in-flight requests finish and are recorded, exit 130; --resume sends the rest."""
    total = 1500
    src = write_csv(tmp_path / "in.csv", numbers(total))
    out = tmp_path / "out.ndjson"
    args = ("--out", out, "--batch-size", "5", "--concurrency", "4", "--rate", "100000")
    process = await anyio.open_process(
        [*CLI, *cli(sandbox, src, *args, "--overwrite")], env=cli_env(sandbox)
    )
    async with process:
        await wait_for_lines(out, 100)
        process.send_signal(signal.SIGINT)
        assert await process.wait() == 130
        assert process.stderr is not None
        chunks = []
        with anyio.fail_after(30):
            try:
                while True:
                    chunks.append(await process.stderr.receive())
            except anyio.EndOfStream:
                pass
        stderr = b"".join(chunks).decode()
    first = read_results(out)
    assert {r["status"] for r in first.values()} == {"sent"}  # drained, not abandoned
    assert len(sandbox.ledger_records()) == len(first)

    # The command the CLI prints to resume is the one we run.
    resume = shlex.split(stderr.split("are sent by:")[1].strip().splitlines()[0])
    # "python" only when that is this interpreter on PATH, else its path (make runs the venv's
    # python without activating it): either way the printed command runs as it is.
    assert resume[0] in ("python", sys.executable) and resume[1:3] == ["-m", "kaleyra_async"]
    assert "--resume" in resume
    done = await anyio.run_process(resume, env=cli_env(sandbox), check=False)
    assert done.returncode == 0, done.stderr.decode()
    results = read_results(out)
    assert sorted(results) == list(range(1, total + 1))
    assert {r["status"] for r in results.values()} == {"sent"}
    assert len(sandbox.ledger_records()) == total
    assert_matches_ledger(results, sandbox)


@pytest.mark.parametrize("sandbox", [{"rate_per_s": 1000}], indirect=True)
async def test_rate_limit_is_honoured_at_the_sandbox(sandbox: Sandbox, tmp_path: Path) -> None:
    """With --rate 40, the sandbox never sees more than 40 requests in any 1-second window."""
    rows = [f"{n},OTP" for n in numbers(90)]
    src = write_csv(tmp_path / "in.csv", rows, header="to,type")
    out = tmp_path / "out.ndjson"
    done = await send_bulk_cli(sandbox, src, "--out", out, "--rate", "40")
    assert done.returncode == 0, done.stderr.decode()
    stats = sandbox.stats
    assert stats.requests_total == 90
    assert stats.max_requests_in_1s <= 40
    assert stats.by_status.get("429", 0) == 0


@pytest.mark.parametrize("sandbox", [{"latency_ms": 3000.0}], indirect=True)
async def test_second_sigint_records_requests_on_the_wire_as_unknown(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Ctrl-C twice while requests hang on the wire: exit 130, each of their rows 'unknown'."""
    src = write_csv(tmp_path / "in.csv", numbers(100))
    out = tmp_path / "out.ndjson"
    args = ("--out", out, "--batch-size", "10", "--concurrency", "3", "--rate", "100000")
    process = await anyio.open_process([*CLI, *cli(sandbox, src, *args)], env=cli_env(sandbox))
    async with process:
        with anyio.fail_after(30):
            while sandbox.stats.requests_total < 3:  # noqa: ASYNC110 (another process)
                await anyio.sleep(0.02)
        process.send_signal(signal.SIGINT)
        # The second signal only counts as a second once the first was handled: wait for the
        # CLI to say so, rather than for some time to pass.
        assert process.stderr is not None
        said = b""
        with anyio.fail_after(30):
            while b"finishing requests in flight" not in said:
                said += await process.stderr.receive()
        process.send_signal(signal.SIGINT)
        assert await process.wait() == 130
    results = read_results(out)
    assert len(results) == 30
    assert {(r["status"], r["error_code"]) for r in results.values()} == {
        ("unknown", "interrupted")
    }


@pytest.mark.parametrize(
    "sandbox", [{"faults": parse_faults("500_after_accept=0.3"), "seed": 5}], indirect=True
)
async def test_retry_ambiguous_opts_in_to_at_least_once(sandbox: Sandbox, tmp_path: Path) -> None:
    """--retry-ambiguous resends what may have been accepted: all sent, some SMS twice."""
    src = write_csv(tmp_path / "in.csv", numbers(200))
    out = tmp_path / "out.ndjson"
    config = tmp_path / "retry.toml"
    config.write_text("[retry]\nmax_attempts = 12\ninitial_backoff_s = 0.01\njitter_s = 0.01\n")
    done = await send_bulk_cli(
        sandbox, src, "--out", out, "--batch-size", "10", "--rate", "100000",
        "--config", config, "--retry-ambiguous",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    results = read_results(out)
    assert {r["status"] for r in results.values()} == {"sent"}
    recipients = collections.Counter(r.recipient for r in sandbox.ledger_records())
    assert set(recipients) == {r["to"] for r in results.values()}
    assert max(recipients.values()) >= 2  # the price of at-least-once, shown, not hidden


async def test_quiet_prints_no_summary_and_a_resume_says_what_earlier_runs_left(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """-q: errors only, no summary. A resume's summary names the earlier runs' statuses, which
    are what its exit code 1 is about."""
    src = write_csv(tmp_path / "in.csv", [*numbers(3), "12345"])
    out = tmp_path / "out.ndjson"
    quiet = await send_bulk_cli(sandbox, src, "--out", out, "-q")
    assert quiet.returncode == 1
    assert quiet.stderr.decode() == ""
    resumed = await send_bulk_cli(sandbox, src, "--out", out, "--resume")
    assert resumed.returncode == 1
    err = resumed.stderr.decode()
    assert "4 rows were already done by earlier runs (invalid 1, sent 3)" in err
    assert "exit code 1: some rows are not sent (counting the earlier runs' rows)" in err


async def test_stdin_over_existing_results_does_not_suggest_resume(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    csv = ("to\n" + "\n".join(numbers(2)) + "\n").encode()
    out = tmp_path / "out.ndjson"
    for expected in (0, 2):
        done = await run_cli(*cli(sandbox, "-", "--out", out), env=cli_env(sandbox), stdin=csv)
        assert done.returncode == expected, done.stderr.decode()
    err = done.stderr.decode()
    assert "pass --overwrite to start again" in err and "--resume" not in err
