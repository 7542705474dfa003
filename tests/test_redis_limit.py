"""The rate limit shared through Redis: real redis-server, real CLI processes, the sandbox
counting what arrives."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from kaleyra_async import KaleyraError, RedisUnavailableError
from kaleyra_async._cli_common import fast_loop
from kaleyra_async._ratelimit import WINDOW_S
from kaleyra_async._redis import RedisLink, redacted
from kaleyra_async._redis_limiter import SharedLimiter
from kaleyra_async.sandbox import Sandbox, SandboxConfig, SandboxProcess
from tests.conftest import CLI, RedisServer, cli_env, free_port, run_cli
from tests.test_cli_e2e import cli, numbers, read_results, wait_for_lines, write_csv

TURNS = "kaleyra:limit:{SID:IN}:turns"

pytestmark = pytest.mark.timeout(120)


def test_redacted_drops_the_password() -> None:
    """A Redis URL is shown without its user name and password."""
    assert redacted("redis://app:s3cret@cache.example:6380/2") == "redis://cache.example:6380/2"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


async def test_an_unreachable_redis_fails_after_the_bounded_wait_without_the_password() -> None:
    """No Redis at the URL: RedisUnavailableError after the bounded wait, password not in it."""
    link = RedisLink(f"redis://:s3cret@127.0.0.1:{free_port()}/0", unavailable_timeout_s=0.3)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=10)
    with anyio.fail_after(10), pytest.raises(RedisUnavailableError) as info:
        await limiter.acquire(otp=False)
    await link.aclose()
    assert "unreachable" in str(info.value)
    assert "s3cret" not in str(info.value) + repr(info.value)
    assert not info.value.safe_to_retry


async def test_otp_within_its_share_overtakes_another_process_s_bulk_backlog(
    redis_url: str,
) -> None:
    """An OTP turn comes within the bulk horizon while another process has 2 s of bulk queued."""
    rate = 20
    bulk_link, otp_link = RedisLink(redis_url), RedisLink(redis_url)
    bulk = SharedLimiter(bulk_link, scope="SID:IN", rate_per_s=rate)
    otp = SharedLimiter(otp_link, scope="SID:IN", rate_per_s=rate)
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(2 * rate):
                tg.start_soon(lambda: bulk.acquire(otp=False, admit=False))
            await anyio.sleep(0.2)  # the bulk line is waiting on Redis
            started = anyio.current_time()
            turn = await otp.acquire(otp=True, admit=False)
            otp_wait_s = turn.at_s - started
            tg.cancel_scope.cancel()
    finally:
        await bulk_link.aclose()
        await otp_link.aclose()
    # Behind 40 bulk requests it would wait ~2 s; within its share it waits one interval or
    # two (the bulk turn already granted, and its own).
    assert otp_wait_s < 3 / rate


async def test_a_turn_nobody_uses_is_given_back_for_the_next_request(redis_url: str) -> None:
    """A request cancelled while waiting for its turn gives the turn back: the next request
    gets the moment the unused turn freed, not one interval later."""
    link = RedisLink(redis_url)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=10)  # turns 100 ms apart
    try:
        first = await limiter.acquire(otp=False, admit=False)
        unused = await limiter.acquire(otp=False, admit=False)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await limiter.admit(unused)  # cancelled before its moment: never sent
        following = await limiter.acquire(otp=False, admit=False)
        log = await link.client.zrange(TURNS, 0, -1, withscores=True)
    finally:
        await link.aclose()
    # 100 ms apart, less the catch-up room of half an interval (50 ms worth is half a turn).
    assert unused.redis_us - first.redis_us == 50_000
    # Without the give-back it would come at unused + 100 ms; it takes the moment freed.
    assert following.redis_us == unused.redis_us
    assert sorted(int(moment) for _, moment in log) == [first.redis_us, following.redis_us]


@pytest.mark.slow
async def test_turns_given_back_never_let_a_window_hold_more_than_the_rate(
    redis_url: str,
) -> None:
    """Every third request gives its turn back; the turns used still never number more than
    the rate in any window the log keeps (a second and its jitter margin), long after the
    log's first ``rate`` entries."""
    rate = 200
    link = RedisLink(redis_url)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=rate)
    used: list[int] = []

    async def one(index: int) -> None:
        turn = await limiter.acquire(otp=False, admit=False)
        if index % 3:
            used.append(turn.redis_us)
            return
        with anyio.CancelScope() as scope:
            scope.cancel()
            await limiter.admit(turn)

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for index in range(3 * rate):
                    tg.start_soon(one, index)
    finally:
        await link.aclose()
    used.sort()
    assert len(used) == 2 * rate
    window_us = round(WINDOW_S * 1_000_000)
    crowded = [i for i in range(len(used) - rate) if used[i + rate] - used[i] < window_us]
    assert not crowded, f"{len(crowded)} windows hold more than {rate} turns"


