"""Queued campaigns when Redis is lost: the collector leaves what it queued to --resume, a
wrong URL leaves nothing behind, and a worker leaves its batches for another to claim."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest

from kaleyra_async._bulk import BulkOptions
from kaleyra_async._queue_collector import _Campaign, _campaign_of, campaign_path_for
from kaleyra_async._resume import load_progress
from kaleyra_async.sandbox import Sandbox
from tests.conftest import RedisServer, cli_env, free_port
from tests.test_cli_e2e import numbers, read_results, wait_for_lines, write_csv
from tests.test_queue import (
    assert_once_each,
    collector,
    wait_for_readers,
    worker_argv,
    workers,
)

pytestmark = pytest.mark.timeout(180)


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", [{"latency_ms": 50.0}], indirect=True)
async def test_redis_lost_under_a_queued_campaign_leaves_its_rows_to_resume(
    sandbox: Sandbox, own_redis: RedisServer, tmp_path: Path
) -> None:
    """Redis unreachable mid-campaign (stopped with its data): the collector exits 2 naming
    --resume and records only what the workers had reported, never "unknown" for a batch it
    merely queued; with Redis back, --resume settles each row once from Redis and sends the
    rest (a batch the dead worker had marked is unknown, never resent)."""
    total = 200
    src = write_csv(tmp_path / "in.csv", numbers(total))
    out = tmp_path / "out.ndjson"
    config = tmp_path / "config.toml"
    config.write_text("[redis]\nunavailable_timeout_s = 1.0\n")
    url = own_redis.url
    assert own_redis.process is not None
    args = ["--config", config, "--claim-idle-s", "2"]
    first_worker = await anyio.open_process(
        worker_argv(sandbox, url, "--rate", "20", *args), env=cli_env(sandbox)
    )
    async with first_worker:
        await wait_for_readers(url, 1)
        process = await anyio.open_process(
            collector(sandbox, url, src, out, "--config", config), env=cli_env(sandbox)
        )
        async with process:
            await wait_for_lines(out, 20)
            own_redis.process.send_signal(signal.SIGSTOP)
            try:
                with anyio.fail_after(60):
                    code = await process.wait()
                assert process.stderr is not None
                err = (await process.stderr.receive(1 << 16)).decode()
            finally:
                first_worker.send_signal(signal.SIGKILL)  # it dies with batches in hand
                own_redis.process.send_signal(signal.SIGCONT)
    assert code == 2, err
    assert "Redis" in err and "--resume" in err
    first = read_results(out)
    assert 20 <= len(first) < total
    assert {r["status"] for r in first.values()} == {"sent"}
    in_flight = load_progress(out).unresolved  # the batches it queued: neither recorded nor
    assert in_flight and not in_flight & set(first)  # released, for --resume to look up

    async with workers(sandbox, url, 1, "--rate", "200", *args):
        done = await anyio.run_process(
            collector(sandbox, url, src, out, "--config", config, "--resume"),
            env=cli_env(sandbox),
            check=False,
        )
    assert done.returncode in (0, 1), done.stderr.decode()
    results = read_results(out)
    assert_once_each(results, sandbox, total)
    for row, record in first.items():
        assert results[row] == record
    unknown = [r for r in results.values() if r["status"] != "sent"]
    assert {r["status"] for r in unknown} <= {"unknown"}
    assert {r["error_code"] for r in unknown} <= {"worker_lost"}
    # Only batches the dead worker had marked are unknown; the rest were sent by the resume.
    assert any(r["status"] == "sent" for row, r in results.items() if row not in first)


async def test_an_unreachable_redis_url_leaves_nothing_behind(
    sandbox: Sandbox, redis_url: str, tmp_path: Path
) -> None:
    """A wrong --redis URL: exit 2 naming Redis before any row is read, so the corrected
    command (no --resume, no --overwrite) sends every row."""
    total = 30
    src = write_csv(tmp_path / "in.csv", numbers(total))
    out = tmp_path / "out.ndjson"
    config = tmp_path / "config.toml"
    config.write_text("[redis]\nunavailable_timeout_s = 0.5\n")
    wrong = f"redis://127.0.0.1:{free_port()}/0"
    refused = await anyio.run_process(
        collector(sandbox, wrong, src, out, "--config", config), env=cli_env(sandbox), check=False
    )
    assert refused.returncode == 2, refused.stderr.decode()
    assert "Redis" in refused.stderr.decode() and "unreachable" in refused.stderr.decode()
    assert not out.exists() or out.read_bytes() == b""
    async with workers(sandbox, redis_url, 1, "--rate", "200"):
        done = await anyio.run_process(
            collector(sandbox, redis_url, src, out), env=cli_env(sandbox), check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    results = read_results(out)
    assert_once_each(results, sandbox, total)
    assert {r["status"] for r in results.values()} == {"sent"}


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", [{"latency_ms": 200.0}], indirect=True)
async def test_a_worker_losing_redis_leaves_its_batches_for_another_to_claim(
    sandbox: Sandbox, own_redis: RedisServer, tmp_path: Path
) -> None:
    """Redis unreachable under a worker with batches in hand: it exits 2 saying how many it
    left on the stream, without trying (and failing) to give each one back."""
    src = write_csv(tmp_path / "in.csv", numbers(400))
    out = tmp_path / "out.ndjson"
    config = tmp_path / "config.toml"
    config.write_text("[redis]\nunavailable_timeout_s = 0.5\n")
    url = own_redis.url
    worker = await anyio.open_process(
        worker_argv(sandbox, url, "--config", config, "--rate", "20"), env=cli_env(sandbox)
    )
    async with worker:
        await wait_for_readers(url, 1)
        process = await anyio.open_process(
            collector(sandbox, url, src, out, "--config", config), env=cli_env(sandbox)
        )
        async with process:
            await wait_for_lines(out, 10)
            own_redis.stop()
            try:
                with anyio.fail_after(60):
                    code = await worker.wait()
                assert worker.stderr is not None
                err = (await worker.stderr.receive(1 << 20)).decode()
            finally:
                if process.returncode is None:
                    process.kill()
    assert code == 2, err
    assert "could not give batch" not in err
    left = int(err.split(" left on the stream")[0].rsplit(", ", 1)[1])
    assert left > 0, err


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", [{"latency_ms": 100.0}], indirect=True)
async def test_a_campaign_resumed_on_a_redis_that_lost_it_resends_nothing(
    sandbox: Sandbox, own_redis: RedisServer, tmp_path: Path
) -> None:
    """Collector and workers killed, Redis restarted empty (no persistence): --resume cannot
    tell a batch that never reached the queue from one a worker sent and Redis forgot, so the
    rows that were in flight are unknown (inflight_at_crash), never resent; the rest are sent."""
    total = 300
    src = write_csv(tmp_path / "in.csv", numbers(total))
    out = tmp_path / "out.ndjson"
    url = own_redis.url
    args = worker_argv(sandbox, url, "--rate", "60")
    first_workers = [await anyio.open_process(args, env=cli_env(sandbox)) for _ in range(2)]
    try:
        await wait_for_readers(url, 2)
        process = await anyio.open_process(collector(sandbox, url, src, out), env=cli_env(sandbox))
        async with process:
            await wait_for_lines(out, 40)
            process.send_signal(signal.SIGKILL)
            await process.wait()
        await anyio.sleep(0.5)  # the workers go on sending what was queued
    finally:
        for worker in first_workers:
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            await worker.aclose()
    own_redis.stop()
    own_redis.start()  # the same port, nothing in it
    first = read_results(out)
    in_flight = load_progress(out).unresolved - set(first)
    assert in_flight

    async with workers(sandbox, url, 1, "--rate", "500"):
        done = await anyio.run_process(
            collector(sandbox, url, src, out, "--resume"), env=cli_env(sandbox), check=False
        )
    assert done.returncode == 1, done.stderr.decode()
    assert "not the server the campaign started on" in done.stderr.decode()
    results = read_results(out)
    assert_once_each(results, sandbox, total)
    unknown = {row for row, r in results.items() if r["status"] == "unknown"}
    assert unknown == in_flight
    assert {results[row]["error_code"] for row in unknown} == {"inflight_at_crash"}


def test_the_campaign_file_names_the_server_and_a_cut_short_one_is_a_new_campaign(
    tmp_path: Path,
) -> None:
    """``<results>.campaign`` is the id, then the Redis run_id (absent: an older version's,
    never trusted); an empty one (cut short) does not crash a resume."""
    out = tmp_path / "out.ndjson"
    path = campaign_path_for(out)
    resume = BulkOptions(out=str(out), resume=True)
    path.write_text("c1\nrun-a\n", encoding="ascii")
    assert _campaign_of(resume) == _Campaign("c1", "run-a", earlier=True)
    path.write_text("c1\n", encoding="ascii")
    assert _campaign_of(resume) == _Campaign("c1", None, earlier=True)
    path.write_text("", encoding="ascii")
    found = _campaign_of(resume)
    assert not found.earlier and found.new and found.id != "c1"
