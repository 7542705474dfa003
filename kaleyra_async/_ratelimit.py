"""The per-pod request limiter with an OTP lane (the aiolimiter adapter).

Only this module imports aiolimiter. These facts about ``AsyncLimiter(max_rate, period)`` shape
the design:

* It lets ``max_rate`` acquisitions through at once, so ``AsyncLimiter(100, 1)`` lets a
  1-second window see nearly 200 (mjpieters/aiolimiter#298). We shape it as a bucket of
  ``burst`` tokens leaking at ``rate_per_s``, so requests are spread evenly.
* A bucket that holds exactly ``burst`` tokens loses every late wake-up: a holder woken 1 ms
  late starts the next interval 1 ms late, for good. So the bucket holds ``burst + 0.5`` tokens
  (or 5 ms worth at high rates, where an interval is shorter than a timer's lateness), which
  lets late requests catch up, and a sliding-window log of the last
  ``floor(rate_per_s + burst - 1)`` requests enforces the hard promise: no 1-second window
  ever sees more than ``rate_per_s + burst - 1`` requests, even after 15 ms of jitter on the way
  to the server (the log's window is 1.015 s). The log counts a request from its admission, or
  from its write when that came more than ``LOG_LATE_S`` later (a busy loop, a new connection),
  so the 15 ms are left for the way.
* Waiters are woken smallest amount first, so a 100-recipient request would starve behind
  1-recipient ones on a recipients budget; and ``acquire(amount)`` raises when
  ``amount > max_rate``.
* It binds to the event loop it is first used on: create a :class:`RequestLimiter` inside the
  running loop.

Design::

    OTP ──▶ token in the OTP lane (otp_share × rate)? ─yes─▶ priority ─┐
                                    └──────no──────────────▶ queue ──┤
    bulk ─────────────────────────────────────────────────────▶ queue ──┴─▶ turnstile ─▶
        [recipients] ─▶ total ─▶ window     (turnstile: one at a time, priority first)

* The **turnstile** lets one request at a time wait on the shared limiters. When the holder has
  its tokens, the turnstile passes to the oldest waiting OTP request, else to the oldest bulk
  one. So an OTP request waits for at most the holder's token plus its own (about two token
  intervals) however many bulk requests are queued, and waiters are served in FIFO order
  within a lane (which also defuses aiolimiter's smallest-amount-first order).
* The **total** limiter (and the window log behind it) caps everything at the pod rate. Bulk
  alone can use all of it.
* The **OTP lane** is a reserved share, not a cap: an OTP request that finds a token in the
  lane limiter (``otp_share × rate``) takes it and waits in the priority queue; one that finds
  none waits in the bulk queue like any request. So OTP traffic gets up to its share ahead of
  any bulk backlog, a flood of OTPs cannot starve bulk of the rest, and an OTP-only workload
  still gets the whole rate (``otp_share = 0`` gives every OTP request priority).
* The optional **recipients** limiter charges each request its recipient count; its bucket
  holds at least 100 (one full request), so a 1-second window may see up to
  ``recipients_per_s + 100`` recipients.
* :meth:`RequestLimiter.pause` stops all admissions, OTP and bulk, until a moment on the loop's
  clock, checked last, just before a request is admitted. A 429's ``Retry-After`` is about the
  account, not the one request that got it: without a pause only that request would wait,
  while the other senders kept hitting the limit. A second pause extends the first, never
  shortens it; requests already admitted are not recalled. The bucket keeps leaking during a
  pause, so up to ``burst`` requests may leave at once when it ends (as after any idle
  spell), and the 1-second window promise still holds.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from typing import Protocol

from aiolimiter import AsyncLimiter

from ._limits import MAX_RECIPIENTS
from ._turnstile import Turnstile

__all__ = ["LOG_LATE_S", "WINDOW_S", "Limiter", "RequestLimiter", "catch_up_tokens"]

logger = logging.getLogger(__name__)

#: Extra bucket room that lets a late wake-up be made up (see the module docstring).
_CATCH_UP_TOKENS = 0.5
#: At high rates a token interval is shorter than a timer's lateness (2,000/s: 0.5 ms), so the
#: bucket also holds 5 ms worth of tokens; the window log still caps every second.
_CATCH_UP_S = 0.005
#: The sliding window the admission log enforces: a second plus a margin for the jitter between
#: admission here and arrival at Kaleyra (two requests a second apart here must not arrive 0.999 s
#: apart there); it costs at most 1.5% of the rate, and only when the log is what binds.
WINDOW_S = 1.015
#: A request written later than this after its admission (its turn, in the shared limiter) is
#: logged at its write instead: what is left of WINDOW_S's 15 ms is the way to Kaleyra.
LOG_LATE_S = 0.002


def catch_up_tokens(rate_per_s: float, seconds: float = _CATCH_UP_S) -> float:
    """Room beyond ``burst`` for late requests to catch up: half a token, or ``seconds`` worth
    (5 ms here; the shared limiter's log needs more, see ``_redis_limiter``)."""
    return max(_CATCH_UP_TOKENS, rate_per_s * seconds)


class Limiter(Protocol):
    """What the client needs of a limiter: this module's, or the shared one in Redis
    (``_redis_limiter``)."""

    async def acquire(self, *, otp: bool, recipients: int = 1, admit: bool = True) -> object:
        """Wait for a turn; returns a ticket to pass to :meth:`admit` when ``admit`` is False."""

    async def admit(self, ticket: object = None) -> None:
        """The last check before the write, for a ticket from ``acquire(admit=False)``."""

    def release(self, ticket: object = None) -> None:
        """A ticket from ``acquire(admit=False)`` that will not be admitted (the request was
        abandoned before its write)."""

    def sent(self, ticket: object = None) -> None:
        """The ticket's request is being written now (called by the HTTP seam)."""

    def pause(self, seconds: float) -> None:
        """Admit no request for ``seconds`` (a 429's Retry-After)."""


class _Slot:
    """A request's place in the window log: when it was admitted, or written if that was later
    than ``LOG_LATE_S`` after (the ticket :meth:`RequestLimiter.acquire` returns)."""

    __slots__ = ("at_s", "written")

    def __init__(self) -> None:
        self.at_s = -math.inf
        self.written = False


class RequestLimiter:
    """Limits requests per second to a pod, letting OTP requests overtake bulk ones.

    Args:
        rate_per_s: requests per second, OTP and bulk together.
        burst: requests allowed at once after an idle spell (1: evenly spaced).
        otp_share: the part of ``rate_per_s`` OTP requests may use, in [0, 1); 0: no cap.
        recipients_per_s: a second budget on recipients per second (0: none).
    """

    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: int = 1,
        otp_share: float = 0.2,
        recipients_per_s: float = 0,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        if not 0 <= otp_share < 1:
            raise ValueError("otp_share must be in [0, 1)")
        if recipients_per_s < 0:
            raise ValueError("recipients_per_s must be >= 0")
        self.rate_per_s = rate_per_s
        capacity = burst + catch_up_tokens(rate_per_s)
        self._total = AsyncLimiter(capacity, capacity / rate_per_s)
        self._window_cap = max(1, math.floor(rate_per_s + burst - 1))
        #: The last window's requests, oldest first, by when they were admitted (or written,
        #: if late): older ones are dropped as they age out, so a high rate, e.g. --rate
        #: 1000000 for "no limit", does not keep a million of them. No maxlen: a write logged
        #: after its place aged out may make it one over the cap, and none may be evicted.
        self._admitted: collections.deque[_Slot] = collections.deque()
        self._otp: AsyncLimiter | None = None
        if otp_share > 0:
            otp_rate = otp_share * rate_per_s
            otp_burst = max(1, round(burst * otp_share))
            self._otp = AsyncLimiter(otp_burst, otp_burst / otp_rate)
        self._recipients: AsyncLimiter | None = None
        if recipients_per_s > 0:
            size = max(MAX_RECIPIENTS, recipients_per_s * burst / rate_per_s)
            self._recipients = AsyncLimiter(size, size / recipients_per_s)
        self._paused_until_s = -math.inf
        self._turnstile = Turnstile()

    def __repr__(self) -> str:
        return (
            f"<RequestLimiter rate_per_s={self.rate_per_s} busy={self._turnstile.busy} "
            f"waiting otp={self._turnstile.waiting(True)} bulk={self._turnstile.waiting(False)}>"
        )

    async def acquire(self, *, otp: bool, recipients: int = 1, admit: bool = True) -> object:
        """Wait until one request with ``recipients`` recipients may be sent; returns its ticket
        (for :meth:`admit` and :meth:`sent`).

        Cancelling a waiting ``acquire`` is safe: it gives up its place and consumes nothing
        (or one token, if it was cancelled just as it got it).

        Args:
            otp: the request is an OTP (see the OTP lane).
            recipients: its recipients, for the recipients budget.
            admit: also run :meth:`admit`. Pass False when something slow (journaling) comes
                between this and the write, and call :meth:`admit` right before the write.
        """
        priority = otp
        if otp and self._otp is not None:
            # Within its reserved share an OTP request overtakes bulk; beyond it, it queues
            # with bulk in arrival order: never capped, so an OTP-only app gets the whole rate.
            priority = self._otp.has_capacity()
            if priority:
                await self._otp.acquire()
        slot = _Slot()
        async with self._turnstile.turn(priority):
            if self._recipients is not None:
                await self._recipients.acquire(min(max(recipients, 0), self._recipients.max_rate))
            await self._total.acquire()
            if admit:
                await self.admit(slot)
        return slot

    def pause(self, seconds: float) -> None:
        """Admit no request for ``seconds`` from now (the loop's clock), e.g. a 429's Retry-After.

        Pausing while paused extends the pause when the new end is later and never shortens it.
        Requests waiting in :meth:`acquire` wait it out; admitted ones are unaffected.

        Raises:
            ValueError: ``seconds`` is negative or not finite.
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError("seconds must be finite and >= 0")
        until_s = asyncio.get_running_loop().time() + seconds
        if until_s > self._paused_until_s:
            self._paused_until_s = until_s
            logger.info("admissions paused for %.2f s", seconds)

    async def admit(self, ticket: object = None) -> None:
        """Wait out any pause and until one more request keeps every 1-second window within the
        cap; then log it as sent. Call it right before the write: the log is what the server
        will count, so the less time between this and the write, the truer the cap."""
        loop = asyncio.get_running_loop()
        admitted = self._admitted
        slot = ticket if isinstance(ticket, _Slot) else _Slot()
        while True:
            now = loop.time()
            if self._paused_until_s > now:
                await self._wait_out_pause(loop)
                continue
            while admitted and admitted[0].at_s + WINDOW_S <= now:
                admitted.popleft()
            if len(admitted) >= self._window_cap:
                await asyncio.sleep(admitted[0].at_s + WINDOW_S - now)
                continue  # others may have gone first: look again
            slot.at_s = now
            admitted.append(slot)  # no await since the checks: atomic on the loop
            return

    def release(self, ticket: object = None) -> None:
        """Nothing to give back: the token bucket's share is spent once taken."""

    def sent(self, ticket: object = None) -> None:
        """The ticket's request is being written: if later than ``LOG_LATE_S`` after its
        admission, the log counts it from now (the newest moment in it: the log stays in order),
        also when its place there had already aged out."""
        if not isinstance(ticket, _Slot) or ticket.written:
            return
        ticket.written = True  # called from inside the write: it must not raise
        now = asyncio.get_running_loop().time()
        if now - ticket.at_s <= LOG_LATE_S:
            return
        admitted = self._admitted
        if admitted and ticket.at_s >= admitted[0].at_s:  # else aged out: not in the log
            for back, slot in enumerate(reversed(admitted)):  # a late write is among the newest
                if slot is ticket:
                    del admitted[-1 - back]
                    break
        # Logged at its write even if its place aged out (written over a window late): the
        # write still counts in the windows after it.
        ticket.at_s = now
        admitted.append(ticket)

    async def _wait_out_pause(self, loop: asyncio.AbstractEventLoop) -> None:
        # Not polling: each sleep lasts until the pause's end, and the loop only goes round
        # again when pause() moved that end later while we slept.
        while (wait_s := self._paused_until_s - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait_s)
