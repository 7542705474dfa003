"""``send-bulk --queue``: the bulk pipeline with a Redis stream as its send.

The collector reads, validates, batches and journals exactly as a local run does (it *is*
``send_bulk``); only its send differs: :class:`QueueSend` puts each batch on the account's jobs
stream and waits for a worker's outcome, which the pipeline records as usual::

    send-bulk --queue ──XADD──▶ jobs stream ──XREADGROUP──▶ workers ──POST──▶ Kaleyra
          ▲                                                    │
          └────────────── XREAD ◀── campaign's done stream ◀───┘

The rows of a batch are journaled in flight before it is queued. A collector killed, stopped
or cut off from Redis meanwhile leaves them unresolved (it never records a batch it queued on
its own); ``--resume`` (:func:`recover`) then writes the outcomes the workers reported
(waiting for those still queued), releases the rows whose batch never reached Redis (sent by
the resumed run) if Redis is the server the campaign started on, and only then runs the
pipeline over the rest. The campaign id that ties a results file to its keys in Redis, and
that server's ``run_id``, are kept beside it, in ``<results>.campaign``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import anyio

from ._attempts import Attempts
from ._bulk import BulkOptions, send_bulk
from ._config import Config
from ._exceptions import ConfigError, KaleyraError, RedisUnavailableError, unwrap_group
from ._flight import Flight
from ._models import Message, SendResult
from ._outcomes import failure_results, success_results
from ._queue_codec import (
    Job,
    Outcome,
    QueuedFailure,
    batch_id_of,
    decode_job,
    decode_outcome,
    encode_job,
)
from ._queue_store import QueueStore
from ._redis import BLOCK_MS, RedisLink
from ._results import ResultsWriter, journal_path_for
from ._resume import load_progress
from ._sources import RecordSource
from ._summary import BulkSummary

__all__ = ["QueueSend", "campaign_path_for", "recover", "send_bulk_queued"]

logger = logging.getLogger(__name__)

#: How often a resumed collector looks for the outcomes of the earlier run's queued batches.
_RECOVERY_POLL_S: Final = 0.5


def campaign_path_for(results_path: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(results_path)}.campaign")


class QueueSend:
    """The pipeline's send for a queued campaign: queue the batch, wait for its outcome.

    Run :meth:`collect` alongside (it routes the reported outcomes to the waiting sends).
    """

    def __init__(self, store: QueueStore, campaign: str) -> None:
        self.store = store
        self.campaign = campaign
        self._waiting: dict[str, asyncio.Future[Outcome]] = {}
        #: Why :meth:`collect` stopped reading outcomes (Redis unreachable), once it has.
        self._lost: RedisUnavailableError | None = None

    async def __call__(
        self, message: Message, recipients: Sequence[str], *, attempts: Attempts | None = None
    ) -> SendResult:
        return await self._queue(attempts)

    async def json(
        self,
        nodes: Sequence[tuple[str, Message]],
        *,
        bodies: Sequence[str | None] | None = None,
        attempts: Attempts | None = None,
    ) -> SendResult:
        """The pipeline's ``/sms/json`` send: the batch (its nodes) goes on the queue whole."""
        return await self._queue(attempts)

    async def _queue(self, attempts: Attempts | None) -> SendResult:
        if not isinstance(attempts, Flight):
            raise TypeError("the queue's send is the bulk pipeline's: it needs its Flight")
        batch = attempts.batch
        batch_id = batch_id_of(batch)
        await attempts.sending()  # the rows are journaled in flight...
        attempts.writing(1)  # ...before the batch can reach the queue
        if self._lost is not None:  # certainly not queued: released for --resume to send
            raise _still_lost(self._lost)
        # From here a worker settles it; if this run stops or loses Redis first, the rows stay
        # in flight for --resume, which finds the job and its outcome in Redis (or no job).
        attempts.handed_off = True
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting[batch_id] = waiter
        try:
            added = await self.store.enqueue(
                self.campaign, batch_id, encode_job(self.campaign, batch)
            )
            if not added:
                raise KaleyraError(f"batch {batch_id} was queued before in this campaign")
            outcome = await waiter
        finally:
            self._waiting.pop(batch_id, None)
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # collect()'s error, unread if enqueue failed on its own
        if isinstance(outcome, QueuedFailure):
            raise outcome
        return outcome

    async def collect(self) -> None:
        """Route reported outcomes to the sends waiting for them (runs until cancelled). If
        Redis stays unreachable, every waiting send (and any later one) raises that."""
        try:
            await self._collect()
        except RedisUnavailableError as exc:
            self._lost = exc
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(_still_lost(exc))

    async def _collect(self) -> None:
        last = "0-0"
        while True:
            for entry_id, batch_id, data in await self.store.read_done(
                self.campaign, last, BLOCK_MS
            ):
                last = entry_id
                waiter = self._waiting.get(batch_id)
                if waiter is None or waiter.done():
                    continue  # an earlier run's batch, or a repeated report
                try:
                    waiter.set_result(decode_outcome(data))
                except ValueError as exc:
                    waiter.set_exception(KaleyraError(f"batch {batch_id}: {exc}"))


