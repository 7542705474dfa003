"""Sliding one-second windows: the rate limiter and the "busiest second" statistic.

Both keep only the timestamps inside the current window in a deque, so memory is bounded by the
rate, not by the length of the run. A window is half-open, ``(t - window_s, t]``: an event exactly
``window_s`` after another no longer shares a window with it.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SlidingWindowCounter", "SlidingWindowLimiter"]


class SlidingWindowCounter:
    """Counts events and remembers the most seen in any sliding window.

    The busiest window always ends at an event, so checking the count after each event finds the
    exact maximum over all windows.
    """

    __slots__ = ("_times", "max_count", "window_s")

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        #: The largest number of events seen in one window so far.
        self.max_count = 0

    def add(self, now_s: float) -> int:
        """Record an event at ``now_s`` (non-decreasing); return the count in its window."""
        times = self._times
        edge = now_s - self.window_s
        while times and times[0] <= edge:
            times.popleft()
        times.append(now_s)
        n = len(times)
        if n > self.max_count:
            self.max_count = n
        return n


class SlidingWindowLimiter:
    """Admits at most ``limit`` events in any sliding window (a strict sliding log).

    Only admitted events count, so a client that keeps knocking while throttled is let in again
    as soon as the window has room, not punished further.
    """

    __slots__ = ("_times", "limit", "window_s")

    def __init__(self, limit: int, window_s: float = 1.0) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def try_acquire(self, now_s: float) -> float:
        """Admit an event at ``now_s``: return 0.0, or the seconds to wait until one would be."""
        times = self._times
        edge = now_s - self.window_s
        while times and times[0] <= edge:
            times.popleft()
        if len(times) < self.limit:
            times.append(now_s)
            return 0.0
        return times[0] - edge
