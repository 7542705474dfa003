"""Requests answered in batches by whichever requester holds the lead (no background task).

A requester whose answer is not in finds either nobody leading (it leads) or a leader (it
waits). The leader calls ``serve`` (one batch: e.g. one script call for every waiting
request) until its own answer is in, then hands the lead to the oldest requester still
waiting: one wake-up, not a herd, and no request waits for a leader that left.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["Relay"]

T = TypeVar("T")


def _answered(woken: asyncio.Future[bool], _answer: asyncio.Future[Any]) -> None:
    if not woken.done():
        woken.set_result(False)


class Relay:
    """Serializes ``serve`` calls among the tasks waiting for answers (see the module)."""

    __slots__ = ("_leading", "_serve", "_waiting")

    def __init__(self, serve: Callable[[], Awaitable[None]]) -> None:
        self._serve = serve
        self._leading = False
        #: Requesters waiting while someone leads: (their answer, their wake-up: True when
        #: handed the lead, False when answered).
        self._waiting: collections.deque[tuple[asyncio.Future[Any], asyncio.Future[bool]]] = (
            collections.deque()
        )

    async def wait(self, answer: asyncio.Future[T]) -> T:
        """Wait for ``answer`` (set by ``serve``), leading when the lead comes here."""
        if self._leading:
            woken: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            answer.add_done_callback(functools.partial(_answered, woken))
            self._waiting.append((answer, woken))
            try:
                led = await woken
            except BaseException:
                if woken.done() and not woken.cancelled() and woken.result():
                    self._hand_over()  # handed the lead as we were cancelled: pass it on
                raise
            if not led:
                return answer.result()
        self._leading = True
        try:
            while not answer.done():
                await self._serve()
            return answer.result()
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        while self._waiting:
            answer, woken = self._waiting.popleft()
            if not (answer.done() or woken.done()):
                woken.set_result(True)  # the lead stays taken: it passes straight on
                return
        self._leading = False
