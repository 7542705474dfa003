"""The retry policy: which failures are sent again and how long to wait (the tenacity adapter).

Only this module imports tenacity, and tenacity's types never leave it. The decision to retry is
made by the error itself (``KaleyraError.safe_to_retry`` / ``fate_unknown``, see
``_exceptions``); this module never looks at status codes. ``reraise=True`` makes the caller see
our exception, never tenacity's ``RetryError``.

The backoff maths is a plain function, :func:`backoff_s`, tested without an event loop.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from ._config import RetryPolicy
from ._exceptions import KaleyraError, RateLimitError

__all__ = ["OnRetry", "backoff_s", "call_with_retry", "should_retry"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Called before each wait with the error, the number of the attempt that failed and the wait.
OnRetry = Callable[[KaleyraError, int, float], None]


def should_retry(exc: BaseException, policy: RetryPolicy) -> bool:
    """True when ``exc`` may be sent again under ``policy``.

    Safe failures (nothing was sent) always qualify; failures whose fate is unknown only when
    ``policy.retry_ambiguous`` accepts that an SMS may then go out twice.
    """
    if not isinstance(exc, KaleyraError):
        return False
    return exc.safe_to_retry or (policy.retry_ambiguous and exc.fate_unknown)


def backoff_s(
    policy: RetryPolicy,
    failed_attempts: int,
    *,
    retry_after_s: float | None = None,
    jitter: float = 0.0,
) -> float:
    """The wait before the next attempt.

    ``initial_backoff_s * 2**(failed_attempts - 1)`` capped at ``max_backoff_s``, plus
    ``jitter * jitter_s`` (callers pass ``random.random()``), and never less than the server's
    ``Retry-After`` when it sent one.

    Args:
        policy: the retry settings.
        failed_attempts: attempts made so far (1 after the first failure).
        retry_after_s: the server's ``Retry-After``, if any.
        jitter: a number in [0, 1) scaling ``policy.jitter_s``.
    """
    exponent = max(0, failed_attempts - 1)
    # Cap the exponent before raising 2 to it: 2**1100 overflows a float.
    base = policy.initial_backoff_s * 2.0 ** min(exponent, 64)
    wait = min(base, policy.max_backoff_s) + jitter * policy.jitter_s
    if retry_after_s is not None:
        wait = max(wait, retry_after_s)
    return wait


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    on_retry: OnRetry | None = None,
) -> T:
    """Await ``fn()`` and send it again while the policy allows.

    Stops after ``policy.max_attempts`` attempts, or earlier when the next wait would take the
    time spent beyond ``policy.max_total_s``. Time spent is the larger of the wall-clock time
    since the first attempt and the sum of the waits (the latter keeps an injected ``sleep``
    deterministic in tests).

    Args:
        fn: makes one attempt; it is called once per attempt.
        policy: the retry settings.
        sleep: how to wait (injected in tests).
        on_retry: called before each wait, e.g. to count retries.

    Returns:
        What the successful attempt returned.

    Raises:
        KaleyraError: the last attempt's error.
        BaseException: anything that is not a KaleyraError passes through untouched.
    """
    # The first attempt runs outside tenacity: most calls succeed at once, and building the
    # retry machinery costs more than the rest of this function. A retryable failure is then
    # handed to tenacity as its attempt 1, so the waits and the stop rule see every attempt.
    try:
        return await fn()
    except KaleyraError as exc:
        if policy.max_attempts <= 1 or not should_retry(exc, policy):
            raise
        first: KaleyraError | None = exc

    async def attempt() -> T:
        nonlocal first
        if first is not None:
            exc, first = first, None
            raise exc
        return await fn()

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = exc.retry_after_s if isinstance(exc, RateLimitError) else None
        return backoff_s(
            policy, state.attempt_number, retry_after_s=retry_after, jitter=random.random()
        )

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        spent_s = max(state.idle_for, state.seconds_since_start or 0.0)
        return spent_s + state.upcoming_sleep > policy.max_total_s

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        assert isinstance(exc, KaleyraError)
        logger.info(
            "attempt %d failed (%s); retrying in %.2f s",
            state.attempt_number,
            exc.code,
            state.upcoming_sleep,
        )
        if on_retry is not None:
            on_retry(exc, state.attempt_number, state.upcoming_sleep)

    retrying = AsyncRetrying(
        sleep=sleep,
        stop=stop,
        wait=wait,
        retry=retry_if_exception(lambda exc: should_retry(exc, policy)),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(attempt)
