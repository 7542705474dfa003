"""Requests answered in batches by whichever requester holds the lead (no background task).

A requester whose answer is not in finds either nobody leading (it leads) or a leader (it
waits). The leader calls ``serve`` (one batch: e.g. one script call for every waiting
request) until its own answer is in, then hands the lead to the oldest requester still
waiting: one wake-up, not a herd, and no request waits for a leader that left.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["Relay"]

T = TypeVar("T")


class Relay:
    """Serializes ``serve`` calls among the tasks waiting for answers (see the module)."""

    __slots__ = ("_leading", "_serve", "_waiting")

    def __init__(self, serve: Callable[[], Awaitable[None]]) -> None:
        self._serve = serve
        self._leading = False
        #: Requesters waiting while someone leads: (their answer, their call to lead).
        self._waiting: collections.deque[tuple[asyncio.Future[Any], asyncio.Future[None]]] = (
            collections.deque()
        )

    async def wait(self, answer: asyncio.Future[T]) -> T:
        """Wait for ``answer`` (set by ``serve``), leading when the lead comes here."""
        if self._leading:
            lead: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append((answer, lead))
            try:
                either: list[asyncio.Future[Any]] = [answer, lead]
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                if lead.done():  # handed the lead as we were cancelled: pass it on
                    self._hand_over()
                else:
                    lead.cancel()  # skipped by the next hand-over
                raise
            if answer.done():
                if lead.done():  # handed the lead just as the answer came: pass it on
                    self._hand_over()
                else:
                    lead.cancel()
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
            answer, lead = self._waiting.popleft()
            if not (answer.done() or lead.done()):
                lead.set_result(None)  # the lead stays taken: it passes straight on
                return
        self._leading = False
