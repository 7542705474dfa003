"""``worker``: sends queued campaigns' batches under the shared rate limit, and reports.

Any number of workers, on any machine, read one account's jobs stream through one consumer
group. Per batch::

    read (or claim) ─▶ marked by another worker? ─yes─▶ report unknown (never resent)
                         │no
                         ▼
         limiter turn ─▶ mark "about to send" (Redis) ─▶ POST ─▶ report outcome, XACK

The mark is written before the request can leave, as the local journal is (``_flight``), so a
batch claimed from a dead worker is sent only if its mark was never written. A live worker
renews its entries every third of ``claim_idle_s``, so only a dead (or stalled that long)
worker's batches are claimed. On SIGTERM / Ctrl-C a worker stops reading, gives unsent batches
back to the stream, and lets requests in flight finish (``drain_timeout_s``); a request still
out then is reported unknown.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._attempts import ValidatedJsonSend, ValidatedSend
from ._exceptions import STOPS_THE_RUN, KaleyraError, RedisUnavailableError, unwrap_group
from ._flight import Flight, StopBeforeSending
from ._limits import WORKER_CONCURRENCY
from ._queue_codec import Job, QueuedFailure, decode_job, failure_outcome, success_outcome
from ._queue_store import QueueStore
from ._redis import BLOCK_MS

__all__ = ["WorkerOptions", "WorkerSummary", "run_worker"]

logger = logging.getLogger(__name__)

#: The most entries one read asks for.
_READ_CHUNK: Final = 100
#: A stream entry read or claimed: its id, its job (None: deleted meanwhile), claimed or not.
_Entry = tuple[str, bytes | None, bool]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    concurrency: int = WORKER_CONCURRENCY
    claim_idle_s: float = 30.0
    drain_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.claim_idle_s <= 0 or self.drain_timeout_s < 0:
            raise ValueError("claim_idle_s must be > 0 and drain_timeout_s >= 0")


@dataclasses.dataclass(slots=True)
class WorkerSummary:
    """What a worker did."""

    sent: int = 0
    failed: int = 0
    unknown: int = 0
    claimed: int = 0
    given_back: int = 0
    #: Batches left pending on the stream (Redis lost): another worker claims them.
    left_pending: int = 0
    #: Why the worker stopped itself (a refused key, an unreachable host or Redis).
    aborted: str | None = None


class _Marks:
    """The ``Journal`` of one batch's :class:`Flight`: "about to send" is a mark in Redis."""

    def __init__(self, store: QueueStore, job: Job, consumer: str) -> None:
        self.store = store
        self.job = job
        self.consumer = consumer
        #: Another worker marked the batch first: it is theirs.
        self.taken = False

    async def inflight(self, rows: Sequence[int], ref: str | None = None) -> None:
        if not await self.store.mark_sending(self.job.campaign, self.job.batch_id, self.consumer):
            self.taken = True
            raise StopBeforeSending

    def release(self, rows: Sequence[int]) -> None:
        """Nothing to do now: :meth:`_Worker.give_back` clears the mark with the entry."""


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_worker(
    store: QueueStore,
    send: ValidatedSend,
    options: WorkerOptions,
    *,
    send_json: ValidatedJsonSend,
    stop: anyio.Event,
    summary: WorkerSummary | None = None,
) -> WorkerSummary:
    """Send batches from the queue (``/sms`` ones through ``send``, ``/sms/json`` ones through
    ``send_json``) until ``stop`` is set (or the worker must abort)."""
    worker = _Worker(store, send, send_json, options, stop, summary or WorkerSummary())
    await store.ensure_group()
    try:
        await worker.run()
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None
    return worker.summary


