"""Give-backs and late writes reach the shared log when the process goes quiet right after, ride
on the reservations of a busy one, and are told on closing: two limiters on one real
redis-server stand for two processes."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from kaleyra_async._ratelimit import WINDOW_S
from kaleyra_async._redis import RedisLink
from kaleyra_async._redis_limiter import SharedLimiter, Turn

TURNS = "kaleyra:limit:{SID:IN}:turns"

pytestmark = pytest.mark.timeout(60)


async def _late(limiter: SharedLimiter, *, by_s: float) -> Turn:
    """A turn whose request is written ``by_s`` after its moment."""
    turn = await limiter.acquire(otp=False, admit=False)
    await anyio.sleep(max(0.0, turn.at_s - time.monotonic()) + by_s)
    limiter.sent(turn)
    return turn


async def _logged(link: RedisLink, turn_id: int, unlike: float | None) -> float | None:
    """The turn's moment in the log, once it is no longer ``unlike`` (up to 5 s)."""
    for _ in range(500):
        moment = await link.client.zscore(TURNS, str(turn_id))
        if moment != unlike:
            return moment
        await anyio.sleep(0.01)
    raise AssertionError(f"the log still holds turn {turn_id} at {unlike}")


async def test_a_late_write_of_a_process_gone_quiet_moves_its_turn_for_the_others(
    redis_url: str,
) -> None:
    """A process writes a request 100 ms late and sends nothing more: the log still gets the
    write's moment, and another process's next turn a window later is counted from it."""
    quiet_link, other_link = RedisLink(redis_url), RedisLink(redis_url)
    quiet = SharedLimiter(quiet_link, scope="SID:IN", rate_per_s=1)  # a window holds one turn
    other = SharedLimiter(other_link, scope="SID:IN", rate_per_s=1)
    try:
        turn = await _late(quiet, by_s=0.1)
        moment = await _logged(other_link, turn.id, unlike=turn.redis_us)
        following = await other.acquire(otp=True, admit=False)  # OTP: no horizon to wait out
    finally:
        for limiter, link in ((quiet, quiet_link), (other, other_link)):
            await limiter.aclose()
            await link.aclose()
    assert moment is not None and moment >= turn.redis_us + 100_000
    # Counted from the turn's first moment, it would come 100 ms earlier than the write allows.
    assert following.redis_us == moment + round(WINDOW_S * 1_000_000)


@pytest.mark.parametrize("late_ms", [0, 10])
async def test_a_write_within_2_ms_of_its_turn_stays_and_a_later_one_is_logged_at_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, late_ms: int
) -> None:
    """A write at its turn's local moment stays at the turn in the log (within 2 ms on a
    loopback Redis); one 10 ms later is logged at the write's moment on Redis's clock (the latest
    it can be), never earlier."""
    link = RedisLink(redis_url)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=20)
    try:
        turn = await limiter.acquire(otp=False, admit=False)
        uncertainty_us = round(limiter._clock.uncertainty_s * 1_000_000)
        write_s = turn.at_s + late_ms / 1000
        with monkeypatch.context() as patch:
            patch.setattr("kaleyra_async._redis_limiter.time.monotonic", lambda: write_s)
            limiter.sent(turn)
        await limiter.aclose()
        moment = await link.client.zscore(TURNS, str(turn.id))
    finally:
        await link.aclose()
    # The write's latest moment on Redis's clock is the clock's uncertainty past the local one.
    late_us = late_ms * 1000 + uncertainty_us
    expected = turn.redis_us if late_us <= 2_000 else turn.redis_us + late_us
    assert moment is not None and abs(moment - expected) <= 2  # µs rounding


