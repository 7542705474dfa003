"""RequestLimiter: the pod rate is never exceeded, bulk can use all of it, OTP overtakes bulk.

Every test runs on an event loop whose clock is virtual: when nothing is ready, the loop jumps
to the next timer instead of sleeping, so rate tests take milliseconds and are exact.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from kaleyra_async._ratelimit import WINDOW_S, RequestLimiter

T = TypeVar("T")


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` only moves when the loop would otherwise sleep."""

    def __init__(self, lateness_s: Callable[[], float] = lambda: 0.0) -> None:
        super().__init__(selectors.SelectSelector())
        self.now = 0.0
        selector = self._selector  # type: ignore[attr-defined]
        real_select = selector.select

        def select(timeout: float | None = None) -> Any:
            events = real_select(0)
            if timeout is not None:
                # Always move a little: like a real clock, and so that a timer set a rounding
                # error into the future cannot make the loop spin at one instant forever.
                self.now += max(timeout, 1e-9) + (lateness_s() if timeout > 0 else 0.0)
            return events

        selector.select = select

    def time(self) -> float:
        return self.now


def run(
    coro: Coroutine[Any, Any, T], lateness_s: Callable[[], float] = lambda: 0.0
) -> tuple[T, VirtualClockLoop]:
    loop = VirtualClockLoop(lateness_s)
    try:
        return loop.run_until_complete(coro), loop
    finally:
        loop.close()


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The most events in any half-open window [t, t + window_s)."""
    times = sorted(times)
    eps = 1e-9
    return max(bisect.bisect_left(times, t + window_s - eps) - i for i, t in enumerate(times))


async def _stamp_acquires(
    limiter: RequestLimiter, n: int, *, otp: bool = False, recipients: int = 1
) -> list[float]:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire(otp=otp, recipients=recipients)
        times.append(loop.time())

    await asyncio.gather(*(one() for _ in range(n)))
    return times


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        pytest.param(100.0, 1, id="100rps-burst1"),
        pytest.param(7.0, 1, id="7rps-burst1"),
        pytest.param(50.0, 5, id="50rps-burst5"),
    ],
)
def test_no_one_second_window_exceeds_the_rate(rate: float, burst: int) -> None:
    """Any 1-second window sees at most rate + burst - 1 requests; the mean is the rate."""

    async def main() -> list[float]:
        limiter = RequestLimiter(rate, burst=burst)
        return await _stamp_acquires(limiter, int(rate * 5))

    times, _ = run(main())
    assert max_in_window(times) <= rate + burst - 1
    mean_rate = (len(times) - burst) / (max(times) - min(times))
    assert mean_rate == pytest.approx(rate, rel=0.02)


@pytest.mark.parametrize(
    "rate", [pytest.param(100.0, id="100rps"), pytest.param(166.0, id="166rps")]
)
def test_late_wakeups_are_made_up_without_breaking_the_window(rate: float) -> None:
    """On a busy loop that wakes timers up to 40% of an interval late, the rate still holds."""
    interval_s = 1 / rate
    rng = random.Random(42)

    async def main() -> list[float]:
        return await _stamp_acquires(RequestLimiter(rate), int(rate * 5))

    times, _ = run(main(), lateness_s=lambda: rng.uniform(0, 0.4 * interval_s))
    assert max_in_window(times) <= rate
    assert len(times) / max(times) >= 0.97 * rate


def test_the_window_log_keeps_only_the_last_window() -> None:
    """A rate far above the traffic (``--rate 1000000`` for "no limit") must not keep every
    admission time: 50,000 OTP requests once grew the client by 8 MB doing so."""

    async def main() -> int:
        limiter = RequestLimiter(1_000_000.0)
        for _ in range(5_000):  # 1,000 a second for 5 s
            await limiter.acquire(otp=True)
            await asyncio.sleep(0.001)
        return len(limiter._admitted)

    kept, _ = run(main())
    assert kept <= 1_020  # the last 1.015 s at 1,000/s


def test_a_request_written_late_counts_in_the_window_from_its_write() -> None:
    """A request written 0.3 s after its admission counts from its write, so the writes, not
    only the admissions, keep every window within the rate; one written within 2 ms of its
    admission counts from the admission."""

    async def main() -> tuple[list[float], list[tuple[float, float]]]:
        limiter = RequestLimiter(10.0)
        loop = asyncio.get_running_loop()
        first = await limiter.acquire(otp=False)
        await asyncio.sleep(0.3)
        limiter.sent(first)  # its body went out 0.3 s after the admission
        written = [loop.time()]
        counted = [(limiter._admitted[-1].at_s, loop.time())]
        for index in range(10):
            ticket = await limiter.acquire(otp=False)
            admitted_at = loop.time()
            if index == 0:
                await asyncio.sleep(0.001)
                limiter.sent(ticket)  # 1 ms late
                counted.append((limiter._admitted[-1].at_s, admitted_at))
            else:
                limiter.sent(ticket)
            written.append(loop.time())
        return written, counted

    written, counted = run(main())[0]
    assert max_in_window(written, WINDOW_S) <= 10
    assert all(at_s == expected for at_s, expected in counted)


def test_a_request_written_after_its_admission_aged_out_still_counts_from_its_write() -> None:
    """A request written over a window after its admission (its place in the log gone, e.g. it
    waited that long for a connection) is logged again at its write: the window after it holds
    it and at most the rate less one more."""

    async def main() -> list[float]:
        limiter = RequestLimiter(10.0)
        loop = asyncio.get_running_loop()
        late = await limiter.acquire(otp=False)
        await asyncio.sleep(1.1)  # longer than the whole window: the next admission drops it
        written: list[float] = []
        for index in range(12):
            ticket = await limiter.acquire(otp=False)
            limiter.sent(ticket)
            written.append(loop.time())
            if index == 0:
                limiter.sent(late)  # its body finally goes out
                written.append(loop.time())
        return written

    written = run(main())[0]
    assert max_in_window(written, WINDOW_S) <= 10


def test_bulk_alone_uses_the_whole_rate() -> None:
    """With no OTP traffic, bulk requests get the full pod rate, not rate minus the OTP share."""

    async def main() -> list[float]:
        limiter = RequestLimiter(100.0, otp_share=0.5)
        return await _stamp_acquires(limiter, 1000)

    times, _ = run(main())
    assert len(times) / max(times) >= 0.95 * 100


def test_otp_alone_uses_the_whole_rate() -> None:
    """The OTP share is reserved, not a cap: an OTP-only workload gets the full pod rate."""

    async def main() -> list[float]:
        limiter = RequestLimiter(100.0, otp_share=0.2)
        return await _stamp_acquires(limiter, 300, otp=True)

    times, _ = run(main())
    assert max_in_window(times) <= 100
    assert (len(times) - 1) / max(times) >= 0.95 * 100


def test_an_otp_flood_leaves_bulk_a_share_of_the_rate() -> None:
    """Senders busy with OTP and bulk at once: OTP gets at least its reserved share, bulk is not
    starved (beyond the share, requests are served in arrival order), the total is the rate."""

    async def main() -> tuple[list[float], list[float]]:
        loop = asyncio.get_running_loop()
        limiter = RequestLimiter(100.0, otp_share=0.2)
        stamps: dict[bool, list[float]] = {True: [], False: []}

        async def sender(otp: bool) -> None:  # like the pipeline's: one request at a time
            while loop.time() < 10.0:
                await limiter.acquire(otp=otp)
                stamps[otp].append(loop.time())

        await asyncio.gather(*(sender(otp) for otp in (True, False) for _ in range(8)))
        return stamps[True], stamps[False]

    (otp, bulk), _ = run(main())
    assert max_in_window(sorted(otp + bulk)) <= 100
    assert len(otp) / 10 >= 0.2 * 100 * 0.95
    assert len(bulk) / 10 >= 0.3 * 100
    assert (len(otp) + len(bulk)) / 10 >= 0.95 * 100


def test_otp_overtakes_a_bulk_backlog() -> None:
    """With 500 bulk requests queued, an OTP request gets through within ~2 token intervals."""

    async def main() -> tuple[float, float, int]:
        loop = asyncio.get_running_loop()
        limiter = RequestLimiter(100.0, otp_share=0.2)
        bulk_done = 0

        async def bulk() -> None:
            nonlocal bulk_done
            await limiter.acquire(otp=False)
            bulk_done += 1

        tasks = [asyncio.create_task(bulk()) for _ in range(500)]
        await asyncio.sleep(0.5)  # virtual: about 50 bulk requests go through, 450 wait
        started = loop.time()
        await limiter.acquire(otp=True)
        otp_wait = loop.time() - started
        done_then = bulk_done
        await asyncio.gather(*tasks)
        return otp_wait, loop.time(), done_then

    (otp_wait, end, done_then), _ = run(main())
    assert otp_wait <= 2 * 0.01 + 1e-6
    assert done_then < 100  # the backlog really was there
    # The total stayed at the pod rate (less the 1.5% jitter margin of the window log).
    assert 501 / 100 - 0.03 <= end <= 501 / 100 * 1.015 + 0.03


def test_otp_and_bulk_together_never_exceed_the_rate() -> None:
    """Mixed OTP and bulk traffic shares one total budget."""

    async def main() -> list[float]:
        limiter = RequestLimiter(50.0, otp_share=0.3)
        bulk = _stamp_acquires(limiter, 200)
        otp = _stamp_acquires(limiter, 40, otp=True)
        a, b = await asyncio.gather(bulk, otp)
        return a + b

    times, _ = run(main())
    assert max_in_window(times) <= 50


def test_recipients_budget_limits_recipients_per_second() -> None:
    """With recipients_per_s set, 100-recipient requests are paced by recipients, not requests."""

    async def main() -> list[float]:
        limiter = RequestLimiter(100.0, recipients_per_s=500)
        return await _stamp_acquires(limiter, 30, recipients=100)

    times, _ = run(main())
    # A bucket of 100 recipients leaking 500/s: at most 5 full requests per second after the
    # first, and never the request rate of 100/s.
    assert max_in_window(times) <= 6
    assert (len(times) - 1) / max(times) == pytest.approx(5, rel=0.05)


def test_large_requests_are_not_starved_by_small_ones() -> None:
    """Recipients waiters are served in arrival order, not smallest amount first."""

    async def main() -> list[str]:
        limiter = RequestLimiter(1000.0, recipients_per_s=100)
        order: list[str] = []

        async def one(name: str, recipients: int) -> None:
            await limiter.acquire(otp=False, recipients=recipients)
            order.append(name)

        await limiter.acquire(otp=False, recipients=100)  # empty the bucket
        await asyncio.gather(one("big", 100), *(one(f"small{i}", 1) for i in range(5)))
        return order

    order, _ = run(main())
    assert order[0] == "big"


def test_cancelled_waiter_gives_up_its_place() -> None:
    """Cancelling a queued acquire neither blocks the turnstile nor loses later waiters."""

    async def main() -> int:
        limiter = RequestLimiter(10.0)
        await limiter.acquire(otp=False)
        waiters = [asyncio.create_task(limiter.acquire(otp=False)) for _ in range(5)]
        await asyncio.sleep(0)
        waiters[0].cancel()  # holds the turnstile
        waiters[2].cancel()  # queued
        await asyncio.gather(*waiters, return_exceptions=True)
        await asyncio.wait_for(limiter.acquire(otp=True), timeout=1)
        return sum(1 for w in waiters if not w.cancelled())

    completed, _ = run(main())
    assert completed == 3
