"""Redis's clock against ours, bounded by the script calls' timing (``_redis_clock``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaleyra_async._redis_clock import RedisClock

OFFSET = 1_700_000_000.0  # Redis's wall clock minus our monotonic clock


def test_one_call_bounds_a_moment_by_its_own_round_trip() -> None:
    clock = RedisClock()
    clock.observe(sent_s=10.0, answered_s=10.008, redis_s=10.002 + OFFSET)
    earliest, latest = clock.local_window(10.5 + OFFSET)
    assert earliest == pytest.approx(
        10.5 - 0.002, abs=1e-6
    )  # as if Redis ran the call as it was sent
    assert latest == pytest.approx(
        10.5 + 0.006, abs=1e-6
    )  # as if it ran the call as it was answered


def test_a_quick_call_tightens_what_a_slow_one_left_open() -> None:
    clock = RedisClock()
    clock.observe(sent_s=10.0, answered_s=10.008, redis_s=10.002 + OFFSET)  # a busy loop
    clock.observe(sent_s=10.1, answered_s=10.1004, redis_s=10.1002 + OFFSET)
    clock.observe(sent_s=10.2, answered_s=10.209, redis_s=10.208 + OFFSET)
    earliest, latest = clock.local_window(10.5 + OFFSET)
    # The quick call's 0.4 ms, widened by the most the clocks can drift in its 0.1 s of age.
    assert latest - earliest == pytest.approx(0.0004 + 2 * 5e-4 * 0.109, abs=1e-6)
    assert earliest <= 10.5 <= latest


def test_calls_older_than_a_second_no_longer_count() -> None:
    clock = RedisClock()
    clock.observe(sent_s=10.0, answered_s=10.0004, redis_s=10.0002 + OFFSET)
    clock.observe(sent_s=11.5, answered_s=11.508, redis_s=11.502 + OFFSET)
    earliest, latest = clock.local_window(12.0 + OFFSET)
    assert latest - earliest == pytest.approx(0.008, abs=1e-6)


def test_a_stepped_clock_starts_the_estimate_afresh() -> None:
    clock = RedisClock()
    clock.observe(sent_s=10.0, answered_s=10.0004, redis_s=10.0002 + OFFSET)
    # Redis's wall clock stepped back 50 ms: the bounds contradict the earlier call's.
    clock.observe(sent_s=10.1, answered_s=10.102, redis_s=10.101 + OFFSET - 0.05)
    earliest, latest = clock.local_window(10.5 + OFFSET - 0.05)
    assert (earliest, latest) == (pytest.approx(10.499, abs=1e-6), pytest.approx(10.501, abs=1e-6))


def test_nothing_observed_yet_is_an_error() -> None:
    with pytest.raises(LookupError):
        RedisClock().local_window(OFFSET)


@given(
    calls=st.lists(
        st.tuples(
            st.floats(0.0, 0.05),  # from sending to Redis running the script
            st.floats(0.0, 0.05),  # from Redis running it to the answer being read
            st.floats(0.0, 0.3),  # the gap before the next call
        ),
        min_size=1,
        max_size=40,
    ),
    ahead=st.floats(0.0, 1.0),
)
def test_the_true_moment_is_always_within_the_window(
    calls: list[tuple[float, float, float]], ahead: float
) -> None:
    """With a steady offset, a turn's true local moment lies between earliest and latest."""
    clock, now = RedisClock(), 100.0
    for to_redis, to_answer, gap in calls:
        clock.observe(now, now + to_redis + to_answer, now + to_redis + OFFSET)
        now += to_redis + to_answer + gap
    earliest, latest = clock.local_window(now + ahead + OFFSET)
    assert earliest - 1e-6 <= now + ahead <= latest + 1e-6
