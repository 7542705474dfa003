"""Queued campaigns when Redis is lost: the collector leaves what it queued to --resume, a
wrong URL leaves nothing behind, and a worker leaves its batches for another to claim."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest

from kaleyra_async.sandbox import Sandbox
from tests.conftest import CLI, RedisServer, cli_env, free_port
from tests.test_cli_e2e import numbers, read_results, wait_for_lines, write_csv
from tests.test_queue import assert_once_each, collector, wait_for_readers, workers

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
        [*CLI, "worker", "--base-url", sandbox.base_url, "--redis", url, "--rate", "20", *args],
        env=cli_env(sandbox),
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
        [*CLI, "worker", "--base-url", sandbox.base_url, "--redis", url, "--config", config,
         "--rate", "20"],
        env=cli_env(sandbox),
    )  # fmt: skip
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
