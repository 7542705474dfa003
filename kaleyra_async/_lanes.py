"""The queue between planning and the senders: bounded, with OTP batches first."""

from __future__ import annotations

import collections
import logging

import anyio

from ._batching import Batch

__all__ = ["LaneQueue"]

logger = logging.getLogger(__name__)


class LaneQueue:
    """A bounded queue of batches in which OTP batches overtake bulk ones.

    OTP traffic must not wait behind a bulk backlog: a sender always takes the oldest OTP batch
    before any bulk batch. Each lane has its own capacity, so a full bulk lane never blocks an
    OTP row from being queued.
    """

    def __init__(self, capacity: int) -> None:
        self._lanes: dict[bool, collections.deque[Batch]] = {
            True: collections.deque(),
            False: collections.deque(),
        }
        # fast_acquire: a sender that finds a batch waiting takes it without a loop turn; nobody
        # starves, as a sender still waits on its request and the planner yields every slice.
        self._space = {
            True: anyio.Semaphore(capacity, fast_acquire=True),
            False: anyio.Semaphore(capacity, fast_acquire=True),
        }
        self._ready = anyio.Semaphore(0, fast_acquire=True)
        self.closed = False

    async def put(self, batch: Batch) -> None:
        otp = batch.message.is_otp
        await self._space[otp].acquire()
        if self.closed:
            self._space[otp].release()
            return
        self._lanes[otp].append(batch)
        self._ready.release()

    async def get(self) -> Batch | None:
        """The next batch (OTP first), or None once the queue is closed and empty."""
        await self._ready.acquire()
        for otp in (True, False):
            lane = self._lanes[otp]
            if lane:
                self._space[otp].release()
                return lane.popleft()
        self._ready.release()  # a close wake-up: pass it on to the next sender
        return None

    def close(self, *, discard: bool = False) -> None:
        """No more puts; senders drain what is queued (or nothing, with ``discard``)."""
        if discard:
            # Batches never sent have no journal entry and no result: --resume sends them.
            dropped = sum(len(b.rows) for lane in self._lanes.values() for b in lane)
            if dropped:
                logger.info("%d queued rows were not sent and have no result yet", dropped)
            for lane in self._lanes.values():
                lane.clear()
        if not self.closed:
            self.closed = True
            self._ready.release()
