"""Queued campaigns: ``send-bulk --queue`` and ``worker`` processes on a real redis-server,
checked against the sandbox's ledger (no number accepted twice) and the results file (one
line per row)."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import redis.asyncio

from kaleyra_async._batching import Batch, PreparedRow
from kaleyra_async._exceptions import ResponseLostError
from kaleyra_async._models import Message, Receipt, SendResult
from kaleyra_async._queue_codec import (
    QueuedFailure,
    decode_job,
    decode_outcome,
    encode_job,
    failure_outcome,
    success_outcome,
)
from kaleyra_async.sandbox import Sandbox
from tests.conftest import CLI, cli_env, run_cli
from tests.test_cli_e2e import cli, numbers, read_results, wait_for_lines, write_csv

pytestmark = pytest.mark.timeout(180)


def test_a_job_round_trips_with_its_rows_and_message() -> None:
    """A job decodes to the batch that was encoded (message, rows, segments, encoding)."""
    message = Message(
        body="Hi", sender="KLRHXA", type="TXN", template_id="1107161234567890123",
        template_data=(("name", "Asha"),), ref_custom=("a", "b"), flash=True,
    )  # fmt: skip
    rows = tuple(
        PreparedRow(row=i, to=f"+91980000000{i}", base=message, segments=1, encoding="GSM-7")
        for i in (3, 4)
    )
    job = decode_job(encode_job("c1", Batch(message, rows)))
    assert (job.campaign, job.batch_id) == ("c1", "3")
    assert job.batch == Batch(message, rows)


def test_an_sms_json_job_round_trips_with_each_node_s_own_message() -> None:
    """A /sms/json batch's job keeps its endpoint and every row's own message (its node)."""
    shared = Message(body=None, sender="KLRHXA", type="TXN", template_id="1107161234567890123")
    rows = tuple(
        PreparedRow(
            row=i,
            to=f"+91980000000{i}",
            base=dataclasses.replace(shared, body=f"Hi {i}"),
            segments=1,
            encoding="GSM-7",
        )
        for i in (3, 4, 5)
    )
    batch = Batch(shared, rows, endpoint="sms/json")
    job = decode_job(encode_job("c1", batch))
    assert job.batch == batch
    assert [m.body for _, m in job.batch.nodes] == ["Hi 3", "Hi 4", "Hi 5"]


def test_outcomes_round_trip_and_keep_a_possible_acceptance() -> None:
    """A success keeps its receipts; a failure keeps its code and whether it may be out."""
    result = SendResult(request_id="r1", receipts=(Receipt("m1", "+919800000001"),), attempts=2)
    decoded = decode_outcome(success_outcome(result))
    assert isinstance(decoded, SendResult)
    assert (decoded.request_id, decoded.receipts, decoded.attempts) == ("r1", result.receipts, 2)
    lost = ResponseLostError("no answer")
    lost.attempts = 1
    failure = decode_outcome(failure_outcome(lost, maybe_sent=False))
    assert isinstance(failure, QueuedFailure)
    assert (failure.code, failure.fate_unknown, failure.attempts) == ("response_lost", True, 1)


@pytest.mark.parametrize("data", [b"", b"{}", b'{"c": 1}', b"not json"])
def test_a_foreign_entry_is_refused_clearly(data: bytes) -> None:
    """Bytes that are not our job are a ValueError, not a crash."""
    with pytest.raises(ValueError, match="not a kaleyra_async job"):
        decode_job(data)


@contextlib.asynccontextmanager
async def workers(
    sandbox: Sandbox, redis_url: str, count: int, *extra: str
) -> AsyncIterator[list[anyio.abc.Process]]:
    """``count`` worker processes; on leaving, SIGTERM to the live ones, which must exit 0."""
    args = worker_argv(sandbox, redis_url, *extra)
    started = [await anyio.open_process(args, env=cli_env(sandbox)) for _ in range(count)]
    try:
        await wait_for_readers(redis_url, count)
        yield started
    finally:
        codes = []
        for process in started:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        with anyio.fail_after(60):
            for process in started:
                codes.append(await process.wait())
        for process in started:
            await process.aclose()
    assert all(code in (0, -signal.SIGKILL) for code in codes), codes


def worker_argv(sandbox: Sandbox, redis_url: str, *extra: str | Path) -> list[str]:
    """``python -m kaleyra_async worker`` against the sandbox and this Redis."""
    return [
        *CLI, "worker", "--base-url", sandbox.base_url, "--redis", redis_url, *map(str, extra)
    ]  # fmt: skip


async def wait_for_readers(redis_url: str, count: int) -> None:
    """Wait until ``count`` workers read the jobs stream (their signal handlers are set by then:
    a SIGTERM while one still imports would kill it, not stop it)."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        with anyio.fail_after(60):
            while True:
                clients = await client.client_list()
                if sum(c.get("cmd") == "xreadgroup" for c in clients) >= count:
                    return
                await anyio.sleep(0.05)
    finally:
        await client.aclose()


