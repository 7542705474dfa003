"""Where Redis's clock stands against this process's monotonic clock, from the script calls'
own timing: each call read Redis's ``TIME`` somewhere between being sent and being answered.

Each call bounds the offset (Redis time minus local time): at least ``redis_now - answered``,
at most ``redis_now - sent``. The recent calls together bound it as tightly as the quickest of
them, so a turn's local moment is known to within that quickest round trip rather than the
current call's (a busy loop can take milliseconds to read a reply). Calls older than
``_MAX_AGE_S`` are dropped and older ones' bounds widened by the most the clocks can drift
apart meanwhile (a slewing wall clock runs up to 0.05 % off); bounds that contradict each other
(a stepped clock) start the estimate afresh.
"""

from __future__ import annotations

import collections
import math
from typing import Final

__all__ = ["RedisClock"]

_MAX_AGE_S: Final = 1.0
#: The most two clocks drift apart per second (a slewing wall clock runs up to 0.05 % off).
_DRIFT: Final = 5e-4
#: The most calls kept (the quickest of a second's calls is almost always among the last 64).
_MAX_CALLS: Final = 64


class RedisClock:
    """The offset of Redis's clock from this process's, bounded by recent calls (see above)."""

    __slots__ = ("_calls", "_high", "_low")

    def __init__(self) -> None:
        #: (answered at, lowest offset, highest offset), oldest first; local times in seconds.
        self._calls: collections.deque[tuple[float, float, float]] = collections.deque(
            maxlen=_MAX_CALLS
        )
        self._low = -math.inf
        self._high = math.inf

    def observe(self, sent_s: float, answered_s: float, redis_s: float) -> None:
        """A call sent at ``sent_s`` and answered at ``answered_s`` (local monotonic seconds)
        read ``redis_s`` (Redis's clock, seconds)."""
        calls = self._calls
        while calls and calls[0][0] < answered_s - _MAX_AGE_S:
            calls.popleft()
        low, high = redis_s - answered_s, redis_s - sent_s
        # An older call's bounds widen by the most the clocks can have drifted since.
        widened = [
            (c[1] - _DRIFT * (answered_s - c[0]), c[2] + _DRIFT * (answered_s - c[0]))
            for c in calls
        ]
        if widened and (low > min(h for _, h in widened) or high < max(lo for lo, _ in widened)):
            calls.clear()  # the clocks jumped: these bounds contradict the earlier ones
            widened = []
        calls.append((answered_s, low, high))
        self._low = max([low, *(lo for lo, _ in widened)])
        self._high = min([high, *(h for _, h in widened)])

    @property
    def observations(self) -> int:
        """How many recent calls bound the offset."""
        return len(self._calls)

    @property
    def uncertainty_s(self) -> float:
        """How wide the bounds are: a moment on Redis's clock is known to within this here."""
        return self._high - self._low

    def latest_redis(self, local_s: float) -> float:
        """The latest moment Redis's clock can read at local moment ``local_s``."""
        if not self._calls:
            raise LookupError("no call observed yet")
        return local_s + self._high

    def local_window(self, redis_s: float) -> tuple[float, float]:
        """The earliest and the latest local moment at which Redis's clock reads ``redis_s``."""
        if not self._calls:
            raise LookupError("no call observed yet")
        return redis_s - self._high, redis_s - self._low