def _still_lost(exc: RedisUnavailableError) -> RedisUnavailableError:
    """A fresh copy for each send it stops (one exception object raised in many tasks would
    collect all their tracebacks)."""
    return RedisUnavailableError(str(exc), url=exc.url)


async def send_bulk_queued(
    source: str | os.PathLike[str] | RecordSource,
    config: Config,
    options: BulkOptions,
    *,
    stop: anyio.Event | None = None,
    summary: BulkSummary | None = None,
) -> BulkSummary:
    """``send_bulk`` through the queue: workers send, this process records.

    Raises:
        ConfigError: no Redis URL, no results file, a dry run, or as ``send_bulk``.
        RedisUnavailableError: Redis stayed unreachable.
    """
    if not config.redis.url:
        raise ConfigError("--queue needs --redis URL (or [redis] url, or KALEYRA_REDIS_URL)")
    if options.out is None:
        raise ConfigError("--queue needs --out: the campaign is tied to its results file")
    if options.dry_run:
        raise ConfigError("--queue and --dry-run contradict each other: a dry run queues nothing")
    stop = stop if stop is not None else anyio.Event()
    summary = summary if summary is not None else BulkSummary()
    found = await anyio.to_thread.run_sync(_campaign_of, options)
    campaign = found.id
    link = RedisLink(config.redis.url, unavailable_timeout_s=config.redis.unavailable_timeout_s)
    store = QueueStore(link, scope=f"{config.sid}:{config.pod}")
    logger.info("campaign %s on %s", campaign, link.url)
    try:
        # Before any row is read or journaled: a wrong URL leaves nothing behind.
        server = await store.server_id()
        if found.earlier:
            await recover(options.out, store, campaign, stop=stop, trusted=found.server == server)
        elif found.new:
            path = campaign_path_for(options.out)
            await anyio.to_thread.run_sync(path.write_text, f"{campaign}\n{server}\n", "ascii")
        if stop.is_set():
            summary.interrupted = True
            return summary
        sender = QueueSend(store, campaign)
        queued = dataclasses.replace(
            config,
            dispatch=dataclasses.replace(config.dispatch, concurrency=config.redis.queue_depth),
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sender.collect)
                await send_bulk(
                    source, queued, options, stop=stop, summary=summary, send=sender,
                    send_json=sender.json,
                )  # fmt: skip
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None
        if not (summary.interrupted or summary.aborted):
            await store.finish(campaign)
    finally:
        await link.aclose()
    return summary