@pytest.mark.parametrize("how", ["released", "cancelled"])
async def test_a_turn_a_process_gone_quiet_gives_back_leaves_the_log(
    redis_url: str, how: str
) -> None:
    """A turn abandoned before its write (released) or whose wait was cancelled leaves the log
    though its process asks no other turn (the turn before it stays: no expiry did this)."""
    link = RedisLink(redis_url)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=10)  # the second turn 50 ms on
    try:
        kept = await limiter.acquire(otp=False, admit=False)
        unused = await limiter.acquire(otp=False, admit=False)
        assert await link.client.zscore(TURNS, str(unused.id)) == unused.redis_us
        if how == "released":
            limiter.release(unused)
        else:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await limiter.admit(unused)
        assert await _logged(link, unused.id, unlike=unused.redis_us) is None
        assert await link.client.zscore(TURNS, str(kept.id)) == kept.redis_us
    finally:
        await limiter.aclose()
        await link.aclose()


async def test_closing_tells_the_log_at_once_even_while_cancelled(redis_url: str) -> None:
    """A late write just before the limiter closes (the end of a run, Ctrl-C): the close
    moves the turn before it returns, though the closer is being cancelled."""
    link = RedisLink(redis_url)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=20)
    try:
        turn = await _late(limiter, by_s=0.05)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await limiter.aclose()
        moment = await link.client.zscore(TURNS, str(turn.id))
    finally:
        await link.aclose()
    assert moment is not None and moment >= turn.redis_us + 50_000


class _CountingLink(RedisLink):
    """Counts the limiter's script calls by the turns each asked for."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.asked: list[int] = []

    def script(self, source: str) -> Any:
        run = super().script(source)

        async def counted(keys: Sequence[str], args: Sequence[Any]) -> Any:
            # ARGV: 13 values, the ids given back, the (id, moment) pairs moved, one per turn.
            self.asked.append(len(args) - 13 - args[11] - 2 * args[12])
            return await run(keys, args)

        return counted


async def test_a_busy_process_s_late_writes_ride_on_its_reservations(redis_url: str) -> None:
    """Eight senders each write 25 requests 5 ms late, reserving the next one after the answer
    (10 ms): every move reaches the log, carried by the reservations rather than by calls of
    their own (a call per late write would make about 200)."""
    senders, each = 8, 25
    link = _CountingLink(redis_url)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=400)
    turns: list[Turn] = []

    async def sender() -> None:
        for _ in range(each):
            turns.append(await _late(limiter, by_s=0.005))
            await anyio.sleep(0.01)  # the answer

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(senders):
                tg.start_soon(sender)
        await limiter.aclose()
        log = dict(await link.client.zrange(TURNS, 0, -1, withscores=True))
    finally:
        await link.aclose()
    assert len(turns) == senders * each
    assert all(log[str(t.id).encode()] >= t.redis_us + 5_000 for t in turns)
    assert link.asked.count(0) < len(turns) / 10


async def _acquire_with_delays(redis_url: str, delays_s: Sequence[float]) -> None:
    """One OTP turn per delay, each its own script call, answered that much later."""
    link = RedisLink(redis_url)
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=1000)
    reserve = limiter._reserve
    pending = list(delays_s)

    async def delayed(otp: bool, recipients: list[int]) -> list[int]:
        await anyio.sleep(pending.pop(0))
        return await reserve(otp, recipients)

    limiter._reserve = delayed  # type: ignore[method-assign]
    try:
        for _ in delays_s:
            await limiter.acquire(otp=True, admit=False)
    finally:
        await limiter.aclose()
        await link.aclose()


async def test_a_slow_first_call_is_not_a_slow_redis_but_slow_calls_are(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The first calls open a connection and load the script: one slow call is not warned
    about; calls that are all slow are, once the clock holds enough of them."""
    caplog.set_level(logging.WARNING, logger="kaleyra_async._redis_limiter")
    await _acquire_with_delays(redis_url, [0.03] + [0.0] * 11)
    assert "Redis answers in" not in caplog.text
    await _acquire_with_delays(redis_url, [0.01] * 12)
    assert "Redis answers in" in caplog.text
