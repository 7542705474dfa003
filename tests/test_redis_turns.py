"""The shared limiter's Lua script, called raw against a real redis-server: give-backs, moves,
ids that outlive the keys, and a call resent after a lost reply."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
import redis.exceptions

from kaleyra_async import _redis
from kaleyra_async._redis import RedisLink
from kaleyra_async._redis_limiter import SharedLimiter
from kaleyra_async._redis_turns import RESERVE

pytestmark = pytest.mark.timeout(60)

_KEYS = [f"t:{name}" for name in ("tat", "turns", "otp", "pause", "rcpt", "ids", "log")]
_INTERVAL, _CAP, _WINDOW, _RECORD_MS = 250_000, 4, 1_015_000, 5_000
_calls = iter(range(1, 1 << 30))


async def _call(
    script: Any,
    wanted: int,
    *,
    give: Sequence[int] = (),
    late: Sequence[int] = (),
    nonce: str = "",
) -> list[int]:
    """One call of the raw script at 4 turns/s (a window holds 4): its answer as it came."""
    keys = [*_KEYS, f"t:call:{nonce or next(_calls)}"]
    args = [_INTERVAL, 0, _CAP, _WINDOW, 10**7, 0, 0, 0, _RECORD_MS, 0, 0, len(give)]
    args += [len(late) // 2, *give, *late, *([0] * wanted)]
    return [int(value) for value in await script(keys, args)]


def _granted(answer: list[int]) -> dict[int, int]:
    """The granted turns' moments by id."""
    *waits, _hint, now, first = answer
    return {first + index: now + wait for index, wait in enumerate(waits)}


async def _reserve(
    script: Any, wanted: int, *, give: Sequence[int] = (), late: Sequence[int] = ()
) -> dict[int, int]:
    return _granted(await _call(script, wanted, give=give, late=late))


async def test_a_call_resent_after_a_lost_reply_gets_its_first_answer_and_no_more_turns(
    redis_url: str,
) -> None:
    """The same call (its nonce) run twice, as RedisLink.call resends it when the reply was
    lost: the second run answers what the first did and grants nothing; a new call goes on."""
    link = RedisLink(redis_url)
    script = link.script(RESERVE)
    try:
        first = await _call(script, 3, nonce="n1")
        again = await _call(script, 3, nonce="n1")
        log = await link.client.zrange("t:turns", 0, -1, withscores=True)
        record_ms = await link.client.pttl("t:call:n1")
        following = _granted(await _call(script, 1, nonce="n2"))
    finally:
        await link.aclose()
    assert again == first
    assert sorted((int(i), int(moment)) for i, moment in log) == sorted(_granted(first).items())
    assert 0 < record_ms <= _RECORD_MS  # kept while a resend may come, then gone
    # Had the resend granted 3 more, this turn would come a whole 3 intervals later.
    assert list(following.values()) == [max(_granted(first).values()) + _INTERVAL]


class _LossyLink(RedisLink):
    """Loses the reply of its first script call after Redis ran it (a connection cut)."""

    lost = False

    def script(self, source: str) -> Any:
        run = super().script(source)

        async def lossy(keys: Sequence[str], args: Sequence[Any]) -> Any:
            answer = await run(keys, args)
            if not self.lost:
                self.lost = True
                raise redis.exceptions.ConnectionError("connection lost reading the reply")
            return answer

        return lossy


async def test_the_limiter_s_call_resent_after_a_lost_reply_leaves_one_turn_in_the_log(
    redis_url: str,
) -> None:
    """The limiter's reservation whose reply was lost is resent by RedisLink.call: the request
    gets the turn the first run granted, and the log holds that turn alone."""
    link = _LossyLink(redis_url)
    await _one_turn_alone_in_the_log(link)
    assert link.lost


async def _one_turn_alone_in_the_log(link: RedisLink) -> None:
    """A limiter on ``link`` reserves one turn: the log then holds that turn alone."""
    limiter = SharedLimiter(link, scope="SID:IN", rate_per_s=20)
    try:
        turn = await limiter.acquire(otp=False, admit=False)
        log = await link.client.zrange("kaleyra:limit:{SID:IN}:turns", 0, -1, withscores=True)
    finally:
        await limiter.aclose()
        await link.aclose()
    assert [(int(i), int(moment)) for i, moment in log] == [(turn.id, turn.redis_us)]


async def test_a_turn_given_back_by_two_calls_counts_once(redis_url: str) -> None:
    """A call that ran but failed for its caller puts its give-back back, and the next call
    tells it again: the turn returns its interval to the GCRA once (ids are never reused, so
    nothing else leaves the log)."""
    link = RedisLink(redis_url)
    script = link.script(RESERVE)
    try:
        granted = await _reserve(script, 4)  # T, T+.25, T+.5, T+.75
        ids = list(granted)
        assert ids == sorted(ids) and len(set(ids)) == 4
        for _ in range(2):  # the second: told again after the first call failed
            assert await _reserve(script, 0, give=[ids[3]]) == {}
        following = await _reserve(script, 1)
    finally:
        await link.aclose()
    # Given back once, the next turn takes the freed T+.75; twice, it would take T+.5.
    assert list(following.values()) == [granted[ids[3]]]
    assert min(following) > ids[3]


