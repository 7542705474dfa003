"""RequestLimiter.pause (a 429's Retry-After): it holds every new admission, reaches requests
already waiting, extends and never shortens, and the rate holds across its end; the limiter's
arguments. Virtual-clock loop as in test_ratelimit.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kaleyra_async._ratelimit import RequestLimiter
from tests.test_ratelimit import _stamp_acquires, max_in_window, run


def test_pause_holds_every_new_admission() -> None:
    """After pause(2), no request, OTP or bulk, is admitted before 2 s have passed."""

    async def main() -> list[float]:
        limiter = RequestLimiter(100.0)
        await limiter.acquire(otp=False)
        limiter.pause(2.0)
        bulk, otp = await asyncio.gather(
            _stamp_acquires(limiter, 5), _stamp_acquires(limiter, 2, otp=True)
        )
        return bulk + otp

    times, _ = run(main())
    assert min(times) == pytest.approx(2.0, abs=1e-6)
    assert max_in_window(times) <= 100


@pytest.mark.parametrize(
    "pause_at_s",
    [
        # At 1 request/s the second request waits for a token until 0.5 s, then for the
        # 1-second window until 1 s: the pause can begin during either wait.
        pytest.param(0.25, id="waiting-for-a-token"),
        pytest.param(0.75, id="waiting-for-the-window"),
    ],
)
def test_pause_reaches_requests_already_waiting(pause_at_s: float) -> None:
    """A request already queued when the pause begins waits for the pause too."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        limiter = RequestLimiter(1.0)
        await limiter.acquire(otp=False)
        waiting = asyncio.create_task(limiter.acquire(otp=False))
        await asyncio.sleep(pause_at_s)
        limiter.pause(3.0)
        await waiting
        return loop.time()

    admitted_at, _ = run(main())
    assert admitted_at == pytest.approx(pause_at_s + 3.0, abs=1e-6)


@pytest.mark.parametrize(
    ("first_s", "second_s", "end_s"),
    [
        pytest.param(2.0, 1.0, 2.0, id="shorter-does-not-shorten"),
        pytest.param(1.0, 3.0, 3.0, id="longer-extends"),
        pytest.param(2.0, 0.0, 2.0, id="zero-does-not-cancel"),
    ],
)
def test_pausing_again_extends_never_shortens(
    first_s: float, second_s: float, end_s: float
) -> None:
    """The pause ends at the later of the two ends."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        limiter = RequestLimiter(100.0)
        limiter.pause(first_s)
        limiter.pause(second_s)
        await limiter.acquire(otp=False)
        return loop.time()

    admitted_at, _ = run(main())
    assert admitted_at == pytest.approx(end_s, abs=1e-6)


def test_pause_extended_while_waiting_is_honoured() -> None:
    """A waiter sleeping out a pause keeps waiting when the pause is extended meanwhile."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        limiter = RequestLimiter(100.0)
        limiter.pause(1.0)
        waiting = asyncio.create_task(limiter.acquire(otp=False))
        await asyncio.sleep(0.5)
        limiter.pause(2.0)  # now ends at 2.5
        await waiting
        return loop.time()

    admitted_at, _ = run(main())
    assert admitted_at == pytest.approx(2.5, abs=1e-6)


def test_rate_holds_across_the_end_of_a_pause() -> None:
    """Once a pause ends, requests resume at the pod rate; no 1-second window exceeds it."""

    async def main() -> list[float]:
        limiter = RequestLimiter(50.0, burst=5)
        first = await _stamp_acquires(limiter, 60)
        limiter.pause(1.5)
        return first + await _stamp_acquires(limiter, 100)

    times, _ = run(main())
    assert max_in_window(times) <= 50 + 5 - 1
    assert sorted(times)[60] - sorted(times)[59] >= 1.5 - 1e-6


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param(-1.0, id="negative"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="infinite"),
    ],
)
def test_pause_refuses_nonsense(seconds: float) -> None:
    """A negative or non-finite pause raises ValueError."""

    async def main() -> None:
        RequestLimiter(10.0).pause(seconds)

    with pytest.raises(ValueError, match="seconds must be"):
        run(main())


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"rate_per_s": 0}, id="zero-rate"),
        pytest.param({"rate_per_s": 10, "burst": 0}, id="zero-burst"),
        pytest.param({"rate_per_s": 10, "otp_share": 1.0}, id="otp-share-1"),
        pytest.param({"rate_per_s": 10, "recipients_per_s": -1}, id="negative-recipients"),
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    """Nonsense settings raise ValueError at construction."""
    with pytest.raises(ValueError, match="must be"):
        RequestLimiter(**kwargs)
