"""One waiter at a time, OTP waiters before bulk ones, FIFO within each (the limiters' gate)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

__all__ = ["Turnstile"]


class Turnstile:
    """Lets one task at a time through to a shared limiter.

    When the holder leaves, the oldest waiting OTP task goes next, else the oldest bulk one: an
    OTP request waits for at most the holder however many bulk requests are queued. Cancelling
    a waiter gives up its place (or passes the turnstile on, if it was handed over just then).
    """

    __slots__ = ("_busy", "_waiters")

    def __init__(self) -> None:
        self._busy = False
        self._waiters: dict[bool, collections.deque[asyncio.Future[None]]] = {
            True: collections.deque(),
            False: collections.deque(),
        }

    def waiting(self, otp: bool) -> int:
        return len(self._waiters[otp])

    @property
    def busy(self) -> bool:
        return self._busy

    @contextlib.asynccontextmanager
    async def turn(self, otp: bool) -> AsyncIterator[None]:
        """Hold the turnstile for the body of the ``async with``."""
        await self.enter(otp)
        try:
            yield
        finally:
            self.leave()

    async def enter(self, otp: bool) -> None:
        """Take the turnstile, queueing behind its holder (OTP waiters before bulk ones)."""
        if not self._busy:
            self._busy = True
            return
        waiter = asyncio.get_running_loop().create_future()
        queue = self._waiters[otp]
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The turnstile was handed to us as we were cancelled: pass it on.
                self.leave()
            else:
                with contextlib.suppress(ValueError):  # leave() may have dropped it already
                    queue.remove(waiter)
            raise

    def leave(self) -> None:
        """Hand the turnstile to the next live waiter, OTP first, or free it."""
        for otp in (True, False):
            queue = self._waiters[otp]
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._busy = False
