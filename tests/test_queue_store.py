"""The queue's Redis scripts on a real redis-server: many calls in one command, each answered
as if alone (first mark and first report win, a resent enqueue is a success)."""

from __future__ import annotations

import anyio
import pytest

from kaleyra_async._queue_store import GROUP, QueueStore
from kaleyra_async._redis import RedisLink

pytestmark = pytest.mark.timeout(60)


async def _evalsha_calls(link: RedisLink) -> int:
    stats = await link.client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _script_checks(link: RedisLink) -> int:
    """SCRIPT commands so far (``cmdstat_script``, or ``cmdstat_script|exists`` on Redis 7+)."""
    stats = await link.client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_script"))


async def test_marks_made_together_go_as_one_command_per_campaign(redis_url: str) -> None:
    """Fifty marks over two campaigns: one script call per campaign after the first, and each
    mark answered for its own batch (a batch marked by another consumer is refused)."""
    link = RedisLink(redis_url)
    store = QueueStore(link, scope="SID:IN")
    try:
        assert await store.mark_sending("c1", "taken", "other-worker")
        before = await _evalsha_calls(link)
        answers: dict[tuple[str, str], bool] = {}

        async def mark(campaign: str, batch: str) -> None:
            answers[campaign, batch] = await store.mark_sending(campaign, batch, "me")

        async with anyio.create_task_group() as tg:
            for i in range(25):
                tg.start_soon(mark, "c1", str(i))
                tg.start_soon(mark, "c2", str(i))
            tg.start_soon(mark, "c1", "taken")
        calls = await _evalsha_calls(link) - before
        assert await store.mark_sending("c2", "3", "me")  # marking one's own batch again: yes
        assert await store.marked_by("c1", "taken") == "other-worker"
    finally:
        await link.aclose()
    assert answers.pop(("c1", "taken")) is False
    assert all(answers.values()) and len(answers) == 50
    # The first call goes alone; the 50 queued behind it go as one call per campaign.
    assert calls <= 3


async def test_a_flushed_script_is_loaded_again_and_calls_cost_no_script_check(
    redis_url: str,
) -> None:
    """A script cache emptied under the worker (a restart, SCRIPT FLUSH) costs a reload, not an
    error; otherwise a call is one EVALSHA, with no SCRIPT EXISTS round trip before it."""
    link = RedisLink(redis_url)
    store = QueueStore(link, scope="SID:IN")
    try:
        assert await store.mark_sending("c1", "1", "me")
        await link.client.script_flush()
        assert await store.mark_sending("c1", "2", "me")  # NOSCRIPT: loaded, sent again
        before = await _script_checks(link)
        for batch in range(3, 8):
            assert await store.mark_sending("c1", str(batch), "me")
        assert await store.marked_by("c1", "2") == "me"
        after = await _script_checks(link)
    finally:
        await link.aclose()
    assert after == before


async def test_reports_made_together_keep_the_first_outcome_and_ack_each_entry(
    redis_url: str,
) -> None:
    """Jobs enqueued together each reach the stream once; their reports, made together, each
    record the first outcome, appear once on the done stream and leave nothing pending."""
    link = RedisLink(redis_url)
    store = QueueStore(link, scope="SID:IN")
    try:
        await store.ensure_group()
        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(store.enqueue, "c1", str(i), b"job-%d" % i)
        assert await store.enqueue("c1", "0", b"job-0")  # the same job again: a success
        assert not await store.enqueue("c1", "0", b"another job")
        entries = await store.read_new("me", 100, 100)
        assert sorted(data for _, data in entries) == sorted(b"job-%d" % i for i in range(30))
        batch_of = {entry_id: data.decode().split("-")[1] for entry_id, data in entries if data}
        async with anyio.create_task_group() as tg:
            for entry_id, batch in batch_of.items():
                tg.start_soon(store.report, "c1", batch, b"first", entry_id)
        await store.report("c1", "0", b"second", next(iter(batch_of)))
        outcomes = await store.outcomes("c1", [str(i) for i in range(30)])
        done = await store.read_done("c1", "0", 100)
        pending = await link.client.xpending(store.jobs, GROUP)
    finally:
        await link.aclose()
    assert set(outcomes.values()) == {b"first"} and len(outcomes) == 30
    assert sorted(batch for _, batch, _ in done) == sorted(str(i) for i in range(30))
    assert pending["pending"] == 0
