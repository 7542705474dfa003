"""The pod's request limiter shared by every process through Redis (``--redis``).

Each request reserves a moment to be sent ("a turn") from one state per account SID and pod,
kept in Redis and updated by one Lua script that reads Redis's own clock (``TIME``), so N
processes on N machines hold one limit together, whatever their clocks say. The script
(``_redis_turns``) keeps:

* a GCRA (one "theoretical arrival time"): turns are ``1/rate`` apart; turns held back (by the
  log, a late write, a pause) may catch up by ``_CATCH_UP_S`` worth (half an interval at least),
  so after an idle spell ``burst`` (at most one second's worth) plus that much may fall at once
  (1 + 100 at 2,000/s; the log still caps every window at the rate);
* a log of the recent turns (a sorted set: each turn's id, never reused, scored by its moment;
  a new turn is never before the latest): no window of ``WINDOW_S`` (a second plus 15 ms for
  the jitter between a request's write and its arrival at Kaleyra) holds more than
  ``floor(rate)``, so every sliding second at Kaleyra sees at most the rate, as with the local
  limiter. It keeps ``2 × floor(rate)`` turns: a turn given back leaves it, and the window's
  oldest turn must still be there after that;
* the OTP lane: an OTP request within its share (``otp_share × rate``, a second GCRA) is never
  refused, while bulk requests may reserve at most ``_HORIZON_S`` ahead, so an OTP request waits
  behind at most that much bulk, however much is queued in any process;
* the optional recipients budget (a GCRA charged per recipient) and the account-wide pause a
  429's Retry-After asks for.

A request reserves its turn, journals (``_flight``) while the turn approaches, then sleeps
until it and sends. The turn's moment on this process's clock is known to within the quickest
recent round trip (``_redis_clock``), not this call's (a busy loop can read a reply late). The
log holds when requests LEFT: a request written more than ``LOG_LATE_S`` after its turn (a new
connection, a busy machine; on Python 3.11 aiohttp writes the body from a task of its own)
moves its turn to the write's moment, so the window a second later is checked against the
writes and the 15 ms margin is left for the way to Kaleyra. A turn missed by more than
``_LATE_S`` at its admission (a stalled loop, a descheduled process) is not used; it is given
back (out of the log, its interval back to the GCRA), as is a turn whose request was abandoned
or cancelled, so an unused turn does not cost the account its share of the rate. Moves,
give-backs and a pause ride on the process's next call, or on a call of their own once the
process made none for ``_HORIZON_S`` (``_redis_reports``); :meth:`aclose` tells what is
left. A process has one script call in flight at a time, asking turns for up to 64 waiting
requests of one lane (OTP waiters first): one round trip per 64 requests, not per request, and
the next call is made while those requests sleep until their turns. Each call carries a nonce:
resent after a lost reply, it gets its first run's answer, not more turns.

Why our own script: ``limits`` 5.8 (its moving window takes the client's clock) and
``throttled-py`` 3.5 (GCRA on ``TIME``, but one bucket: no exact sliding second, no reserved
lane, no turn reservation) both pin ``redis<8`` in their ``redis`` extras.

If Redis is unreachable, :class:`~._redis.RedisLink` retries for ``unavailable_timeout_s`` and
then raises ``RedisUnavailableError``: no request is sent without a turn.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from ._exceptions import KaleyraError
from ._limits import MAX_RECIPIENTS
from ._ratelimit import LOG_LATE_S, WINDOW_S, catch_up_tokens
from ._redis import RedisLink
from ._redis_clock import RedisClock
from ._redis_reports import Reports
from ._redis_turns import RESERVE
from ._relay import Relay

__all__ = ["SharedLimiter", "Turn"]

logger = logging.getLogger(__name__)

#: How far ahead a bulk request may reserve its turn: the most an OTP request within its share
#: waits behind bulk ones.
_HORIZON_S: Final = 0.05
#: A turn missed by more than this at its admission is given up: a request is not sent on a
#: stale turn (the window's margin does not depend on it: late writes are logged as such).
_LATE_S: Final = 0.050
#: Turns held back may bunch this much worth to catch up (5 ms locally): a write moved in the
#: log holds every process back a second later, and what the bucket cannot make up is lost.
_CATCH_UP_S: Final = 0.050
#: Redis answering slower than this at best leaves turns uncertain: warned about, once the
#: clock holds this many calls (the first ones open connections and load the script).
_SLOW_REDIS_S: Final = 0.005
_SLOW_AFTER_CALLS: Final = 8
_US: Final = 1_000_000

#: Turns asked for in one script call (the waiters of one lane, oldest first).
_MAX_TURNS_PER_CALL: Final = 64


#: A request waiting for its turn: its turn (``at_s``, ``deadline_s``, ``redis_us``, ``id``)
#: once granted, and its recipients.
_Waiter = tuple["asyncio.Future[tuple[float, float, int, int]]", int]


@dataclasses.dataclass(slots=True)
class Turn:
    """A reserved moment to send one request (the ticket :meth:`SharedLimiter.admit` takes)."""

    otp: bool
    recipients: int
    #: When to send, on this process's monotonic clock: the latest local moment Redis's turn
    #: can be (:class:`~._redis_clock.RedisClock`), so never early.
    at_s: float
    #: The latest moment to send: the earliest local moment the turn can be, plus ``_LATE_S``.
    deadline_s: float
    #: The turn on Redis's clock, in microseconds.
    redis_us: int
    #: The turn's id in the log (how it is given back or moved).
    id: int
    #: Its request's write has been seen (:meth:`SharedLimiter.sent`).
    written: bool = False


class SharedLimiter:
    """Limits one account's requests per second to a pod across processes (see the module).

    Args:
        link: the Redis connection.
        scope: whose limit this is, e.g. ``"<SID>:<pod>"``: one state per scope.
        rate_per_s: requests per second, OTP and bulk together, across all processes.
        burst: requests allowed at once after an idle spell (capped at one second's worth),
            plus the catch-up room (``_CATCH_UP_S`` worth of the rate).
        otp_share: the part of the rate OTP requests may use ahead of bulk, in [0, 1).
        recipients_per_s: a second budget on recipients per second (0: none).
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        scope: str,
        rate_per_s: float,
        burst: int = 1,
        otp_share: float = 0.2,
        recipients_per_s: float = 0,
        prefix: str = "kaleyra",
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        if not 0 <= otp_share < 1:
            raise ValueError("otp_share must be in [0, 1)")
        self.rate_per_s = rate_per_s
        self._link = link
        self._sleep = sleep
        self._script = link.script(RESERVE)
        tag = f"{prefix}:limit:{{{scope}}}"  # one hash slot: the script's keys stay together
        names = ("tat", "turns", "otp", "pause", "rcpt", "ids", "log")
        self._keys = tuple(f"{tag}:{name}" for name in names)
        self._calls_key = f"{tag}:call:"
        # A call's record outlives the resends of the call (RedisLink.call's retries).
        self._record_ms = math.ceil(link.resend_window_s * 1000) + 1000
        interval_us = _US / rate_per_s
        burst = max(1, min(burst, math.floor(rate_per_s)))
        self._interval_us = interval_us
        # Room for a late turn's followers to catch up (the log caps every window).
        self._tolerance_us = (burst - 1 + catch_up_tokens(rate_per_s, _CATCH_UP_S)) * interval_us
        self._cap = max(1, math.floor(rate_per_s))
        self._otp_interval_us = 0.0
        self._otp_tolerance_us = 0.0
        if otp_share > 0:
            otp_burst = max(1, round(burst * otp_share))
            self._otp_interval_us = interval_us / otp_share
            self._otp_tolerance_us = (otp_burst - 1) * self._otp_interval_us
        self._recipient_us = _US / recipients_per_s if recipients_per_s > 0 else 0.0
        self._recipient_bucket = max(MAX_RECIPIENTS, recipients_per_s * burst / rate_per_s)
        #: Turns given up because the request was too late for them (a busy loop).
        self.missed = 0
        #: Requests waiting for a turn, by lane (True: OTP), oldest first.
        self._waiters: dict[bool, collections.deque[_Waiter]] = {
            True: collections.deque(),
            False: collections.deque(),
        }
        self._relay = Relay(self._serve)
        # A busy process calls again within the horizon: that call carries the reports.
        self._reports = Reports(self._relay, delay_s=_HORIZON_S, sleep=sleep)
        self._clock = RedisClock()
        self._warned_until = 0.0

    def __repr__(self) -> str:
        return f"<SharedLimiter {self._keys[0]} rate_per_s={self.rate_per_s}>"

    async def acquire(self, *, otp: bool, recipients: int = 1, admit: bool = True) -> Turn:
        """Reserve a turn; with ``admit`` (the default) wait for it. With ``admit`` False the
        turn is only reserved: do the slow part (journaling) meanwhile, then pass the turn to
        :meth:`admit`, which waits for it right before the write.

        Raises:
            RedisUnavailableError: Redis stayed unreachable for the bounded wait.
        """
        at_s, deadline_s, redis_us, turn_id = await self._reserve_turn(otp, recipients)
        turn = Turn(otp, recipients, at_s, deadline_s, redis_us, turn_id)
        if admit:
            await self.admit(turn)
        return turn

    async def admit(self, ticket: object = None) -> None:
        """Wait for the turn; one missed by more than ``_LATE_S`` is replaced by a new one."""
        if not isinstance(ticket, Turn):
            raise TypeError("admit() needs the Turn that acquire(admit=False) returned")
        while True:
            try:
                # Until the moment, however the loop rounds its timers (uvloop's, libuv's, fire
                # up to 1 ms early): never before the turn.
                while (wait_s := ticket.at_s - time.monotonic()) > 0:
                    await self._sleep(wait_s)
            except BaseException:  # cancelled (a stop): the turn goes unused
                self._reports.give_back(ticket.id)
                raise
            late_s = time.monotonic() - ticket.deadline_s
            if late_s <= 0:
                return
            self.missed += 1
            self._reports.give_back(ticket.id)  # told by the reservation below, if any
            logger.debug("turn missed by %.1f ms: reserving another", late_s * 1e3)
            turn = await self._reserve_turn(ticket.otp, ticket.recipients)
            ticket.at_s, ticket.deadline_s, ticket.redis_us, ticket.id = turn

    def release(self, ticket: object = None) -> None:
        """A turn whose request was abandoned before its write: given back (soon, see
        ``_redis_reports``)."""
        if isinstance(ticket, Turn):
            self._reports.give_back(ticket.id)

    def sent(self, ticket: object = None) -> None:
        """The turn's request is being written: if later than ``LOG_LATE_S`` after the turn,
        the log is told the write's moment (soon, see ``_redis_reports``)."""
        if not isinstance(ticket, Turn) or ticket.written:
            return
        ticket.written = True  # called from inside the write: it must not raise
        try:
            written_us = round(self._clock.latest_redis(time.monotonic()) * _US)
        except LookupError:  # no call observed: impossible once a turn was granted
            return
        if written_us - ticket.redis_us > LOG_LATE_S * _US:
            self._reports.move(ticket.id, written_us)

    async def _reserve_turn(self, otp: bool, recipients: int) -> tuple[float, float, int, int]:
        """Wait in this process's line for a turn: its moment, deadline, Redis moment and id."""
        waiter: _Waiter = (asyncio.get_running_loop().create_future(), recipients)
        self._waiters[otp].append(waiter)
        try:
            return await self._relay.wait(waiter[0])
        except BaseException:
            granted = waiter[0]
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                self._reports.give_back(granted.result()[3])  # granted, then cancelled
            else:
                granted.cancel()  # the next call skips it
            raise

    def pause(self, seconds: float) -> None:
        """Pause every process's admissions for ``seconds`` (a 429's Retry-After); Redis learns
        it soon (``_redis_reports``). A longer pause wins over a shorter one."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError("seconds must be finite and >= 0")
        self._reports.pause(round(seconds * _US))

    async def aclose(self) -> None:
        """Tell Redis what is still to be told (turns given back or moved, a pause), bounded
        even while cancelled (``_redis_reports``). Closing twice is safe; the link stays open."""
        await self._reports.aclose()

    async def _serve(self) -> None:
        """One script call for up to 64 waiting requests of one lane, OTP first, telling what
        is pending (a call asking no turns when nobody waits); then, if Redis said the rest
        must wait, that wait."""
        for otp in (True, False):
            self._waiters[otp] = collections.deque(w for w in self._waiters[otp] if not w[0].done())
        told = self._reports.asked()
        otp = bool(self._waiters[True])
        batch = list(itertools.islice(self._waiters[otp], _MAX_TURNS_PER_CALL))
        if not (batch or self._reports):
            self._reports.answer(told, None)  # an earlier call told it all
            return
        asked = time.monotonic()
        try:
            waits = await self._reserve(otp, [recipients for _, recipients in batch])
        except KaleyraError as exc:
            # Redis is gone (after the bounded wait): every waiting request fails now, rather
            # than each one waiting out its own bounded wait in turn.
            for lane in self._waiters.values():
                for future, _ in lane:
                    if not future.done():
                        future.set_exception(exc)
            self._reports.answer(told, exc)
            return
        answered = time.monotonic()
        *turns, hint, redis_now, first_id = waits
        clock = self._clock
        clock.observe(asked, answered, redis_now / _US)
        if (
            clock.uncertainty_s >= _SLOW_REDIS_S
            and clock.observations >= _SLOW_AFTER_CALLS
            and answered >= self._warned_until
        ):
            self._warned_until = answered + 60
            logger.warning(
                "Redis answers in %.1f ms at best: requests wait that much past their turns "
                "(%d turns missed so far); the shared limit needs Redis within a few ms",
                clock.uncertainty_s * 1e3,
                self.missed,
            )
        for index, (waiter, wait_us) in enumerate(zip(batch, turns, strict=False)):
            earliest, latest = self._clock.local_window((redis_now + wait_us) / _US)
            turn = (latest, earliest + _LATE_S, redis_now + wait_us, first_id + index)
            if not waiter[0].done():
                waiter[0].set_result(turn)
            else:  # cancelled while asking: nobody will use this turn
                self._reports.give_back(turn[3])
        self._reports.answer(told, None)
        if hint >= 0:
            await self._sleep(hint / _US)

    async def _reserve(self, otp: bool, recipients: list[int]) -> list[int]:
        costs = [
            round(self._recipient_us * min(max(n, 0), self._recipient_bucket)) for n in recipients
        ]
        taken = pause_us, missed, late = self._reports.take()
        args = (
            round(self._interval_us),
            round(self._tolerance_us),
            self._cap,
            round(WINDOW_S * _US),
            round(_HORIZON_S * _US),
            1 if otp else 0,
            round(self._otp_interval_us),
            round(self._otp_tolerance_us),
            self._record_ms,
            round(self._recipient_bucket * self._recipient_us),
            pause_us,
            len(missed),
            len(late) // 2,
            *missed,
            *late,
            *costs,
        )
        # One nonce per call, kept through RedisLink.call's resends: a resend after a lost
        # reply gets the first run's answer rather than more turns.
        keys = (*self._keys, self._calls_key + secrets.token_hex(8))
        try:
            waits = await self._link.call(
                lambda: self._script(keys, args), "a turn of the shared rate limit"
            )
        except BaseException:
            self._reports.put_back(taken)  # still to be told
            raise
        return [int(w) for w in waits]
