"""The relay that batches requests to Redis: one serve call at a time, every waiter answered,
the lead passed on when its holder leaves or is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from kaleyra_async._relay import Relay


class _Server:
    """Answers every queued request in one serve call (one "round trip" each)."""

    def __init__(self) -> None:
        self.queue: list[tuple[int, asyncio.Future[int]]] = []
        self.calls = 0
        self.serving = 0
        self.relay = Relay(self.serve)

    async def serve(self) -> None:
        self.serving += 1
        assert self.serving == 1, "two serve calls at once"
        self.calls += 1
        batch, self.queue = self.queue, []
        try:
            await asyncio.sleep(0.001)
        except asyncio.CancelledError:
            self.queue[:0] = batch  # unanswered: the next leader asks again
            raise
        finally:
            self.serving -= 1
        for value, future in batch:
            if not future.done():
                future.set_result(value * 2)

    async def ask(self, value: int) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.queue.append((value, future))
        try:
            return await self.relay.wait(future)
        except BaseException:
            future.cancel()
            raise


async def test_many_waiters_are_answered_in_few_serve_calls() -> None:
    server = _Server()
    answers = await asyncio.gather(*(server.ask(i) for i in range(100)))
    assert answers == [2 * i for i in range(100)]
    assert server.calls == 2  # the first alone, the 99 that queued behind it together


@pytest.mark.parametrize("cancelled", [0, 1, 5])
async def test_the_lead_passes_on_when_waiters_are_cancelled(cancelled: int) -> None:
    """The leader and some waiters are cancelled mid-wait: everyone else is still answered."""
    server = _Server()
    tasks = [asyncio.create_task(server.ask(i)) for i in range(10)]
    await asyncio.sleep(0)  # all queued, task 0 leading
    for task in tasks[:cancelled]:
        task.cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[:cancelled])
    assert results[cancelled:] == [2 * i for i in range(cancelled, 10)]


async def test_a_waiter_handed_the_lead_as_it_is_cancelled_passes_it_on() -> None:
    """The lead goes to the oldest waiter; cancelled before it runs, that waiter hands it on."""
    server = _Server()
    leader = asyncio.create_task(server.ask(1))
    await asyncio.sleep(0)
    second = asyncio.create_task(server.ask(2))
    await asyncio.sleep(0)  # waiting behind the leader
    server.queue.clear()  # the leader's call answers nobody else: the lead passes to `second`
    third = asyncio.create_task(server.ask(3))
    await asyncio.sleep(0)
    assert await leader == 2
    second.cancel()  # handed the lead just now, cancelled before it could act on it
    assert await asyncio.wait_for(third, 5) == 6
    with pytest.raises(asyncio.CancelledError):
        await second
