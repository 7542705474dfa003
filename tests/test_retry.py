"""Retry policy: what is resent, how long we wait, when we stop, and what the caller sees."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from kaleyra_async._config import RetryPolicy
from kaleyra_async._exceptions import (
    APIError,
    AuthenticationError,
    ConnectError,
    KaleyraError,
    RateLimitError,
    RejectedError,
    ResponseLostError,
    ServerError,
    ValidationError,
)
from kaleyra_async._retry import backoff_s, call_with_retry, should_retry
from tests.conftest import Sleeps

NO_JITTER = RetryPolicy(jitter_s=0.0)


def failing(
    *errors: BaseException, result: str = "ok"
) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A coroutine function raising ``errors`` in turn, then returning ``result``."""
    calls: list[int] = []

    async def fn() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return fn, calls


def server(status: int) -> ServerError:
    return ServerError("boom", status_code=status)


def rate_limited(retry_after_s: float | None = None) -> RateLimitError:
    return RateLimitError("slow down", status_code=429, retry_after_s=retry_after_s)


# -- pure backoff maths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failed", "expected"),
    [
        pytest.param(1, 0.25, id="first"),
        pytest.param(2, 0.5, id="second"),
        pytest.param(3, 1.0, id="third"),
        pytest.param(7, 10.0, id="capped"),
        pytest.param(5000, 10.0, id="huge-exponent-no-overflow"),
    ],
)
def test_backoff_doubles_from_initial_and_is_capped(failed: int, expected: float) -> None:
    """initial_backoff_s * 2**(n-1), never above max_backoff_s."""
    assert backoff_s(NO_JITTER, failed) == expected


def test_backoff_adds_jitter_on_top_of_the_cap() -> None:
    """Jitter (0..jitter_s) is added after capping, so capped retries still spread out."""
    policy = RetryPolicy(max_backoff_s=1.0, jitter_s=0.5)
    assert backoff_s(policy, 10, jitter=0.5) == 1.25


@pytest.mark.parametrize(
    ("retry_after_s", "expected"),
    [
        pytest.param(3.0, 3.0, id="longer-than-backoff-wins"),
        pytest.param(0.1, 0.25, id="shorter-than-backoff-ignored"),
        pytest.param(None, 0.25, id="absent"),
    ],
)
def test_backoff_honours_retry_after(retry_after_s: float | None, expected: float) -> None:
    """We wait at least the server's Retry-After."""
    assert backoff_s(NO_JITTER, 1, retry_after_s=retry_after_s) == expected


@pytest.mark.parametrize(
    ("exc", "ambiguous", "expected"),
    [
        pytest.param(ConnectError("refused"), False, True, id="connect-error"),
        pytest.param(rate_limited(), False, True, id="429"),
        pytest.param(server(503), False, True, id="503"),
        pytest.param(server(500), False, False, id="500-not-by-default"),
        pytest.param(server(500), True, True, id="500-when-ambiguous-allowed"),
        pytest.param(ResponseLostError("timeout"), False, False, id="lost-not-by-default"),
        pytest.param(ResponseLostError("timeout"), True, True, id="lost-when-ambiguous-allowed"),
        pytest.param(RejectedError("bad", status_code=400), True, False, id="400-never"),
        pytest.param(AuthenticationError("no", status_code=401), True, False, id="401-never"),
        pytest.param(ValidationError("to", "r", "bad"), True, False, id="validation-never"),
        pytest.param(RuntimeError("bug"), True, False, id="foreign-never"),
    ],
)
def test_should_retry(exc: BaseException, ambiguous: bool, expected: bool) -> None:
    """Only safe failures, plus fate-unknown ones when retry_ambiguous is set, are resent."""
    assert should_retry(exc, RetryPolicy(retry_ambiguous=ambiguous)) is expected


# -- the retry loop ----------------------------------------------------------------------------


async def test_success_first_time_makes_one_call_and_no_wait() -> None:
    """No failure: one attempt, no sleep."""
    fn, calls = failing()
    sleeps = Sleeps()
    assert await call_with_retry(fn, NO_JITTER, sleep=sleeps) == "ok"
    assert calls == [1]
    assert sleeps.waits == []


async def test_retryable_failures_are_retried_with_growing_waits() -> None:
    """Two 503s then success: three calls, waits 0.25 then 0.5."""
    fn, calls = failing(server(503), ConnectError("refused"))
    sleeps = Sleeps()
    seen: list[tuple[str, int, float]] = []
    result = await call_with_retry(
        fn, NO_JITTER, sleep=sleeps, on_retry=lambda e, n, w: seen.append((e.code, n, w))
    )
    assert result == "ok"
    assert calls == [1, 2, 3]
    assert sleeps.waits == [0.25, 0.5]
    assert seen == [("HTTP503", 1, 0.25), ("connect_error", 2, 0.5)]


