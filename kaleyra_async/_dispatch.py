"""The bulk pipeline: source -> validate -> batch -> (limit, retry) -> send -> results.

One task group, stages joined by bounded streams, so memory stays flat for any input length::

    CsvSource.pump ──rows──▶ _plan_rows ──batches──▶ N senders ──▶ ResultsWriter
     (thread)      (chunks)  validate, dedupe,     (LaneQueue:     (one task, writes
                             batch, linger          OTP first)      in a thread)

Rate limiting and retries happen inside ``send`` (``KaleyraClient.send``), per attempt, so the
pipeline cannot bypass them. Every row read gets exactly one result line, except rows that were
read but not yet sent when the run was interrupted: they get no line, so ``--resume`` sends them.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from ._batching import Batch, Batcher, PreparedRow, RepeatFilter
from ._client import AttemptObserver
from ._exceptions import AuthenticationError, ConnectError, KaleyraError, unwrap_group
from ._models import Message, RowResult, RowStatus, SendResult
from ._prepare import RowPreparer
from ._results import Progress, ResultsWriter
from ._sources import InputRow, RowSource

__all__ = ["BulkSummary", "DispatchSettings", "SendFn", "dispatch"]

logger = logging.getLogger(__name__)


class SendFn(Protocol):
    """What the pipeline needs from a client: ``KaleyraClient.send`` fits."""

    def __call__(
        self, message: Message, recipients: Sequence[str], *, observer: AttemptObserver
    ) -> Awaitable[SendResult]: ...


_TOP_REASONS: Final = 5
#: Rows validated between two turns of the event loop. A chunk from the reader holds up to
#: 2,048 rows, and a personalised row costs ~30 µs to validate: planning a whole chunk at once
#: stalled the loop for up to 70 ms, during which the rate limiter fell behind (a paced run lost
#: that time for good) and admitted requests waited to be written (late enough to let the
#: server count a request of the next second in this one). 64 rows keep a turn near 2 ms.
_PLAN_SLICE_ROWS: Final = 64


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    """How the pipeline runs (see ``[dispatch]`` in config.example.toml)."""

    batch_size: int = 100
    max_wait_s: float = 0.05
    concurrency: int = 32
    dedupe: bool = False
    drain_timeout_s: float = 30.0
    #: Resend rows whose earlier request's fate is unknown (at-least-once) instead of reporting.
    retry_ambiguous: bool = False
    #: Send nothing: every valid row becomes ``planned``.
    dry_run: bool = False


@dataclasses.dataclass(slots=True)
class BulkSummary:
    """Live counters of a run; the CLI reads them for the progress bar and the final report."""

    rows: int = 0
    #: Requests sent (in a dry run: requests that would be sent).
    requests: int = 0
    by_status: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    requests_ok: int = 0
    reasons: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    encodings: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    segments: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    unicode_chars: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: Rows repeating an earlier row's number and message (counted with dedupe or in a dry run).
    duplicates: int = 0
    #: Rows already done by an earlier run (resume), not read again.
    resumed_done: int = 0
    interrupted: bool = False
    #: Why the run stopped itself (every request would have failed: wrong key, no server).
    aborted: str | None = None

    @property
    def recorded(self) -> int:
        return sum(self.by_status.values())

    #: Result lines an earlier run wrote, by status (resume).
    earlier: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    @property
    def all_sent(self) -> bool:
        """True when every row, this run's and any earlier run's, was sent (or planned)."""
        statuses = set(self.by_status) | {s for s, n in self.earlier.items() if n}
        return statuses <= {"sent", "planned"}

    def top_reasons(self, n: int = _TOP_REASONS) -> list[tuple[str, int]]:
        return self.reasons.most_common(n)

    def count(self, results: Sequence[RowResult]) -> None:
        for result in results:
            self.by_status[result.status] += 1
            if result.status != "sent" and result.error:
                self.reasons[_reason_key(result)] += 1


#: The "line 12: " that input errors start with, and the line numbers a malformed CSV record's
#: reason ends with: one reason per kind, not one per line (each row's line has them all).
_LINE_PREFIX: Final = re.compile(r"^line \d+: ")
_LINE_DETAILS: Final = re.compile(
    r" \(the row spans lines \d+-\d+\)$|; (?:the quote opens on line|lines?) \d+.*$"
)


def _reason_key(result: RowResult) -> str:
    error = _LINE_DETAILS.sub("", _LINE_PREFIX.sub("", result.error or ""))
    if len(error) > 120:
        error = error[:120].rsplit(" ", 1)[0] + " ..."
    return f"{result.status} {result.error_code or ''}: {error}"


async def dispatch(
    source: RowSource,
    preparer: RowPreparer,
    send: SendFn | None,
    *,
    writer: ResultsWriter,
    settings: DispatchSettings,
    summary: BulkSummary | None = None,
    progress: Progress | None = None,
    stop: anyio.Event | None = None,
    on_results: Callable[[Sequence[RowResult]], None] | None = None,
) -> BulkSummary:
    """Run the whole pipeline over ``source`` and record one result per row through ``writer``.

    Args:
        source: the input rows.
        preparer: validates rows into messages (holds the per-run caches).
        send: sends one request; None means a dry run regardless of ``settings.dry_run``.
        writer: where result lines (and the in-flight journal) go; its task must be running.
        settings: batching, concurrency, dedupe and drain behaviour.
        summary: counters to update live (a new one when None).
        progress: what an earlier run did (``--resume``): done rows are skipped, rows that were
            in flight are reported ``unknown`` (or sent again when ``retry_ambiguous``).
        stop: set it to stop gracefully: reading stops, requests in flight finish (bounded by
            ``drain_timeout_s``) and have their outcome recorded; rows not yet sent get no line.
        on_results: called with each block of results as they are recorded.

    Returns:
        The final counters; ``interrupted`` is True when ``stop`` was set.

    Raises:
        ConfigError: the input cannot be read or lacks a required column.
    """
    summary = summary if summary is not None else BulkSummary()
    stop = stop if stop is not None else anyio.Event()
    if progress is not None:
        summary.earlier.update(progress.statuses)
    dry_run = settings.dry_run or send is None
    run = _Run(
        source, preparer, send, writer, settings, summary, progress, stop, dry_run, on_results
    )
    await run.go()
    return summary


class _Run:
    def __init__(
        self,
        source: RowSource,
        preparer: RowPreparer,
        send: SendFn | None,
        writer: ResultsWriter,
        settings: DispatchSettings,
        summary: BulkSummary,
        progress: Progress | None,
        stop: anyio.Event,
        dry_run: bool,
        on_results: Callable[[Sequence[RowResult]], None] | None,
    ) -> None:
        self.source = source
        self.preparer = preparer
        self.send = send
        self.writer = writer
        self.settings = settings
        self.summary = summary
        self.progress = progress
        self.stop = stop
        self.dry_run = dry_run
        self.queue = _LaneQueue(max(1, settings.concurrency * 2))
        self.reading = anyio.CancelScope()
        self.planning = anyio.CancelScope()
        self.sending = anyio.CancelScope()
        self.repeats = RepeatFilter()
        self.on_results = on_results
        self.flights: set[_Flight] = set()
        source.on_header(preparer.check_header)

    async def go(self) -> None:
        rows_send, rows_receive = anyio.create_memory_object_stream[list[InputRow]](4)

        async def read() -> None:
            with self.reading:
                async with rows_send:
                    await self.source.pump(rows_send)

        async def plan() -> None:
            try:
                with self.planning:
                    await self._plan_rows(rows_receive)
            finally:
                self.queue.close()

        async def senders() -> None:
            with self.sending:
                async with anyio.create_task_group() as workers:
                    for _ in range(self.settings.concurrency):
                        workers.start_soon(self._sender)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_stop)
                async with anyio.create_task_group() as stages:
                    stages.start_soon(read)
                    stages.start_soon(plan)
                    if not self.dry_run:
                        stages.start_soon(senders)
                tg.cancel_scope.cancel()  # the stop watcher never ends by itself
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None

    # -- stop handling ----------------------------------------------------------------------

    def _abort(self, exc: KaleyraError) -> None:
        """Stop the run: every request would fail the same way (a wrong key, no server)."""
        if self.summary.aborted is None:
            self.summary.aborted = str(exc)
            logger.error("stopping the run: %s", exc)
            self.stop.set()

    async def _watch_stop(self) -> None:
        await self.stop.wait()
        self.summary.interrupted = self.summary.aborted is None
        logger.warning("stopping: no new rows are read; waiting for requests in flight")
        self.reading.cancel()
        self.planning.cancel()
        self.queue.close(discard=True)
        for flight in list(self.flights):
            if not flight.on_wire:  # waiting for the journal, the limiter or a backoff
                flight.scope.cancel()
        if self.settings.drain_timeout_s > 0:
            await anyio.sleep(self.settings.drain_timeout_s)
        logger.warning("drain timeout: requests still in flight are recorded as unknown")
        self.sending.cancel()

    # -- planning: validate, dedupe, batch --------------------------------------------------

    async def _plan_rows(self, rows: MemoryObjectReceiveStream[list[InputRow]]) -> None:
        settings = self.settings
        batcher = Batcher(
            batch_size=settings.batch_size,
            # A dry run sends nothing, so there is nothing to linger for.
            max_wait_s=math.inf if self.dry_run else settings.max_wait_s,
        )
        async with rows:
            while True:
                deadline = batcher.next_deadline()
                chunk: list[InputRow] | None = None
                if deadline is None:
                    try:
                        chunk = await rows.receive()
                    except anyio.EndOfStream:
                        break
                else:
                    with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                        try:
                            chunk = await rows.receive()
                        except anyio.EndOfStream:
                            break
                if chunk is not None:
                    for start in range(0, len(chunk), _PLAN_SLICE_ROWS):
                        part = chunk[start : start + _PLAN_SLICE_ROWS]
                        results, ready = self._plan_chunk(part, batcher)
                        if results:
                            self._record(results)
                            await self.writer.room()
                        for batch in ready:
                            await self._submit(batch)
                        await anyio.lowlevel.checkpoint()  # a dry run's submit never waits
                # Linger is for a slow input: while more rows are already waiting (the senders
                # are the bottleneck), keep filling batches instead of flushing them part-full.
                if chunk is None or rows.statistics().current_buffer_used == 0:
                    for batch in batcher.due(anyio.current_time()):
                        await self._submit(batch)
        if not self.stop.is_set():
            for batch in batcher.drain():
                await self._submit(batch)

    def _plan_chunk(
        self, chunk: list[InputRow], batcher: Batcher
    ) -> tuple[list[RowResult], list[Batch]]:
        """Validate a chunk of rows: the results it settles, and the batches now ready."""
        ready: list[Batch] = []
        results: list[RowResult] = []
        progress = self.progress
        dedupe = self.settings.dedupe
        summary = self.summary
        now = anyio.current_time()
        for row in chunk:
            summary.rows += 1
            inflight_before = False
            if progress is not None:
                if progress.is_done(row.row):
                    summary.resumed_done += 1
                    if dedupe:
                        self._dedupe_check(self.preparer.prepare(row))
                    continue
                if row.row in progress.unresolved:
                    inflight_before = True
                    if not self.settings.retry_ambiguous:
                        earlier = self.preparer.prepare(row)
                        results.append(_unknown_from_earlier_run(row, earlier))
                        if dedupe:
                            self._dedupe_check(earlier)
                        continue
            prepared = self.preparer.prepare(row)
            if isinstance(prepared, RowResult):
                results.append(prepared)
                continue
            # A dry run counts repeats even without dedupe, so the plan can say what it would save.
            if (dedupe or self.dry_run) and not self._dedupe_check(prepared):
                summary.duplicates += 1
                if dedupe:
                    results.append(
                        _row_result(
                            prepared,
                            "skipped",
                            error_code="duplicate",
                            error="same number and message as an earlier row",
                        )
                    )
                    continue
            if inflight_before:
                logger.info("row %d: resending (retry_ambiguous is on)", row.row)
            summary.encodings[prepared.encoding] += 1
            summary.segments[prepared.segments] += 1
            if prepared.unicode_chars:
                summary.unicode_chars.update(prepared.unicode_chars)
            ready.extend(batcher.add(prepared, now))
        return results, ready

    def _dedupe_check(self, prepared: PreparedRow | RowResult) -> bool:
        """Remember (number, message); False when it was seen before."""
        if isinstance(prepared, RowResult):
            return True
        return self.repeats.first_time(prepared.to, prepared.message)

    async def _submit(self, batch: Batch) -> None:
        if self.dry_run:
            self.summary.requests += 1
            self._record([_row_result(r, "planned") for r in batch.rows])
            return
        await self.queue.put(batch)

    # -- sending ----------------------------------------------------------------------------

    async def _sender(self) -> None:
        while (batch := await self.queue.get()) is not None:
            await self._send_batch(batch)
            await self.writer.room()

    async def _send_batch(self, batch: Batch) -> None:
        assert self.send is not None
        flight = _Flight(self, batch)
        self.flights.add(flight)
        try:
            with flight.scope:  # cancelled on stop while the request is not on the wire
                result = await self.send(batch.message, batch.recipients, observer=flight)
                self.summary.requests_ok += 1
                self._record(_success_results(batch, result))
                return
        except KaleyraError as exc:
            if isinstance(exc, AuthenticationError | ConnectError):
                self._abort(exc)
                if not (exc.fate_unknown or flight.maybe_sent):
                    # Refused as a whole or never sent, for a reason that is the account's or
                    # the network's, not the rows': like the rows still queued, they are left
                    # to --resume. A "failed" line would be final (resume skips every row that
                    # has one), so the fixed key or server would never get them.
                    flight.release()
                    return
            self._record(_failure_results(batch, exc, flight.attempts, flight.maybe_sent))
            return
        except _StopBeforeSending:
            pass
        except BaseException:  # cancelled from outside: the drain timeout, a second Ctrl-C
            with anyio.CancelScope(shield=True):
                await flight.abandon()
            raise
        finally:
            self.flights.discard(flight)
        with anyio.CancelScope(shield=True):
            await flight.abandon()

    def _record(self, results: list[RowResult]) -> None:
        self.summary.count(results)
        self.writer.write(results)
        if self.on_results is not None:
            try:
                self.on_results(results)
            except Exception:
                # The results are in the file; a failing callback must not cancel requests
                # in flight (they would become "unknown").
                logger.exception("on_results callback failed; the run goes on")


class _StopBeforeSending(Exception):
    """Raised from :meth:`_Flight.sending` to abandon a request that has not gone out."""


class _Flight:
    """One request on its way: the client reports each attempt here (an AttemptObserver).

    It journals the rows before the first attempt (``sending``), and knows at any time whether
    the request may be out there: ``on_wire`` from the moment an attempt is written
    (``writing``) until it is refused as a whole, and ``maybe_sent`` for good once any attempt
    ended without a clear answer. That is what lets a stop record exactly what is known: a
    request that never left, or was only ever refused as a whole (429, 503, connection
    refused), is released for ``--resume`` to send; one that may have reached Kaleyra is
    recorded ``unknown``.
    """

    __slots__ = ("attempts", "batch", "journaled", "maybe_sent", "on_wire", "run", "scope")

    def __init__(self, run: _Run, batch: Batch) -> None:
        self.run = run
        self.batch = batch
        self.scope = anyio.CancelScope()
        self.journaled = False
        self.on_wire = False
        self.maybe_sent = False
        self.attempts = 0

    async def sending(self) -> None:
        if self.run.stop.is_set():
            raise _StopBeforeSending
        if not self.journaled:
            # Set first: the mark is queued before the await, so even if we are cancelled
            # while it is written, abandon() must release it.
            self.journaled = True
            self.run.summary.requests += 1
            await self.run.writer.inflight([r.row for r in self.batch.rows])

    def writing(self) -> None:
        # Nothing awaits between this and the write, so a stop seen here is a clean stop.
        if self.run.stop.is_set():
            raise _StopBeforeSending
        self.on_wire = True
        self.attempts += 1

    def failed(self, error: KaleyraError) -> None:
        if error.fate_unknown:
            self.maybe_sent = True
        if error.safe_to_retry:
            self.on_wire = False
            if self.run.stop.is_set():
                self.scope.cancel()  # don't wait out a backoff for a request we won't send

    async def abandon(self) -> None:
        """Record a request that will not complete: unknown if it may be out, else release it."""
        rows = self.batch.rows
        if self.on_wire or self.maybe_sent:
            self.run._record(
                [
                    _row_result(
                        r,
                        "unknown",
                        error_code="interrupted",
                        error="run stopped while the request was in flight; not resent",
                        attempts=self.attempts,
                    )
                    for r in rows
                ]
            )
        else:
            self.release()

    def release(self) -> None:
        """Journal that the rows were certainly not accepted: --resume sends them."""
        if self.journaled:
            self.run.writer.release([r.row for r in self.batch.rows])
            if self.attempts == 0:
                self.run.summary.requests -= 1  # counted when journaled; it never left


class _LaneQueue:
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
        # fast_acquire: a sender that finds a batch waiting takes it without first yielding to
        # the loop (a full turn per request, every request). Nobody starves: a sender still
        # waits on its request, and the planner yields after every slice of rows. For 50,000
        # OTP rows this cut the client's CPU by 19 % (benchmarks/README.md, "Fewer loop turns").
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


def _row_result(
    row: PreparedRow,
    status: RowStatus,
    *,
    message_id: str | None = None,
    request_id: str | None = None,
    error_code: str | None = None,
    error: str | None = None,
    attempts: int = 0,
) -> RowResult:
    return RowResult(
        row=row.row,
        to=row.to,
        status=status,
        message_id=message_id,
        request_id=request_id,
        error_code=error_code,
        error=error,
        attempts=attempts,
        segments=row.segments,
        encoding=row.encoding,
    )


def _success_results(batch: Batch, result: SendResult) -> list[RowResult]:
    # Kaleyra echoes each recipient (without "+"); the receipts put the "+" back.
    ids = result.message_ids()
    out = []
    for row in batch.rows:
        message_id = ids.get(row.to)
        if message_id is None:
            out.append(
                _row_result(
                    row,
                    "unknown",
                    request_id=result.request_id,
                    error_code="no_message_id",
                    error="request accepted but no message id came back for this number",
                    attempts=result.attempts,
                )
            )
        else:
            out.append(
                _row_result(
                    row,
                    "sent",
                    message_id=message_id,
                    request_id=result.request_id,
                    attempts=result.attempts,
                )
            )
    return out


def _failure_results(
    batch: Batch, exc: KaleyraError, attempts: int, maybe_sent: bool
) -> list[RowResult]:
    # An earlier attempt that may have been accepted (retry_ambiguous retried it) outweighs a
    # later refusal: the SMS may be out, so the row is unknown, never failed.
    if exc.fate_unknown or maybe_sent:
        status: RowStatus = "unknown"
        error = f"{exc} (may have been accepted; not resent: Kaleyra has no idempotency key)"
    else:
        status = "failed"
        error = str(exc)
    return [
        _row_result(
            r, status, error_code=exc.code, error=error, attempts=max(attempts, exc.attempts)
        )
        for r in batch.rows
    ]


def _unknown_from_earlier_run(row: InputRow, prepared: PreparedRow | RowResult) -> RowResult:
    code = "inflight_at_crash"
    error = "in flight when an earlier run stopped; not resent (retry_ambiguous resends)"
    if isinstance(prepared, PreparedRow):
        return _row_result(prepared, "unknown", error_code=code, error=error)
    return RowResult(row=row.row, to=prepared.to, status="unknown", error_code=code, error=error)
