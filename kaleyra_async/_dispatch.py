"""The bulk pipeline: source -> validate -> batch -> (limit, retry) -> send -> results.

One task group, stages joined by bounded streams, so memory stays flat for any input length::

    source.pump ──rows──▶ planning ──batches──▶ N senders ──▶ ResultsWriter
     (thread)    (chunks)  validate, dedupe,   (LaneQueue:     (one task, writes
                           batch, linger        OTP first)      in a thread)

Rate limiting and retries happen inside ``send`` (the client), per attempt, so the pipeline
cannot bypass them. Every row read gets exactly one result line, except rows that were read but
not yet sent when the run was interrupted: they get no line, so ``--resume`` sends them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from typing import Final

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from ._attempts import ValidatedJsonSend, ValidatedSend
from ._batching import Batch, Batcher, PreparedRow, RepeatFilter
from ._config import DispatchConfig
from ._exceptions import STOPS_THE_RUN, KaleyraError, unwrap_group
from ._flight import Flight, StopBeforeSending
from ._lanes import LaneQueue
from ._models import InputRow, RowResult
from ._outcomes import failure_results, row_result, success_results, unknown_from_earlier_run
from ._prepare import RowPreparer
from ._refs import RequestReferences
from ._results import ResultsWriter
from ._resume import Progress
from ._sources import RowSource
from ._summary import BulkSummary

__all__ = ["dispatch"]

logger = logging.getLogger(__name__)


#: Rows validated between two turns of the event loop, so that planning never stalls the rate
#: limiter or delays an admitted request's write.
_PLAN_SLICE_ROWS: Final = 64


async def dispatch(
    source: RowSource,
    preparer: RowPreparer,
    send: ValidatedSend | None,
    *,
    writer: ResultsWriter,
    config: DispatchConfig,
    retry_ambiguous: bool = False,
    summary: BulkSummary | None = None,
    progress: Progress | None = None,
    stop: anyio.Event | None = None,
    on_results: Callable[[Sequence[RowResult]], None] | None = None,
    send_json: ValidatedJsonSend | None = None,
    references: RequestReferences | None = None,
) -> BulkSummary:
    """Run the whole pipeline over ``source`` and record one result per row through ``writer``.

    Args:
        source: the input rows.
        preparer: validates rows into messages (holds the per-run caches).
        send: sends one request; None is a dry run: every valid row becomes ``planned``.
        writer: where result lines (and the in-flight journal) go; its task must be running.
        config: batching, concurrency, dedupe and drain behaviour.
        retry_ambiguous: resend rows an earlier run left of unknown fate (at-least-once).
        summary: counters to update live (a new one when None).
        progress: what an earlier run did (``--resume``): done rows are skipped, rows that were
            in flight are reported ``unknown`` (or sent again when ``retry_ambiguous``).
        stop: set it to stop gracefully: reading stops, requests in flight finish (bounded by
            ``drain_timeout_s``) and have their outcome recorded; rows not yet sent get no line.
        on_results: called with each block of results as they are recorded.
        send_json: sends personalised rows as the nodes of one ``/sms/json`` request; without
            it (or with ``config.personalised = "single"``) each goes as a ``/sms`` request of
            its own. A dry run plans ``/sms/json`` requests as the config says.
        references: put a reference naming the run and the request in ``ref`` of requests
            that ask for receipts (and in their rows' results).

    Returns:
        The final counters; ``interrupted`` is True when ``stop`` was set.

    Raises:
        ConfigError: the input cannot be read or lacks a required column.
    """
    summary = summary if summary is not None else BulkSummary()
    if progress is not None:
        summary.earlier.update(progress.statuses)
    run = _Run(
        source=source,
        preparer=preparer,
        send=send,
        writer=writer,
        config=config,
        retry_ambiguous=retry_ambiguous,
        summary=summary,
        progress=progress,
        stop=stop if stop is not None else anyio.Event(),
        on_results=on_results,
        send_json=send_json,
        references=references,
    )
    await run.go()
    return summary


@dataclasses.dataclass(kw_only=True, eq=False)
class _Run:
    """One pipeline run: its inputs, and the scopes and queue its stages share."""

    source: RowSource
    preparer: RowPreparer
    send: ValidatedSend | None
    writer: ResultsWriter
    config: DispatchConfig
    retry_ambiguous: bool
    summary: BulkSummary
    progress: Progress | None
    stop: anyio.Event
    on_results: Callable[[Sequence[RowResult]], None] | None
    references: RequestReferences | None
    send_json: ValidatedJsonSend | None = None
    queue: LaneQueue = dataclasses.field(init=False)
    flights: set[Flight] = dataclasses.field(init=False, default_factory=set)
    repeats: RepeatFilter = dataclasses.field(init=False, default_factory=RepeatFilter)
    reading: anyio.CancelScope = dataclasses.field(init=False, default_factory=anyio.CancelScope)
    planning: anyio.CancelScope = dataclasses.field(init=False, default_factory=anyio.CancelScope)
    sending: anyio.CancelScope = dataclasses.field(init=False, default_factory=anyio.CancelScope)

    def __post_init__(self) -> None:
        self.queue = LaneQueue(max(1, self.config.concurrency * 2))
        self.source.on_header(self.preparer.check_header)

    @property
    def dry_run(self) -> bool:
        return self.send is None

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
                    for _ in range(self.config.concurrency):
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
        if self.config.drain_timeout_s > 0:
            await anyio.sleep(self.config.drain_timeout_s)
        logger.warning("drain timeout: requests still in flight are recorded as unknown")
        self.sending.cancel()

    # -- planning: validate, dedupe, batch --------------------------------------------------

    async def _plan_rows(self, rows: MemoryObjectReceiveStream[list[InputRow]]) -> None:
        batcher = Batcher(
            batch_size=self.config.batch_size,
            # A dry run sends nothing, so there is nothing to linger for.
            max_wait_s=math.inf if self.dry_run else self.config.max_wait_ms / 1000,
            json_batch_size=self._json_batch_size(),
        )
        async with rows:
            while True:
                deadline = batcher.next_deadline()
                chunk: list[InputRow] | None = None
                wait_s = math.inf if deadline is None else max(0.0, deadline - anyio.current_time())
                with anyio.move_on_after(wait_s):
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
        dedupe = self.config.dedupe
        summary = self.summary
        now = anyio.current_time()
        for row in chunk:
            summary.rows += 1
            inflight_before = False
            if progress is not None:
                if progress.is_done(row.row):
                    summary.resumed_done += 1
                    if dedupe:
                        self._first_time(self.preparer.prepare(row))
                    continue
                if row.row in progress.unresolved:
                    inflight_before = True
                    if not self.retry_ambiguous:
                        earlier = self.preparer.prepare(row)
                        ref = progress.refs.get(row.row)
                        results.append(unknown_from_earlier_run(row, earlier, ref))
                        if dedupe:
                            self._first_time(earlier)
                        continue
            prepared = self.preparer.prepare(row)
            if isinstance(prepared, RowResult):
                results.append(prepared)
                continue
            # A dry run counts repeats even without dedupe, so the plan can say what it would save.
            if (dedupe or self.dry_run) and not self._first_time(prepared):
                summary.duplicates += 1
                if dedupe:
                    results.append(
                        row_result(
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

    def _json_batch_size(self) -> int:
        """Nodes per ``/sms/json`` request, or 0 when personalised rows go one per request."""
        if self.config.personalised != "json" or not (self.dry_run or self.send_json):
            return 0
        return self.config.json_batch_size

    def _first_time(self, prepared: PreparedRow | RowResult) -> bool:
        """Remember (number, message); False when it was seen before."""
        if isinstance(prepared, RowResult):
            return True
        return self.repeats.first_time(prepared.to, prepared.message)

    async def _submit(self, batch: Batch) -> None:
        if self.dry_run:
            self.summary.requests += 1
            self.summary.requests_by_endpoint[batch.endpoint] += 1
            self._record([row_result(r, "planned") for r in batch.rows])
            return
        await self.queue.put(batch)

    # -- sending ----------------------------------------------------------------------------

    async def _sender(self) -> None:
        while (batch := await self.queue.get()) is not None:
            await self._send_batch(batch)
            await self.writer.room()

    async def _send_batch(self, batch: Batch) -> None:
        assert self.send is not None
        if self.references is not None:
            batch = self.references.apply(batch)
        flight = Flight(batch, journal=self.writer, stop=self.stop)
        self.flights.add(flight)
        try:
            with flight.scope:  # cancelled on stop while the request is not on the wire
                if batch.endpoint == "sms/json":
                    assert self.send_json is not None
                    result = await self.send_json(batch.nodes, bodies=batch.bodies, attempts=flight)
                else:
                    result = await self.send(batch.message, batch.recipients, attempts=flight)
                self.summary.requests_ok += 1
                self._record(success_results(batch, result))
                return
        except KaleyraError as exc:
            if isinstance(exc, STOPS_THE_RUN):
                self._abort(exc)
                if flight.handed_off:  # lost touch with the process settling it: --resume asks
                    return
                if not (exc.fate_unknown or flight.maybe_sent):
                    # Refused as a whole or never sent, for a reason that is the account's or
                    # the network's, not the rows': like the rows still queued, they are left
                    # to --resume. A "failed" line would be final (resume skips every row that
                    # has one), so the fixed key or server would never get them.
                    flight.release()
                    return
            self._record(failure_results(batch, exc, flight.maybe_sent))
            return
        except StopBeforeSending:
            pass
        except BaseException:  # cancelled from outside: the drain timeout, a second Ctrl-C
            self._record(flight.abandoned())
            raise
        finally:
            self.flights.discard(flight)
            if flight.attempts:
                self.summary.requests += 1
                self.summary.requests_by_endpoint[batch.endpoint] += 1
        self._record(flight.abandoned())

    def _record(self, results: list[RowResult]) -> None:
        if not results:
            return
        self.summary.count(results)
        self.writer.write(results)
        if self.on_results is not None:
            try:
                self.on_results(results)
            except Exception:
                # The results are in the file; a failing callback must not cancel requests
                # in flight (they would become "unknown").
                logger.exception("on_results callback failed; the run goes on")