@pytest.mark.slow
async def test_three_processes_share_one_limit_in_every_sliding_second(
    redis_url: str, tmp_path: anyio.Path
) -> None:
    """Three send-bulk processes, each told the full rate, together stay within it (the
    sandbox in its own process, as Kaleyra is, counting arrivals on its clock)."""
    rate, per_process = 30, 60
    async with SandboxProcess(SandboxConfig(rate_per_s=rate)) as sandbox:
        stats = await _three_processes(sandbox, redis_url, tmp_path, rate, per_process)
    assert stats["requests_total"] == 3 * per_process
    # Each alone would send 30/s: three without a shared limit would bring 90 in a second.
    assert stats["max_requests_in_1s"] <= rate
    assert stats["by_status"].get("429", 0) == 0


async def _three_processes(
    sandbox: SandboxProcess, redis_url: str, tmp_path: anyio.Path, rate: int, per_process: int
) -> dict[str, Any]:
    runs = []
    for i in range(3):
        src = write_csv(tmp_path / f"in{i}.csv", numbers(per_process, start=i * per_process))
        runs.append(("--out", tmp_path / f"out{i}.ndjson", src))
    results = []
    async with anyio.create_task_group() as tg:

        async def one(out: object, src: object) -> None:
            done = await run_cli(
                *cli(sandbox, src, "--out", out, "--rate", str(rate), "--batch-size", "1"),
                "--redis", redis_url, env=cli_env(sandbox),
            )  # fmt: skip
            results.append(done)

        for _, out, src in runs:
            tg.start_soon(one, out, src)
    assert all(done.returncode == 0 for done in results), [d.stderr for d in results]
    return await anyio.to_thread.run_sync(sandbox.fetch_stats)


@pytest.mark.slow
async def test_redis_stopped_mid_run_stops_the_run_with_nothing_unthrottled(
    sandbox: Sandbox, own_redis: RedisServer, tmp_path: anyio.Path
) -> None:
    """Redis killed mid-run: exit 2 naming Redis; no request without a turn; resume finishes."""
    total, rate = 200, 20
    src = write_csv(tmp_path / "in.csv", numbers(total))
    out = tmp_path / "out.ndjson"
    config = tmp_path / "config.toml"
    config.write_text("[redis]\nunavailable_timeout_s = 1.0\n")
    options = ["--out", out, "--batch-size", "1", "--config", config, "--redis", own_redis.url]
    args = [*cli(sandbox, src, *options), "--rate", str(rate)]
    process = await anyio.open_process([*CLI, *args], env=cli_env(sandbox))
    async with process:
        await wait_for_lines(out, 10)
        own_redis.stop()
        sent_at_stop = sandbox.stats.requests_total
        with anyio.fail_after(60):
            code = await process.wait()
        assert process.stderr is not None
        err = (await process.stderr.receive(1 << 16)).decode()
    assert code == 2, err
    assert "Redis" in err and "unreachable" in err
    first = read_results(out)
    assert {r["status"] for r in first.values()} == {"sent"}
    # Only turns granted before the stop (at most a horizon's worth) could still be used.
    assert sandbox.stats.requests_total == len(first) <= sent_at_stop + 2
    assert sandbox.stats.max_requests_in_1s <= rate

    own_redis.start()
    faster = [*cli(sandbox, src, *options), "--rate", "500", "--resume"]
    done = await run_cli(*faster, env=cli_env(sandbox))
    assert done.returncode == 0, done.stderr.decode()
    results = read_results(out)
    assert sorted(results) == list(range(1, total + 1))
    assert sandbox.stats.requests_total == total