@dataclasses.dataclass(frozen=True, slots=True)
class _Campaign:
    """A results file's campaign: its id, the Redis server (``run_id``) it started on."""

    id: str
    server: str | None = None
    #: An earlier run queued it: --resume recovers it first.
    earlier: bool = False
    #: New, and this run starts afresh: the file is to be written (with the server).
    new: bool = False


def _campaign_of(options: BulkOptions) -> _Campaign:
    """The campaign of this results file (``<results>.campaign``: its id, then the server).

    A new run gets a new id, written only where ``send_bulk`` will start afresh (so a refused
    run never replaces the id of the campaign it was refused to overwrite).
    """
    assert options.out is not None
    path = campaign_path_for(options.out)
    lines = path.read_text(encoding="ascii").split() if path.exists() else []
    if options.resume and lines:  # (empty: cut short; its rows in flight end up unknown)
        return _Campaign(lines[0], lines[1] if len(lines) > 1 else None, earlier=True)
    campaign = uuid.uuid4().hex
    fresh = options.overwrite or not (
        os.path.exists(options.out) or journal_path_for(options.out).exists()
    )
    if fresh or options.resume:
        path.write_text(campaign + "\n", encoding="ascii")  # the server follows, once known
    return _Campaign(campaign, new=fresh or options.resume)


async def recover(
    out: str | os.PathLike[str],
    store: QueueStore,
    campaign: str,
    *,
    stop: anyio.Event,
    trusted: bool,
) -> int:
    """Settle the rows an earlier collector left in flight; return how many got a line.

    Rows whose batch is recorded in Redis get the outcome a worker reported (waiting for the
    workers while it is still queued). The others never reached the queue if Redis kept all it
    was given: ``trusted``, the server the campaign started on and never restarted since
    (its ``run_id``). Then they are released for this run to send; otherwise (a restart, a
    failover or another server may have lost a batch a worker sent) they stay in flight, and
    the run records them ``unknown``, never resent.
    """
    progress = await anyio.to_thread.run_sync(load_progress, out)
    unresolved = progress.unresolved
    if not unresolved:
        return 0
    jobs = [decode_job(data) for data in (await store.recorded_jobs(campaign)).values()]
    waiting: dict[str, Job] = {
        j.batch_id: j for j in jobs if any(r.row in unresolved for r in j.batch.rows)
    }
    queued = {r.row for j in waiting.values() for r in j.batch.rows}
    never = sorted(unresolved - queued)
    written = 0
    results_fh = await anyio.to_thread.run_sync(open, out, "ab")
    journal_fh = await anyio.to_thread.run_sync(open, journal_path_for(out), "ab")
    try:
        writer = ResultsWriter(results_fh, journal_fh)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            try:
                if never and trusted:
                    logger.info(
                        "%d rows in flight never reached the queue: sending them", len(never)
                    )
                    writer.release(never)
                elif never:
                    logger.warning(
                        "%d rows were in flight in batches this Redis does not hold, and it is "
                        "not the server the campaign started on (restarted, failed over or "
                        "another one): it may have lost batches a worker sent, so they are "
                        "recorded unknown, never resent",
                        len(never),
                    )
                while waiting and not stop.is_set():
                    found = await store.outcomes(campaign, list(waiting))
                    for batch_id, data in found.items():
                        job = waiting.pop(batch_id)
                        outcome = decode_outcome(data)
                        results = (
                            success_results(job.batch, outcome)
                            if isinstance(outcome, SendResult)
                            else failure_results(job.batch, outcome, outcome.fate_unknown)
                        )
                        mine = [r for r in results if r.row in unresolved]
                        writer.write(mine)
                        written += len(mine)
                    if waiting:
                        logger.info(
                            "waiting for the workers: %d batches of the earlier run", len(waiting)
                        )
                        with anyio.move_on_after(_RECOVERY_POLL_S):
                            await stop.wait()
            finally:
                await writer.aclose()
    finally:
        await anyio.to_thread.run_sync(results_fh.close)
        await anyio.to_thread.run_sync(journal_fh.close)
    return written
