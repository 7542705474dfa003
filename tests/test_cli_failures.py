"""send-bulk end to end when sending fails: a refused key or no server stops the run and
--resume sends the rest; safe failures are retried, ambiguous ones stay unknown and are never
resent.
"""

from __future__ import annotations

import collections
from pathlib import Path

import anyio
import pytest

from kaleyra_async.sandbox import Sandbox, parse_faults
from tests.conftest import cli_env, numbers, run_cli, write_csv
from tests.test_cli_e2e import assert_matches_ledger, cli, read_results, send_bulk_cli

pytestmark = pytest.mark.timeout(120)


async def test_wrong_api_key_stops_the_run_and_resume_sends_every_row(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A 401 stops the run (exit 2) after one attempt per request out, nothing is accepted, and
    no row is written off as failed: --resume with the right key sends every row, once."""
    src = write_csv(tmp_path / "in.csv", numbers(3000))
    out = tmp_path / "out.ndjson"
    done = await send_bulk_cli(
        sandbox, src, "--out", out, "--concurrency", "2", KALEYRA_API_KEY="wrong-key"
    )
    assert done.returncode == 2
    assert "stopped itself" in done.stderr.decode()
    assert 1 <= sandbox.stats.requests_total <= 2  # the requests already out; no more were sent
    assert read_results(out) == {}  # refused as a whole: left to --resume, not "failed"
    assert "wrong-key" not in done.stderr.decode() + out.read_text()
    assert sandbox.ledger_records() == []
    resumed = await send_bulk_cli(sandbox, src, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr.decode()
    results = read_results(out)
    assert sorted(results) == list(range(1, 3001))
    assert {r["status"] for r in results.values()} == {"sent"}
    assert_matches_ledger(results, sandbox)


@pytest.mark.slow
async def test_no_server_stops_the_run_and_resume_sends_every_row(tmp_path: Path) -> None:
    """Connection refused: the request never left, so its rows get no "failed" line that
    would keep --resume from sending them once the server is there."""
    src = write_csv(tmp_path / "in.csv", numbers(300))
    out = tmp_path / "out.ndjson"
    async with Sandbox() as stopped:
        pass  # its port is closed now: nothing listens there
    done = await send_bulk_cli(stopped, src, "--out", out)
    assert done.returncode == 2
    assert "stopped itself" in done.stderr.decode()
    assert read_results(out) == {}
    async with Sandbox() as sandbox:
        resumed = await send_bulk_cli(sandbox, src, "--out", out, "--resume")
        assert resumed.returncode == 0, resumed.stderr.decode()
        results = read_results(out)
        assert sorted(results) == list(range(1, 301))
        assert {r["status"] for r in results.values()} == {"sent"}
        assert_matches_ledger(results, sandbox)


async def test_no_server_with_stdin_does_not_promise_a_resume(tmp_path: Path) -> None:
    """--resume refuses stdin (it can't be checked to be the same input), so a run reading
    stdin must not end by advising it; with a file the hint is there."""
    csv = ("to\n" + "\n".join(numbers(20)) + "\n").encode()
    out = tmp_path / "out.ndjson"
    config = tmp_path / "fast.toml"  # no need to wait out the connect retries' backoff
    config.write_text("[retry]\ninitial_backoff_s = 0.01\njitter_s = 0\n")
    async with Sandbox() as stopped:
        pass  # its port is closed now: nothing listens there
    from_stdin = await run_cli(
        *cli(stopped, "-", "--out", out, "--config", config), env=cli_env(stopped), stdin=csv
    )
    assert from_stdin.returncode == 2
    assert "stopped itself" in from_stdin.stderr.decode()
    assert "--resume" not in from_stdin.stderr.decode()
    src = tmp_path / "in.csv"
    src.write_bytes(csv)
    from_file = await send_bulk_cli(
        stopped, src, "--out", tmp_path / "file.ndjson", "--config", config
    )
    assert from_file.returncode == 2
    assert "--resume sends the rest" in from_file.stderr.decode()


async def test_a_row_of_unknown_fate_stays_unknown_after_a_resend_that_was_refused(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Rows 1-2 were on the wire when run 1 died. Run 2 (--retry-ambiguous) resends them and is
    refused as a whole (a wrong key): that refusal is about run 2's request, not run 1's, which
    may have been accepted. Run 3 (no --retry-ambiguous) must report them unknown, not send."""
    src = write_csv(tmp_path / "in.csv", numbers(50))
    out = tmp_path / "out.ndjson"
    args = ("--out", out, "--concurrency", "1", "--batch-size", "10")
    first = await send_bulk_cli(sandbox, src, *args, KALEYRA_API_KEY="wrong-key")
    assert first.returncode == 2, first.stderr.decode()
    journal = anyio.Path(f"{out}.journal")
    # What a kill -9 with rows 1-2 on the wire leaves at the end of the journal:
    await journal.write_bytes(await journal.read_bytes() + b'{"inflight":[1,2]}\n')

    second = await send_bulk_cli(
        sandbox, src, *args, "--resume", "--retry-ambiguous", KALEYRA_API_KEY="wrong-key"
    )
    assert second.returncode == 2, second.stderr.decode()
    assert b'"released":[1,2,' in await journal.read_bytes()  # run 2 did resend them, refused

    third = await send_bulk_cli(sandbox, src, *args, "--resume")
    assert third.returncode == 1, third.stderr.decode()
    results = read_results(out)
    assert sorted(results) == list(range(1, 51))
    assert [(results[n]["status"], results[n]["error_code"]) for n in (1, 2)] == [
        ("unknown", "inflight_at_crash")
    ] * 2
    assert {results[n]["status"] for n in range(3, 51)} == {"sent"}
    assert {r.recipient for r in sandbox.ledger_records()}.isdisjoint(numbers(2))
    assert_matches_ledger(results, sandbox)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sandbox",
    [{"faults": parse_faults("429=0.2,503=0.3"), "seed": 7}],
    indirect=True,
)
async def test_safe_failures_are_retried_until_sent(sandbox: Sandbox, tmp_path: Path) -> None:
    """429 and 503 are retried with backoff; every row ends sent, exactly once."""
    src = write_csv(tmp_path / "in.csv", numbers(400))
    out = tmp_path / "out.ndjson"
    config = tmp_path / "retry.toml"
    config.write_text("[retry]\nmax_attempts = 12\ninitial_backoff_s = 0.01\njitter_s = 0.01\n")
    done = await send_bulk_cli(
        sandbox, src, "--out", out, "--batch-size", "10", "--rate", "100000", "--config", config
    )
    assert done.returncode == 0, done.stderr.decode()
    results = read_results(out)
    assert {r["status"] for r in results.values()} == {"sent"}
    assert max(r["attempts"] for r in results.values()) > 1
    assert len(sandbox.ledger_records()) == 400
    assert_matches_ledger(results, sandbox)


@pytest.mark.parametrize(
    "sandbox",
    [
        {
            "faults": parse_faults("500_after_accept=0.2,reset_after_accept=0.2,reset_before=0.1"),
            "seed": 3,
        }
    ],
    indirect=True,
)
async def test_ambiguous_failures_are_unknown_and_never_resent(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """No answer after sending (500, reset) is 'unknown': never resent, whatever really happened.

    A reset before acceptance looks the same to a client as one after: both stay unknown.
    """
    src = write_csv(tmp_path / "in.csv", numbers(300))
    out = tmp_path / "out.ndjson"
    done = await send_bulk_cli(sandbox, src, "--out", out, "--batch-size", "10", "--rate", "100000")
    assert done.returncode == 1
    results = read_results(out)
    status = collections.Counter(r["status"] for r in results.values())
    assert set(status) == {"sent", "unknown"}
    assert status["unknown"] >= 10
    ledger = sandbox.ledger_records()
    faulted = {r.recipient for r in ledger if r.fault}
    unknown = {r["to"] for r in results.values() if r["status"] == "unknown"}
    sent = {r["to"] for r in results.values() if r["status"] == "sent"}
    assert faulted <= unknown  # accepted but unanswered: unknown, not failed, not resent
    assert {r.recipient for r in ledger} == sent | faulted
    assert len(ledger) == len(sent) + len(faulted)  # nobody twice
    assert all(results[row]["attempts"] == 1 for row in results if results[row]["to"] in unknown)
    assert_matches_ledger(results, sandbox)