async def test_an_older_version_sharing_the_limit_stops_the_run_with_rows_left_to_resume(
    sandbox: Sandbox, redis_url: str, tmp_path: anyio.Path
) -> None:
    """send-bulk finding an older version's turn log: exit 2 naming it, nothing sent and no row
    recorded as failed (a "failed" line is final); --resume sends them once it is gone."""
    src = write_csv(tmp_path / "in.csv", numbers(5))
    out = tmp_path / "out.ndjson"
    link = RedisLink(redis_url)
    try:
        await link.client.lpush(f"kaleyra:limit:{{{sandbox.sid}:IN}}:log", "1")
        options = [*cli(sandbox, src, "--out", out, "--redis", redis_url), "--rate", "50"]
        refused = await run_cli(*options, env=cli_env(sandbox))
        assert refused.returncode == 2, refused.stderr.decode()
        assert "older kaleyra_async shares this limit" in refused.stderr.decode()
        assert read_results(out) == {} and sandbox.stats.requests_total == 0
        await link.client.delete(f"kaleyra:limit:{{{sandbox.sid}:IN}}:log")
        done = await run_cli(*options, "--resume", env=cli_env(sandbox))
    finally:
        await link.aclose()
    assert done.returncode == 0, done.stderr.decode()
    assert {r["status"] for r in read_results(out).values()} == {"sent"}
    assert sandbox.stats.accepted_recipients == 5


async def test_the_limiter_logs_a_late_request_at_its_write(redis_url: str) -> None:
    """SharedLimiter.sent, called 50 ms after the turn's moment, moves that turn in the log to
    no earlier than the write, with the next call."""
    link = RedisLink(redis_url)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=20)
    try:
        late = await limiter.acquire(otp=False, admit=False)
        await anyio.sleep(max(0.0, late.at_s - time.monotonic()) + 0.05)
        limiter.sent(late)
        limiter.sent(late)  # a second call for the same write changes nothing
        assert await link.client.zscore(TURNS, str(late.id)) == late.redis_us
        await limiter.acquire(otp=False, admit=False)  # carries the move
        moment = await link.client.zscore(TURNS, str(late.id))
    finally:
        await link.aclose()
    assert moment is not None and late.redis_us + 50_000 <= moment < late.redis_us + 1_000_000


async def test_a_turn_is_never_used_early_when_the_loop_wakes_early(redis_url: str) -> None:
    """A loop whose timers fire early (uvloop's and libuv's do, by up to 1 ms) does not send
    before the turn: admit sleeps again until the moment has passed."""

    async def early(seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds - 0.003))

    link = RedisLink(redis_url)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=50, sleep=early)
    admitted: list[tuple[float, float]] = []
    try:
        for _ in range(5):
            turn = await limiter.acquire(otp=False)
            admitted.append((time.monotonic(), turn.at_s))
    finally:
        await link.aclose()
    assert all(now >= at_s for now, at_s in admitted)


def test_the_worker_runs_on_uvloop_when_it_is_installed() -> None:
    """The dev and redis extras bring uvloop; the worker's loop options ask for it."""
    pytest.importorskip("uvloop")
    assert fast_loop() == {"use_uvloop": True}


async def test_a_process_of_the_older_version_sharing_the_limit_is_refused(
    redis_url: str,
) -> None:
    """An older version kept its turn log in a list: while that list is alive, a newer process
    would hold the rate beside it, unseen. It refuses instead, naming the key."""
    link = RedisLink(redis_url)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=50)
    try:
        await link.client.lpush("kaleyra:limit:{SID:IN}:log", "1796420938278147")
        with pytest.raises(KaleyraError, match="older kaleyra_async shares this limit"):
            await limiter.acquire(otp=False)
        await link.client.delete("kaleyra:limit:{SID:IN}:log")
        assert (await limiter.acquire(otp=False)).id >= 1
    finally:
        await link.aclose()


async def test_turns_held_back_may_catch_up_by_50_ms_worth_and_no_more(redis_url: str) -> None:
    """At 2,000/s one call on an idle limit grants 1 + 100 turns at once (the burst, plus 50 ms
    worth to make up a stall the log caused), then one every 0.5 ms up to the 50 ms horizon."""
    link = RedisLink(redis_url)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=2000)
    try:
        *waits_us, hint_us, _now, _first_id = await limiter._reserve(False, [1] * 300)
    finally:
        await link.aclose()
    assert waits_us == [0] * 101 + [500 * k for k in range(1, 101)]
    assert hint_us > 0  # the rest must wait: bulk reserves no further ahead