class _Worker:
    def __init__(
        self,
        store: QueueStore,
        send: ValidatedSend,
        send_json: ValidatedJsonSend,
        options: WorkerOptions,
        stop: anyio.Event,
        summary: WorkerSummary,
    ) -> None:
        self.store = store
        self.send = send
        self.send_json = send_json
        self.options = options
        self.stop = stop
        self.summary = summary
        self.consumer = consumer_name()
        #: Entries read and not finished (queued here or being handled), and those being handled.
        self.held = 0
        self.active = 0
        #: Set when an entry is finished: the reader may have room for another chunk.
        self._room = anyio.Event()
        #: Entries being handled here, by id: renewed, and never handled twice.
        self.mine: dict[str, Flight | None] = {}
        self.sending = anyio.CancelScope()
        #: Redis stayed unreachable: batches in hand stay pending rather than given back.
        self.redis_lost = False

    async def run(self) -> None:
        logger.info("worker %s reading %s", self.consumer, self.store.jobs)
        # Bounded by _read, not here: concurrency + a chunk held, plus a claim's 100 at most.
        inbox_in, inbox = anyio.create_memory_object_stream[_Entry](math.inf)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._renew)
            tg.start_soon(self._watch_stop)
            with self.sending:
                async with anyio.create_task_group() as senders, inbox_in, inbox:
                    for _ in range(self.options.concurrency):
                        senders.start_soon(self._sender, inbox.clone())
                    async with anyio.create_task_group() as readers:
                        readers.start_soon(self._claim, inbox_in)
                        await self._read(inbox_in)
                        readers.cancel_scope.cancel()
            tg.cancel_scope.cancel()

    async def _watch_stop(self) -> None:
        await self.stop.wait()
        self._room.set()
        for flight in list(self.mine.values()):
            if flight is not None and not flight.on_wire:
                flight.scope.cancel()
        await anyio.sleep(self.options.drain_timeout_s)
        logger.warning("drain timeout: batches still in flight are reported unknown")
        self.sending.cancel()

    async def _sender(self, inbox: MemoryObjectReceiveStream[_Entry]) -> None:
        async with inbox:
            async for entry_id, data, claimed in inbox:
                await self._handle(entry_id, data, claimed)

    def _hold(self, inbox: MemoryObjectSendStream[_Entry], entry: _Entry) -> None:
        self.mine[entry[0]] = None
        self.held += 1
        inbox.send_nowait(entry)

    async def _read(self, inbox: MemoryObjectSendStream[_Entry]) -> None:
        """Read new entries in chunks of a quarter of ``concurrency`` (one stream call per
        chunk, not per batch), at most that many queued here beyond the senders, and a read as
        soon as the senders have nothing queued."""
        chunk = max(1, min(self.options.concurrency // 4, _READ_CHUNK))
        hold = self.options.concurrency + chunk
        while not self.stop.is_set():
            room = hold - self.held
            if room < chunk and self.held > self.active:
                self._room = anyio.Event()
                await self._room.wait()
                continue
            try:
                entries = await self.store.read_new(self.consumer, min(room, _READ_CHUNK), BLOCK_MS)
            except KaleyraError as exc:  # Redis gone: stop reading, let the senders drain
                self._abort(exc)
                return
            for entry_id, data in entries:
                self._hold(inbox, (entry_id, data, False))

    async def _claim(self, inbox: MemoryObjectSendStream[_Entry]) -> None:
        """Take over the batches of workers that stopped renewing them (they died)."""
        idle_ms = round(self.options.claim_idle_s * 1000)
        while not self.stop.is_set():
            with anyio.move_on_after(self.options.claim_idle_s / 2):
                await self.stop.wait()
            if self.stop.is_set():
                return
            try:
                claimed = await self.store.claim_idle(self.consumer, idle_ms, 100)
            except KaleyraError as exc:
                self._abort(exc)
                return
            for entry_id, data in claimed:
                if entry_id in self.mine:
                    continue  # ours, and still being handled (a renewal came late)
                self.summary.claimed += 1
                logger.warning("claimed batch %s from a worker that stopped", entry_id)
                self._hold(inbox, (entry_id, data, True))

    async def _renew(self) -> None:
        while True:
            await anyio.sleep(self.options.claim_idle_s / 3)
            try:
                await self.store.renew(self.consumer, list(self.mine))
            except KaleyraError as exc:  # our batches will be claimed: stop taking more
                self._abort(exc)
                return

    async def _handle(self, entry_id: str, data: bytes | None, claimed: bool) -> None:
        self.active += 1
        if self.held == self.active:
            self._room.set()  # nothing queued here any more: read the next chunk now
        try:
            await self._take(entry_id, data, claimed)
        except KaleyraError as exc:  # Redis gone: the entry stays pending, to be claimed
            self._abort(exc)
        finally:
            self.mine.pop(entry_id, None)
            self.active -= 1
            self.held -= 1
            self._room.set()

    async def _take(self, entry_id: str, data: bytes | None, claimed: bool) -> None:
        if data is None:
            await self.store.drop(entry_id)
            return
        try:
            job = decode_job(data)
        except ValueError as exc:
            logger.error("dropping stream entry %s: %s", entry_id, exc)
            await self.store.drop(entry_id)
            return
        if self.stop.is_set():  # read before the stop: back to the stream, no turn taken
            await self._give_back(job, entry_id, data)
            return
        if claimed and await self.store.marked_by(job.campaign, job.batch_id) is not None:
            # Its worker died after marking it: the request may have left.
            error = QueuedFailure(
                "the worker sending this batch stopped while its request may have been out",
                code="worker_lost",
                fate_unknown=True,
                attempts=0,
            )
            await self._report(job, entry_id, failure_outcome(error, maybe_sent=True))
            self.summary.unknown += len(job.batch.rows)
            return
        await self._send(job, entry_id, data)

    async def _send(self, job: Job, entry_id: str, data: bytes) -> None:
        marks = _Marks(self.store, job, self.consumer)
        flight = Flight(job.batch, journal=marks, stop=self.stop)
        self.mine[entry_id] = flight
        batch = job.batch
        outcome: bytes | None = None
        try:
            with flight.scope:
                if batch.endpoint == "sms/json":
                    result = await self.send_json(batch.nodes, bodies=batch.bodies, attempts=flight)
                else:
                    result = await self.send(batch.message, batch.recipients, attempts=flight)
                outcome = success_outcome(result)
                self.summary.sent += len(batch.rows)
        except KaleyraError as exc:
            maybe_sent = exc.fate_unknown or flight.maybe_sent
            if isinstance(exc, STOPS_THE_RUN) and not maybe_sent:
                # This worker's key, network, Redis or setup, and the request never left: the
                # batch goes back for a worker that can send it, and this one stops.
                self._abort(exc)
                await self._give_back(job, entry_id, data)
                return
            outcome = failure_outcome(exc, maybe_sent=maybe_sent)
            if maybe_sent:
                self.summary.unknown += len(batch.rows)
            else:
                self.summary.failed += len(batch.rows)
        except StopBeforeSending:
            pass
        except BaseException:  # the drain timeout
            with anyio.CancelScope(shield=True):
                await self._abandon(flight, job, entry_id, data)
            raise
        # Reported outside the send's error handling: a report that fails after a request left
        # must never look like a request that failed to leave (it would be given back).
        if outcome is not None:
            await self._report(job, entry_id, outcome)
        elif marks.taken:
            logger.warning("batch %s is being sent by another worker", job.batch_id)
        else:
            await self._abandon(flight, job, entry_id, data)

    async def _abandon(self, flight: Flight, job: Job, entry_id: str, data: bytes) -> None:
        """A batch this worker will not finish: unknown if it may be out, else given back."""
        if flight.on_wire or flight.maybe_sent:
            error = QueuedFailure(
                "the worker stopped while the request was in flight",
                code="interrupted",
                fate_unknown=True,
                attempts=0,
            )
            await self._report(job, entry_id, failure_outcome(error, maybe_sent=True))
            self.summary.unknown += len(job.batch.rows)
        else:
            await self._give_back(job, entry_id, data)

    async def _report(self, job: Job, entry_id: str, outcome: bytes) -> None:
        """Report; if Redis is gone, stop this worker and leave the batch pending with its mark
        (a claimer records it unknown: never resent)."""
        try:
            await self.store.report(job.campaign, job.batch_id, outcome, entry_id)
        except KaleyraError as exc:
            logger.error("could not report batch %s: %s", job.batch_id, exc)
            self._abort(exc)

    async def _give_back(self, job: Job, entry_id: str, data: bytes) -> None:
        if self.redis_lost:  # each would wait out the bounded wait: the claim takes them
            self.summary.left_pending += 1
            return
        try:
            if await self.store.give_back(
                job.campaign, job.batch_id, self.consumer, entry_id, data
            ):
                self.summary.given_back += 1
        except KaleyraError as exc:  # Redis is gone: the entry stays pending, to be claimed
            logger.warning("could not give batch %s back: %s", job.batch_id, exc)

    def _abort(self, exc: KaleyraError) -> None:
        if isinstance(exc, RedisUnavailableError):
            self.redis_lost = True
        if self.summary.aborted is None:
            self.summary.aborted = str(exc)
            logger.error("worker stopping: %s", exc)
            self.stop.set()