def assert_once_each(results: dict[int, dict[str, Any]], sandbox: Sandbox, total: int) -> None:
    """One line per row; no number accepted twice; every sent row's message in the ledger."""
    assert sorted(results) == list(range(1, total + 1))
    ledger = sandbox.ledger_records()
    recipients = collections.Counter(r.recipient for r in ledger)
    assert max(recipients.values()) == 1, "a number was accepted twice"
    ids = {r.message_id: r.recipient for r in ledger}
    for record in results.values():
        if record["status"] == "sent":
            assert ids[record["message_id"]] == record["to"]
    accounted = {r["to"] for r in results.values() if r["status"] in ("sent", "unknown")}
    assert set(recipients) <= accounted, "the sandbox accepted a number no row accounts for"


def collector(sandbox: Sandbox, redis_url: str, src: Path, out: Path, *extra: str) -> list[str]:
    return [
        *CLI, *cli(sandbox, src, "--out", out, "--batch-size", "5", *extra),
        "--queue", "--redis", redis_url,
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", [{"latency_ms": 300.0}], indirect=True)
async def test_a_worker_killed_mid_run_loses_nothing_and_sends_nothing_twice(
    sandbox: Sandbox, redis_url: str, tmp_path: Path
) -> None:
    """Three workers, one kill -9 mid-run: its batches are claimed; every row gets one line;
    a batch that may have left is unknown, never resent."""
    total = 400
    src = write_csv(tmp_path / "in.csv", numbers(total))
    out = tmp_path / "out.ndjson"
    async with workers(sandbox, redis_url, 3, "--rate", "40", "--claim-idle-s", "2") as started:
        process = await anyio.open_process(
            collector(sandbox, redis_url, src, out), env=cli_env(sandbox)
        )
        async with process:
            await wait_for_lines(out, 50)
            started[0].send_signal(signal.SIGKILL)
            with anyio.fail_after(120):
                code = await process.wait()
    assert code in (0, 1)
    results = read_results(out)
    assert_once_each(results, sandbox, total)
    assert {r["status"] for r in results.values()} <= {"sent", "unknown"}
    for record in results.values():
        if record["status"] == "unknown":  # the dead worker's marked batches, said once
            assert record["error_code"] == "worker_lost"
            assert record["error"].count("not resent") == 1


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", [{"latency_ms": 100.0}], indirect=True)
async def test_a_killed_collector_resumes_with_the_workers_outcomes(
    sandbox: Sandbox, redis_url: str, tmp_path: Path
) -> None:
    """kill -9 of send-bulk --queue, then --resume: the batches it had queued are recorded as
    the workers sent them, the rest are queued now; every row sent once."""
    total = 300
    src = write_csv(tmp_path / "in.csv", numbers(total))
    out = tmp_path / "out.ndjson"
    async with workers(sandbox, redis_url, 2, "--rate", "60"):
        process = await anyio.open_process(
            collector(sandbox, redis_url, src, out), env=cli_env(sandbox)
        )
        async with process:
            await wait_for_lines(out, 40)
            process.send_signal(signal.SIGKILL)
            await process.wait()
        first = read_results(out)
        assert 40 <= len(first) < total
        done = await anyio.run_process(
            collector(sandbox, redis_url, src, out, "--resume"), env=cli_env(sandbox), check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    results = read_results(out)
    assert_once_each(results, sandbox, total)
    assert {r["status"] for r in results.values()} == {"sent"}
    for row, record in first.items():
        assert results[row] == record
    assert len(sandbox.ledger_records()) == total


async def test_queue_needs_redis_and_a_results_file(sandbox: Sandbox, tmp_path: Path) -> None:
    """--queue without --redis or --out, with --concurrency (the workers' setting), or
    --queue-depth without --queue: exit 2 naming the option."""
    src = write_csv(tmp_path / "in.csv", numbers(3))
    for args, says in (
        (["--queue", "--out", str(tmp_path / "o.ndjson")], "--queue needs --redis"),
        (["--queue", "--redis", "redis://127.0.0.1:1/0"], "--queue needs --out"),
        (["--queue", "--concurrency", "4"], "worker --concurrency N"),
        (["--queue-depth", "4", "--out", str(tmp_path / "o.ndjson")], "only with --queue"),
    ):
        done = await anyio.run_process(
            [*CLI, *cli(sandbox, src, *args)], env=cli_env(sandbox), check=False
        )
        assert done.returncode == 2
        assert says in done.stderr.decode()
    assert sandbox.stats.requests_total == 0


@pytest.mark.slow
async def test_a_stopped_worker_gives_its_unsent_batches_back(
    sandbox: Sandbox, redis_url: str, tmp_path: Path
) -> None:
    """SIGTERM: the worker exits 0 at once, handing the batches still waiting for a turn back
    to the stream, where the next worker sends them: all rows sent, none twice."""
    total = 200
    src = write_csv(tmp_path / "in.csv", numbers(total))
    out = tmp_path / "out.ndjson"
    process = await anyio.open_process(
        collector(sandbox, redis_url, src, out), env=cli_env(sandbox)
    )
    async with process:
        # 40 batches at 5 requests/s: the first worker holds far more than it can send soon.
        async with workers(sandbox, redis_url, 1, "--rate", "5") as (first,):
            await wait_for_lines(out, 5)
            first.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                assert await first.wait() == 0
        assert len(read_results(out)) < total  # the rest went back to the stream
        async with workers(sandbox, redis_url, 1, "--rate", "100"):
            with anyio.fail_after(120):
                assert await process.wait() == 0
    results = read_results(out)
    assert_once_each(results, sandbox, total)
    assert {r["status"] for r in results.values()} == {"sent"}


async def test_a_worker_beside_an_older_version_gives_its_batches_back_and_stops(
    sandbox: Sandbox, redis_url: str, tmp_path: Path
) -> None:
    """A worker that finds an older version's turn log in use stops with exit 2 naming it and
    hands its batches back: no row is recorded failed; a worker started later sends them."""
    total = 20
    src = write_csv(tmp_path / "in.csv", numbers(total))
    out = tmp_path / "out.ndjson"
    client = redis.asyncio.Redis.from_url(redis_url)
    old_log = f"kaleyra:limit:{{{sandbox.sid}:IN}}:log"
    await client.rpush(old_log, "1")
    process = await anyio.open_process(
        collector(sandbox, redis_url, src, out), env=cli_env(sandbox)
    )
    try:
        async with process:
            worker = ["worker", "--base-url", sandbox.base_url, "--redis", redis_url]
            refused = await run_cli(*worker, env=cli_env(sandbox))
            assert refused.returncode == 2, refused.stderr.decode()
            assert "older kaleyra_async shares this limit" in refused.stderr.decode()
            assert not out.exists() or read_results(out) == {}
            await client.delete(old_log)
            async with workers(sandbox, redis_url, 1):
                with anyio.fail_after(120):
                    assert await process.wait() == 0
    finally:
        await client.aclose()
    results = read_results(out)
    assert_once_each(results, sandbox, total)
    assert {r["status"] for r in results.values()} == {"sent"}


def test_queue_depth_option_bounds_the_batches_on_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--queue-depth reaches redis.queue_depth, the collector's bound on queued batches."""
    from kaleyra_async._cli import build_parser
    from kaleyra_async._cli_common import config_from

    monkeypatch.setenv("KALEYRA_SID", "HX1")
    monkeypatch.setenv("KALEYRA_API_KEY", "k")
    args = build_parser().parse_args(["send-bulk", "in.csv", "--queue", "--queue-depth", "7"])
    assert config_from(args).redis.queue_depth == 7


@pytest.mark.slow
async def test_a_queued_personalised_campaign_goes_in_sms_json_requests(
    sandbox: Sandbox, redis_url: str, tmp_path: Path
) -> None:
    """Rows with a body of their own, queued: the workers send them as /sms/json nodes, 25 a
    request, each body reaching the ledger for exactly its number, one line per row."""
    total = 120
    lines = ["to,body"]
    lines += [f"{to},Hi Asha{i} your order has shipped" for i, to in enumerate(numbers(total))]
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.ndjson"
    async with workers(sandbox, redis_url, 2, "--rate", "200"):
        done = await anyio.run_process(
            collector(sandbox, redis_url, src, out, "--json-batch-size", "25"),
            env=cli_env(sandbox), check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()[-800:]
    results = read_results(out)
    assert_once_each(results, sandbox, total)
    ledger = sandbox.ledger_records()
    bodies = {r.recipient: r.body for r in ledger}
    expected = {to: f"Hi Asha{i} your order has shipped" for i, to in enumerate(numbers(total))}
    assert bodies == expected
    per_request = collections.Counter(r.request_id for r in ledger)
    assert sorted(per_request.values()) == [20] + [25] * 4


def test_a_worker_has_a_connection_for_every_batch_in_hand() -> None:
    """128 batches in hand against a 64-connection pool: the worker's pool grows to 128 (an
    admitted request must not wait for a connection); a larger pool is kept."""
    from kaleyra_async._cli_queue import with_connections
    from kaleyra_async._config import Config, HttpConfig

    config = Config(sid="HX1", api_key="k", http=HttpConfig(max_connections=64))
    assert with_connections(config, 128).http.max_connections == 128
    assert with_connections(config, 16).http.max_connections == 64
