"""What a process still has to tell the shared turn log, and telling it when no request asks for
a turn (``_redis_limiter``).

Turns given back (missed, or whose request was abandoned or cancelled), turns whose request was
written late (moved to the write's moment) and a 429's pause ride on the process's next script
call. A process that goes quiet right after (the end of a campaign, a sparse OTP sender) would
make none, so the first report starts a task: every ``delay_s`` it looks whether a call was
made meanwhile (a busy process reserves again within it, and that call carries the reports: no
round trip of their own); once none was and reports are here, it waits in the relay for a call,
which asks no turns when nobody else waits. One such task at most; :meth:`Reports.aclose`
stops it and tells the rest, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import anyio

from ._exceptions import KaleyraError
from ._relay import Relay

__all__ = ["Reports"]

logger = logging.getLogger(__name__)

#: The most closing waits to tell Redis what is left (even while the closer is cancelled).
_CLOSE_S: Final = 0.5

#: What a script call tells: the pause (µs), the turn ids to give back, (id, moment) pairs.
Taken = tuple[int, list[int], list[int]]


class Reports:
    """The give-backs, moves and pause not yet told (see the module)."""

    __slots__ = (
        "_closed",
        "_delay_s",
        "_late",
        "_missed",
        "_pause_us",
        "_relay",
        "_sleep",
        "_taken",
        "_task",
        "_waiting",
    )

    def __init__(
        self, relay: Relay, *, delay_s: float, sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self._relay = relay
        self._delay_s = delay_s
        self._sleep = sleep
        #: Ids of turns nobody will use: given back, so an unused turn costs the account nothing.
        self._missed: list[int] = []
        #: Turns written late, each id followed by its write's moment (Redis's clock, µs).
        self._late: list[int] = []
        self._pause_us = 0
        #: Calls that took the reports (each script call does, whatever it carries).
        self._taken = 0
        #: Callers waiting for a call to tell what was here when they asked.
        self._waiting: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __bool__(self) -> bool:
        return bool(self._missed or self._late or self._pause_us)

    def give_back(self, turn_id: int) -> None:
        """A turn nobody will use: out of the log, its interval back to the rate."""
        self._missed.append(turn_id)
        self._soon()

    def move(self, turn_id: int, written_us: int) -> None:
        """A turn whose request was written at ``written_us`` (Redis's clock), late."""
        self._late += (turn_id, written_us)
        self._soon()

    def pause(self, pause_us: int) -> None:
        """Every process pauses ``pause_us`` from when Redis learns it; the longer pause wins."""
        self._pause_us = max(self._pause_us, pause_us)
        if self._pause_us:
            self._soon()

    def take(self) -> Taken:
        """All there is to tell, for a call to carry (:meth:`put_back` if the call fails)."""
        taken = (self._pause_us, self._missed, self._late)
        self._pause_us, self._missed, self._late = 0, [], []
        self._taken += 1
        return taken

    def put_back(self, taken: Taken) -> None:
        """What a failed call took: told again by a later one (a repeat changes nothing, as ids
        are never reused)."""
        pause_us, missed, late = taken
        self._pause_us = max(self._pause_us, pause_us)
        self._missed[:0] = missed
        self._late[:0] = late
        if self:
            self._soon()

    def asked(self) -> tuple[asyncio.Future[None], ...]:
        """Who waits to be told as a call starts: that call tells what they wait for."""
        self._waiting = [waiter for waiter in self._waiting if not waiter.done()]
        return tuple(self._waiting)

    @staticmethod
    def answer(waiters: Sequence[asyncio.Future[None]], error: BaseException | None) -> None:
        """The call :meth:`asked` for ``waiters`` told Redis (``error``: it could not)."""
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    async def tell(self) -> None:
        """Wait for a call telling what is here now (it asks no turns if nobody else waits)."""
        told: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(told)
        try:
            await self._relay.wait(told)
        finally:
            told.cancel()  # no-op once told; otherwise no call is made for it

    async def aclose(self) -> None:
        """Stop the task, then tell what is left, for at most ``_CLOSE_S`` even while the caller
        is cancelled (Ctrl-C). Nothing is told in the background after this."""
        self._closed = True
        with anyio.move_on_after(_CLOSE_S, shield=True):
            if self._task is not None:
                self._task.cancel()
                await asyncio.wait({self._task})
            if self:
                try:
                    await self.tell()
                except KaleyraError as exc:
                    logger.debug("could not give back or move turns on closing: %s", exc)

    def _soon(self) -> None:
        """Start the task unless it runs. Never raises (``move`` runs inside a body's write)."""
        if self._task is None and not self._closed:
            with contextlib.suppress(RuntimeError):  # no running loop: the next call tells it
                self._task = asyncio.get_running_loop().create_task(self._tell_when_quiet())

    async def _tell_when_quiet(self) -> None:
        try:
            while self:
                taken = self._taken
                await self._sleep(self._delay_s)
                if self and self._taken == taken:  # no call since: the process went quiet
                    await self.tell()
        except Exception as exc:  # Redis unreachable or refusing: a later call tells it
            logger.debug("could not give back or move turns yet: %s", exc)
        finally:
            self._task = None