async def test_retry_after_is_honoured() -> None:
    """A 429 with Retry-After: 7 waits at least 7 s before the next attempt."""
    fn, _ = failing(rate_limited(7.0))
    sleeps = Sleeps()
    await call_with_retry(fn, RetryPolicy(), sleep=sleeps)
    assert sleeps.waits[0] >= 7.0


async def test_jitter_stays_within_jitter_s() -> None:
    """Each wait is the backoff plus 0..jitter_s."""
    fn, _ = failing(*(server(503) for _ in range(4)))
    sleeps = Sleeps()
    await call_with_retry(fn, RetryPolicy(jitter_s=0.1), sleep=sleeps)
    for n, wait in enumerate(sleeps.waits, start=1):
        assert backoff_s(NO_JITTER, n) <= wait < backoff_s(NO_JITTER, n) + 0.1


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(server(500), id="500"),
        pytest.param(ResponseLostError("read timeout"), id="response-lost"),
        pytest.param(RejectedError("bad", status_code=400), id="400"),
    ],
)
async def test_non_retryable_error_is_raised_after_one_attempt(exc: KaleyraError) -> None:
    """The caller gets our own exception (not tenacity's) after one call."""
    fn, calls = failing(exc)
    sleeps = Sleeps()
    with pytest.raises(type(exc)) as info:
        await call_with_retry(fn, NO_JITTER, sleep=sleeps)
    assert info.value is exc
    assert calls == [1]
    assert sleeps.waits == []


async def test_ambiguous_errors_are_retried_when_allowed() -> None:
    """retry_ambiguous resends a 500 and a lost response."""
    fn, calls = failing(server(500), ResponseLostError("reset"))
    result = await call_with_retry(
        fn, RetryPolicy(retry_ambiguous=True, jitter_s=0), sleep=Sleeps()
    )
    assert result == "ok"
    assert len(calls) == 3


async def test_stops_after_max_attempts() -> None:
    """max_attempts=3: three calls, the last one's error raised."""
    errors = [server(503) for _ in range(5)]
    fn, calls = failing(*errors)
    with pytest.raises(ServerError) as info:
        await call_with_retry(fn, RetryPolicy(max_attempts=3, jitter_s=0), sleep=Sleeps())
    assert info.value is errors[2]
    assert len(calls) == 3


async def test_stops_when_the_next_wait_would_exceed_max_total() -> None:
    """Waits 1+2 fit in 4 s; the next (4 s) would not, so we stop after 3 attempts."""
    policy = RetryPolicy(
        max_attempts=10, initial_backoff_s=1, max_backoff_s=100, jitter_s=0, max_total_s=4
    )
    fn, calls = failing(*(server(503) for _ in range(10)))
    sleeps = Sleeps()
    with pytest.raises(ServerError):
        await call_with_retry(fn, policy, sleep=sleeps)
    assert sleeps.waits == [1, 2]
    assert len(calls) == 3


async def test_retry_after_beyond_the_budget_stops_at_once() -> None:
    """A Retry-After longer than max_total_s is not waited out: the 429 is raised."""
    fn, calls = failing(rate_limited(120.0))
    with pytest.raises(RateLimitError) as info:
        await call_with_retry(fn, RetryPolicy(max_total_s=60), sleep=Sleeps())
    assert info.value.retry_after_s == 120.0
    assert len(calls) == 1


async def test_foreign_exceptions_pass_through_untouched() -> None:
    """A bug in fn (not a KaleyraError) is neither retried nor wrapped."""
    fn, calls = failing(KeyError("x"))
    with pytest.raises(KeyError):
        await call_with_retry(fn, RetryPolicy(), sleep=Sleeps())
    assert calls == [1]


def test_api_error_subclass_sanity() -> None:
    """The classes used above keep the retry semantics _exceptions promises."""
    assert isinstance(rate_limited(), APIError)
    assert rate_limited().safe_to_retry
    assert server(502).fate_unknown


async def test_single_attempt_policy_never_retries() -> None:
    """max_attempts=1 raises even a safe failure at once."""
    fn, calls = failing(rate_limited(1.0))
    sleeps = Sleeps()
    with pytest.raises(RateLimitError):
        await call_with_retry(fn, RetryPolicy(max_attempts=1), sleep=sleeps)
    assert calls == [1]
    assert sleeps.waits == []
