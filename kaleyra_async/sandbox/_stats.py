"""The request counters behind ``GET /_sandbox/stats``."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from ._window import SlidingWindowCounter

__all__ = ["SandboxStats"]


class SandboxStats:
    """Request counters for ``GET /_sandbox/stats``, all memory-bounded.

    Every request to an API path (not ``/_sandbox/...``) counts, whatever its answer, because the
    point is to measure what the client sent, not what the sandbox let through.
    """

    __slots__ = (
        "accepted_recipients",
        "accepted_requests",
        "arrivals",
        "by_status",
        "closest",
        "faults",
        "first_arrival_s",
        "last_arrival_s",
        "requests_total",
        "silence_before_tightest_s",
        "tightest_span_s",
        "window",
    )

    def __init__(self, arrival_log_size: int, rate_per_s: int = 0) -> None:
        self.requests_total = 0
        #: Responses by HTTP status as a string; "reset" for connections reset on purpose.
        self.by_status: Counter[str] = Counter()
        self.accepted_requests = 0
        self.accepted_recipients = 0
        self.faults: Counter[str] = Counter()
        self.window = SlidingWindowCounter(1.0)
        self.first_arrival_s: float | None = None
        self.last_arrival_s: float | None = None
        #: The most recent arrival times (seconds, the server's clock).
        self.arrivals: deque[float] = deque(maxlen=arrival_log_size)
        #: The last ``rate_per_s + 1`` arrivals (none without a rate limit).
        self.closest: deque[float] = deque(maxlen=rate_per_s + 1 if rate_per_s else 0)
        #: The shortest time ``rate_per_s + 1`` requests arrived in (over 1 s: no sliding
        #: second held more than the rate; the excess over 1 s is the client's margin left).
        self.tightest_span_s: float | None = None
        #: The time between the tightest span's first arrival and the one before it: tens of ms
        #: when the span began with a bunch a stall held back (a client's or this server's CPU
        #: taken away), a few ms at most when the arrivals came at their pace.
        self.silence_before_tightest_s: float | None = None

    def arrive(self, now_s: float) -> None:
        """Count one request arriving at ``now_s``."""
        self.requests_total += 1
        if self.first_arrival_s is None:
            self.first_arrival_s = now_s
        self.last_arrival_s = now_s
        self.window.add(now_s)
        self.arrivals.append(now_s)
        closest = self.closest
        if closest.maxlen:
            dropped = closest[0] if len(closest) == closest.maxlen else None
            closest.append(now_s)
            if len(closest) == closest.maxlen:
                span = now_s - closest[0]
                if self.tightest_span_s is None or span < self.tightest_span_s:
                    self.tightest_span_s = span
                    self.silence_before_tightest_s = (
                        None if dropped is None else closest[0] - dropped
                    )

    @property
    def max_requests_in_1s(self) -> int:
        """The most requests that arrived within any sliding one-second window."""
        return self.window.max_count

    @property
    def active_s(self) -> float:
        """Seconds from the first to the last arrival."""
        if self.first_arrival_s is None or self.last_arrival_s is None:
            return 0.0
        return self.last_arrival_s - self.first_arrival_s

    @property
    def mean_rate_per_s(self) -> float:
        """Requests per second over the active period (0 with fewer than two requests)."""
        active = self.active_s
        return (self.requests_total - 1) / active if active > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The JSON body of ``GET /_sandbox/stats``."""
        return {
            "requests_total": self.requests_total,
            "by_status": dict(sorted(self.by_status.items())),
            "accepted_requests": self.accepted_requests,
            "accepted_recipients": self.accepted_recipients,
            "faults": dict(sorted(self.faults.items())),
            "max_requests_in_1s": self.max_requests_in_1s,
            "tightest_span_s": self.tightest_span_s,
            "silence_before_tightest_s": self.silence_before_tightest_s,
            "mean_rate_per_s": self.mean_rate_per_s,
            "active_s": self.active_s,
            "first_arrival_s": self.first_arrival_s,
            "last_arrival_s": self.last_arrival_s,
        }
