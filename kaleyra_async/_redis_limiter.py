"""The pod's request limiter shared by every process through Redis (``--redis``).

Each request reserves a moment to be sent ("a turn") from one state per account SID and pod,
kept in Redis and updated by one Lua script that reads Redis's own clock (``TIME``), so N
processes on N machines hold one limit together, whatever their clocks say. The script keeps:

* a GCRA (one "theoretical arrival time"): turns are ``1/rate`` apart; after an idle spell up to
  ``burst`` (at most one second's worth) may fall at once, and turns held back (by the log, a
  late write, a pause) may catch up by half an interval or 5 ms worth, as locally;
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
  429's Retry-After asks for (sent with this process's next reservation).

A request reserves its turn, journals (``_flight``) while the turn approaches, then sleeps
until it and sends. The turn's moment on this process's clock is known to within the quickest
recent round trip (``_redis_clock``), not this call's (a busy loop can read a reply late). The
log holds when requests LEFT: a request written more than ``_LOG_LATE_S`` after its turn (a new
connection, a busy machine; on Python 3.11 aiohttp writes the body from a task of its own)
moves its turn to the write's moment, told with the next call, so the window a second later is
checked against the writes and the 15 ms margin is left for the way to Kaleyra. A turn missed
by more than ``_LATE_S`` at its admission (a stalled loop, a descheduled process) is not used;
it is given back with the next call (out of the log, its interval back to the GCRA), as is a
turn whose request was cancelled, so an unused turn does not cost the account its share of the
rate. A process has one script call in flight at a time, asking turns for up to 64 waiting
requests of one lane (OTP waiters first): one round trip per 64 requests, not per request, and
the next call is made while those requests sleep until their turns.

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
import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from ._exceptions import KaleyraError
from ._limits import MAX_RECIPIENTS
from ._ratelimit import WINDOW_S, catch_up_tokens
from ._redis import RedisLink
from ._redis_clock import RedisClock
from ._relay import Relay

__all__ = ["SharedLimiter", "Turn"]

logger = logging.getLogger(__name__)

#: How far ahead a bulk request may reserve its turn: the most an OTP request within its share
#: waits behind bulk ones.
_HORIZON_S: Final = 0.05
#: A turn missed by more than this at its admission is given up: a request is not sent on a
#: stale turn (the window's margin does not depend on it: late writes are logged as such).
_LATE_S: Final = 0.050
#: A request written later than this after its turn's moment is logged at its write instead
#: (what is left of WINDOW_S's 15 ms is the way from here to Kaleyra).
_LOG_LATE_S: Final = 0.002
#: Redis answering slower than this at best leaves turns uncertain: warned about.
_SLOW_REDIS_S: Final = 0.005
_US: Final = 1_000_000

#: KEYS: turn time (GCRA), turn log (a sorted set: turn ids scored by their moments), OTP lane
#: (GCRA), pause end, recipients (GCRA), the last turn id, and the list an older version kept its
#: log in (while it exists, a process of that version shares the limit without seeing this
#: log: refused, rather than both holding the rate). ARGV[12], ARGV[13]: how many missed
#: turns (ids: each given back, out of the log, its interval back to the GCRA) and how many
#: (id, write moment) pairs of late writes (each turn moved to its write's moment) follow, then
#: one recipients cost per turn wanted. Ids go on from Redis's clock (µs), never reused even after
#: the keys expired, so a call resent after a lost
#: reply gives back and moves the same turns, once. Returns the granted turns' waits, the wait
#: before asking again for the rest (-1: none left), Redis's time and the first granted turn's
#: id (the others follow it). Times are integers in microseconds on Redis's clock, formatted
#: with %d: Lua would write a 16-digit number as 1.7e+15 (a double holds it exactly).
_RESERVE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local cap, window, horizon = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local otp, otp_interval, otp_tolerance = ARGV[6] == '1', tonumber(ARGV[7]), tonumber(ARGV[8])
local cost_tolerance, pause = tonumber(ARGV[10]), tonumber(ARGV[11])
local log = KEYS[2]
if redis.call('EXISTS', KEYS[7]) == 1 then
  return redis.error_reply('an older kaleyra_async shares this limit (its turn log ' ..
    KEYS[7] .. ' is in use): stop it, or upgrade it, first')
end
local function get(key) return tonumber(redis.call('GET', key) or '0') end
local function put(key, value, ttl)
  redis.call('SET', key, string.format('%d', value), 'PX', ttl)
end
local function newest(rank)  -- the moment of the log's rank-th newest turn (0: the newest)
  local entry = redis.call('ZREVRANGE', log, rank, rank, 'WITHSCORES')
  return entry[2] and tonumber(entry[2])
end
if pause > 0 and now + pause > get(KEYS[4]) then
  put(KEYS[4], now + pause, math.ceil(pause / 1000) + 1)
end
local tat, otat, rtat, paused = get(KEYS[1]), get(KEYS[3]), get(KEYS[5]), get(KEYS[4])
local missed, moved = tonumber(ARGV[12]), tonumber(ARGV[13])
local first = 14 + missed + 2 * moved
for i = 14, 13 + missed do
  if redis.call('ZREM', log, ARGV[i]) == 1 then tat = tat - interval end
end
for i = 14 + missed, first - 1, 2 do
  redis.call('ZADD', log, 'XX', ARGV[i + 1], ARGV[i])
end
-- Ids go on from Redis's clock: never reused, even after the keys expired or were flushed.
local id = math.max(get(KEYS[6]), now)
local out, hint, first_id = {}, -1, id + 1
local at = math.max(now, newest(0) or 0)
for i = first, #ARGV do
  local cost = tonumber(ARGV[i])
  at = math.max(at, tat - tolerance, paused, rtat + cost - cost_tolerance)
  local oldest = newest(cap - 1)
  if oldest then at = math.max(at, oldest + window) end
  local priority = otp and otp_interval > 0 and now >= otat - otp_tolerance
  if not priority and at - now > horizon then hint = at - now - horizon; break end
  tat = math.max(tat, at) + interval
  if priority then otat = math.max(otat, now) + otp_interval end
  if cost > 0 then rtat = math.max(rtat, at) + cost end
  id = id + 1
  redis.call('ZADD', log, string.format('%d', at), string.format('%d', id))
  out[#out + 1] = at - now
end
redis.call('ZREMRANGEBYRANK', log, 0, -2 * cap - 1)
out[#out + 1] = hint
out[#out + 1] = now
out[#out + 1] = first_id
local ttl = math.ceil((at - now + window) / 1000) + 1000
put(KEYS[1], tat, ttl); put(KEYS[3], otat, ttl); put(KEYS[5], rtat, ttl)
redis.call('PEXPIRE', log, ttl)
redis.call('SET', KEYS[6], string.format('%d', id), 'PX', ttl)
return out
"""
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
        burst: requests allowed at once after an idle spell (capped at one second's worth).
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
        self._script = link.script(_RESERVE)
        tag = f"{prefix}:limit:{{{scope}}}"  # one hash slot: the script's keys stay together
        names = ("tat", "turns", "otp", "pause", "rcpt", "ids", "log")
        self._keys = tuple(f"{tag}:{name}" for name in names)
        interval_us = _US / rate_per_s
        burst = max(1, min(burst, math.floor(rate_per_s)))
        self._interval_us = interval_us
        # As the local limiter: room for a late turn's followers to catch up (the log caps).
        self._tolerance_us = (burst - 1 + catch_up_tokens(rate_per_s)) * interval_us
        self._cap = max(1, math.floor(rate_per_s))
        self._otp_interval_us = 0.0
        self._otp_tolerance_us = 0.0
        if otp_share > 0:
            otp_burst = max(1, round(burst * otp_share))
            self._otp_interval_us = interval_us / otp_share
            self._otp_tolerance_us = (otp_burst - 1) * self._otp_interval_us
        self._recipient_us = _US / recipients_per_s if recipients_per_s > 0 else 0.0
        self._recipient_bucket = max(MAX_RECIPIENTS, recipients_per_s * burst / rate_per_s)
        self._pause_us = 0
        #: Turns given up because the request was too late for them (a busy loop).
        self.missed = 0
        #: Ids of turns nobody will use (missed, or granted to a cancelled waiter): given back
        #: with the next call, so an unused turn costs the account nothing.
        self._missed_turns: list[int] = []
        #: Ids of turns whose request was written late, each followed by its write's moment
        #: (Redis's clock, the latest it can have read): moved in the log with the next call.
        self._late_writes: list[int] = []
        #: Requests waiting for a turn, by lane (True: OTP), oldest first.
        self._waiters: dict[bool, collections.deque[_Waiter]] = {
            True: collections.deque(),
            False: collections.deque(),
        }
        self._relay = Relay(self._serve)
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
                self._missed_turns.append(ticket.id)
                raise
            late_s = time.monotonic() - ticket.deadline_s
            if late_s <= 0:
                return
            self.missed += 1
            self._missed_turns.append(ticket.id)  # given back with the next call
            logger.debug("turn missed by %.1f ms: reserving another", late_s * 1e3)
            turn = await self._reserve_turn(ticket.otp, ticket.recipients)
            ticket.at_s, ticket.deadline_s, ticket.redis_us, ticket.id = turn

    def release(self, ticket: object = None) -> None:
        """A turn whose request was abandoned before its write: given back with the next call."""
        if isinstance(ticket, Turn):
            self._missed_turns.append(ticket.id)

    def sent(self, ticket: object = None) -> None:
        """The turn's request is being written: if later than ``_LOG_LATE_S`` after the turn,
        the log is told the write's moment with the next call."""
        if not isinstance(ticket, Turn) or ticket.written:
            return
        ticket.written = True  # called from inside the write: it must not raise
        try:
            written_us = round(self._clock.latest_redis(time.monotonic()) * _US)
        except LookupError:  # no call observed: impossible once a turn was granted
            return
        if written_us - ticket.redis_us > _LOG_LATE_S * _US:
            self._late_writes += (ticket.id, written_us)

    async def _reserve_turn(self, otp: bool, recipients: int) -> tuple[float, float, int, int]:
        """Wait in this process's line for a turn: its moment, deadline, Redis moment and id."""
        waiter: _Waiter = (asyncio.get_running_loop().create_future(), recipients)
        self._waiters[otp].append(waiter)
        try:
            return await self._relay.wait(waiter[0])
        except BaseException:
            granted = waiter[0]
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                self._missed_turns.append(granted.result()[3])  # granted, then cancelled
            else:
                granted.cancel()  # the next call skips it
            raise

    def pause(self, seconds: float) -> None:
        """Pause every process's admissions for ``seconds`` (a 429's Retry-After); Redis learns
        it with this process's next reservation. A longer pause wins over a shorter one."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError("seconds must be finite and >= 0")
        self._pause_us = max(self._pause_us, round(seconds * _US))

    async def _serve(self) -> None:
        """One script call for up to 64 waiting requests of one lane, OTP first; then, if
        Redis said the rest must wait, that wait."""
        for otp in (True, False):
            self._waiters[otp] = collections.deque(w for w in self._waiters[otp] if not w[0].done())
        otp = bool(self._waiters[True])
        lane = self._waiters[otp]
        batch = list(itertools.islice(lane, _MAX_TURNS_PER_CALL))
        if not batch:
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
            return
        answered = time.monotonic()
        *turns, hint, redis_now, first_id = waits
        self._clock.observe(asked, answered, redis_now / _US)
        if self._clock.uncertainty_s >= _SLOW_REDIS_S and answered >= self._warned_until:
            self._warned_until = answered + 60
            logger.warning(
                "Redis answers in %.1f ms at best: requests wait that much past their turns "
                "(%d turns missed so far); the shared limit needs Redis within a few ms",
                self._clock.uncertainty_s * 1e3,
                self.missed,
            )
        for index, (waiter, wait_us) in enumerate(zip(batch, turns, strict=False)):
            earliest, latest = self._clock.local_window((redis_now + wait_us) / _US)
            turn = (latest, earliest + _LATE_S, redis_now + wait_us, first_id + index)
            if not waiter[0].done():
                waiter[0].set_result(turn)
            else:  # cancelled while asking: nobody will use this turn
                self._missed_turns.append(turn[3])
        if hint >= 0:
            await self._sleep(hint / _US)

    async def _reserve(self, otp: bool, recipients: list[int]) -> list[int]:
        costs = [
            round(self._recipient_us * min(max(n, 0), self._recipient_bucket)) for n in recipients
        ]
        pause_us, self._pause_us = self._pause_us, 0
        missed, self._missed_turns = self._missed_turns, []
        late, self._late_writes = self._late_writes, []
        args = (
            round(self._interval_us),
            round(self._tolerance_us),
            self._cap,
            round(WINDOW_S * _US),
            round(_HORIZON_S * _US),
            1 if otp else 0,
            round(self._otp_interval_us),
            round(self._otp_tolerance_us),
            0,
            round(self._recipient_bucket * self._recipient_us),
            pause_us,
            len(missed),
            len(late) // 2,
            *missed,
            *late,
            *costs,
        )
        try:
            waits = await self._link.call(
                lambda: self._script(self._keys, args), "a turn of the shared rate limit"
            )
        except BaseException:
            # Still to be told: the pause, the turns to give back or move (a repeat of what
            # the call may have done already changes nothing: ids are never reused).
            self._pause_us = max(self._pause_us, pause_us)
            self._missed_turns[:0] = missed
            self._late_writes[:0] = late
            raise
        return [int(w) for w in waits]