async def test_a_late_write_moves_its_turn_and_the_window_follows_the_write(
    redis_url: str,
) -> None:
    """A request written 200 ms after its turn is logged at its write, once however often it
    is told: the request a window later is checked against the write."""
    link = RedisLink(redis_url)
    script = link.script(RESERVE)
    try:
        granted = await _reserve(script, 4)  # T, T+.25, T+.5, T+.75
        ids = list(granted)
        written = granted[ids[0]] + 200_000
        for _ in range(2):  # the second: told again after the first call failed
            assert await _reserve(script, 0, late=[ids[0], written]) == {}
        log = await link.client.zrange("t:turns", 0, -1, withscores=True)
        following = await _reserve(script, 1)
    finally:
        await link.aclose()
    assert [(int(i), int(moment)) for i, moment in log] == [
        (ids[0], written),
        *((i, granted[i]) for i in ids[1:]),
    ]
    # Without the move: T + window. The window's oldest turn is now the write.
    assert list(following.values()) == [written + _WINDOW]


async def test_a_report_outliving_the_keys_never_touches_a_newer_turn(redis_url: str) -> None:
    """The limit's keys expire after a quiet spell (or Redis restarts empty): a process's
    give-back or move still pending for an old turn must not hit another process's new turn,
    so ids go on from Redis's clock rather than starting again at 1."""
    link = RedisLink(redis_url)
    script = link.script(RESERVE)
    try:
        (old,) = await _reserve(script, 1)
        await link.client.delete(*_KEYS)  # what the keys' expiry does
        newer = await _reserve(script, 3)
        await _reserve(script, 0, give=[old], late=[old, 1])
        log = await link.client.zrange("t:turns", 0, -1, withscores=True)
    finally:
        await link.aclose()
    assert old not in newer
    assert sorted((int(i), int(moment)) for i, moment in log) == sorted(newer.items())


class _SlowLossLink(RedisLink):
    """Redis runs its first script call, but the reply never comes: the read times out after the
    socket timeout (``_SOCKET_TIMEOUT_S``), then Redis stays unreachable for most of the bounded
    wait, and the last resend gets through."""

    def __init__(self, url: str, *, unavailable_timeout_s: float) -> None:
        super().__init__(url, unavailable_timeout_s=unavailable_timeout_s)
        self.calls = 0

    def script(self, source: str) -> Any:
        run = super().script(source)
        failed_at = 0.0

        async def lossy(keys: Sequence[str], args: Sequence[Any]) -> Any:
            nonlocal failed_at
            self.calls += 1
            if self.calls == 1:
                await run(keys, args)
                await anyio.sleep(_redis._SOCKET_TIMEOUT_S)  # waiting for the lost reply
                failed_at = time.monotonic()
                raise redis.exceptions.TimeoutError("Timeout reading from socket")
            if time.monotonic() - failed_at < self.unavailable_timeout_s * 0.8:
                raise redis.exceptions.ConnectionError("Connection refused")
            return await run(keys, args)

        return lossy


@pytest.mark.slow
async def test_a_call_resent_at_the_end_of_the_bounded_wait_still_finds_its_record(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply lost to a read timeout, then Redis unreachable for the bounded wait: the resend
    comes a socket timeout plus that wait after the first run, and must still get the first
    run's answer (a record kept only the bounded wait would be gone: more turns granted, the
    first run's left in the log for nobody)."""
    monkeypatch.setattr(_redis, "_SOCKET_TIMEOUT_S", 1.5)  # 5 s in production: same shape
    link = _SlowLossLink(redis_url, unavailable_timeout_s=0.3)
    await _one_turn_alone_in_the_log(link)
    assert link.calls >= 3  # the lost reply, a refused retry, the resend that got through


async def test_a_late_write_whose_turn_was_trimmed_from_the_log_is_logged_again(
    redis_url: str,
) -> None:
    """The log keeps 2 × cap turns: a request written after as many newer turns were granted
    (a long wait for a connection) finds its turn gone, and is logged again at its write, so
    the windows after the write count it; a report whose moment is already out of every
    window changes nothing."""
    link = RedisLink(redis_url)
    script = link.script(RESERVE)
    try:
        granted = await _reserve(script, 9)  # 2 windows' worth and one: the first is trimmed
        ids = list(granted)
        before = await link.client.zrange("t:turns", 0, -1, withscores=True)
        written = granted[ids[-1]] + 10_000
        await _reserve(script, 0, late=[ids[0], written, ids[2], 1])
        log = await link.client.zrange("t:turns", 0, -1, withscores=True)
    finally:
        await link.aclose()
    assert ids[0] not in {int(i) for i, _ in before}
    assert sorted((int(i), int(moment)) for i, moment in log) == sorted(
        [(ids[0], written), *((i, granted[i]) for i in ids[2:])]
    )  # the log keeps its 8 newest: the write, not the oldest turn (T + .25)
