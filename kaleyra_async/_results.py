"""The results file (one NDJSON line per input row), the in-flight journal beside it, and their
writer. Reading them back for a resume is :mod:`kaleyra_async._resume`.

Two files, both append-only:

* ``results.ndjson``: one line per input data row, its final outcome (see README, "Results").
* ``results.ndjson.journal``: a first line describing the run's input, then one line per request
  *before* it is sent: ``{"inflight": [row, ...]}``.

A request's rows are journaled before the request leaves, and their outcomes are appended to the
results file after the answer. So after any crash, ``kill -9`` included, a row is in one of three
states: it has a result line (done: never sent again), it is journaled without a result (its
request may have reached Kaleyra: reported ``unknown`` on resume, never resent silently), or
neither (never sent: resume sends it).

Every write happens in one long-lived writer thread of our own, so the event loop never blocks
on the disk and a paced run does not pay a worker-thread round trip per journal mark. The thread
has one job at a time; whatever queues up meanwhile is its next job (group commit). Result lines
linger on the loop for company; journal marks never wait. Writes reach the operating system
(``write``) before :meth:`ResultsWriter.inflight` returns, which survives a killed process;
``fsync`` is not called, so a power cut may lose the tail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import queue
import stat
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import anyio
import orjson

from ._exceptions import ConfigError
from ._models import RowResult

__all__ = ["ResultsWriter", "encode_result", "journal_path_for", "journal_start_record"]

_JOURNAL_VERSION: Final = 1
#: Result bytes queued before recording waits for the writer (a slow disk or a paused pipe).
_MAX_PENDING_BYTES: Final = 4 << 20
#: Result bytes queued past which they are written without lingering.
_HURRY_BYTES: Final = _MAX_PENDING_BYTES // 4
#: How long result lines may wait for company before they are written (journal marks never wait).
_RESULTS_LINGER_S: Final = 0.02


def journal_path_for(results_path: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(results_path)}.journal")


def encode_result(result: RowResult) -> bytes:
    """One results-file line: orjson writes the dataclass's fields in their declared order."""
    return orjson.dumps(result, option=orjson.OPT_APPEND_NEWLINE)


def journal_start_record(
    input_description: dict[str, Any],
    *,
    resumed: bool,
    dry_run: bool = False,
    plan: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The journal line a run starts with: the first run's header, or a resume's marker."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if resumed:
        return {"resumed": now, "input": input_description}
    return {
        "journal": _JOURNAL_VERSION,
        "started": now,
        "input": input_description,
        "dry_run": dry_run,
        "plan": plan or {},
    }


@dataclasses.dataclass(slots=True)
class _Job:
    """One block for the writer thread: journal lines, result lines, and who waits for them."""

    journal: list[bytes] = dataclasses.field(default_factory=list)
    results: list[bytes] = dataclasses.field(default_factory=list)
    waiters: list[asyncio.Future[None]] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.journal or self.results or self.waiters)


class _Files:
    """The writer thread's side: the two files, and in which order a job's lines reach them."""

    def __init__(
        self, results: IO[bytes] | None, journal: IO[bytes] | None, *, truncate_first: bool
    ) -> None:
        self.results = results
        self.journal = journal
        #: Empty both files right before the first write (an --overwrite whose input's header
        #: is only known once the run has started: until something is written, they are kept).
        self._truncate_first = truncate_first
        self._journal_written = False

    def write(self, job: _Job) -> None:
        journal = job.journal
        if self._truncate_first and (job.results or journal):
            self._truncate_first = False
            # Journal first: a kill in between leaves old results beside an empty journal,
            # which resume refuses, rather than old marks beside no results.
            for fh in (self.journal, self.results):
                if fh is not None and _truncatable(fh):
                    fh.truncate(0)
        if journal and not self._journal_written:
            # The journal's first write (its header) precedes any result line: it makes them ours.
            _write(self.journal, journal)
            self._journal_written = True
            journal = []
        # Results before marks: a kill in between loses only journal lines, marks of requests
        # that wait for this job (resume sends them) and releases (their rows come back unknown).
        _write(self.results, job.results)
        _write(self.journal, journal)


def _write(fh: IO[bytes] | None, lines: list[bytes]) -> None:
    if lines and fh is not None:
        fh.write(b"".join(lines))
        fh.flush()


def _truncatable(fh: IO[bytes]) -> bool:
    """A regular file (or an in-memory one): a FIFO or a device refuses ftruncate (EINVAL),
    where opening it with O_TRUNC had quietly done nothing."""
    try:
        return stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return True


class ResultsWriter:
    """Appends result lines and journal records from one thread, off the event loop.

    Use it inside a task group: ``tg.start_soon(writer.run)`` starts the writer thread and the
    task that batches result lines; ``aclose()`` flushes everything and stops both (shielded,
    so cancellation still leaves a consistent file).
    """

    def __init__(
        self,
        results: IO[bytes] | None,
        journal: IO[bytes] | None = None,
        *,
        truncate_first: bool = False,
    ) -> None:
        self._files = _Files(results, journal, truncate_first=truncate_first)
        #: Result lines lingering on the loop for company, and the bytes recorded and not yet
        #: written (lingering, queued or being written).
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        #: What the thread writes next, growing while it is busy with the job before.
        self._next = _Job()
        #: The thread has a job (at most one at a time: that is what groups the writes).
        self._busy = False
        #: Jobs for the writer thread; None stops it.
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._wakeup = anyio.Event()
        self._hurry = anyio.Event()
        self._written = anyio.Event()
        self._closing = False
        self._stopped = anyio.Event()
        self._error: BaseException | None = None

    def write(self, results: Sequence[RowResult]) -> None:
        """Queue result lines; they are written soon. See :meth:`room` for back-pressure."""
        self._check()
        lines = [encode_result(r) for r in results]
        self._pending.extend(lines)
        self._pending_bytes += sum(map(len, lines))
        self._wakeup.set()
        if self._urgent():
            self._hurry.set()

    async def room(self) -> None:
        """Wait while too much is queued: a slow disk or pipe slows the run down instead of
        filling memory."""
        while self._pending_bytes > _MAX_PENDING_BYTES and self._error is None:
            await self._written.wait()

    async def inflight(self, rows: Sequence[int], ref: str | None = None) -> None:
        """Journal rows as in flight (with their request's ``ref``, which resume puts on an
        ``inflight_at_crash`` row) and return once the journal write reached the OS."""
        self._check()
        if self._files.journal is None:
            await self.room()
            return
        waiter = asyncio.get_running_loop().create_future()
        mark: dict[str, Any] = {"inflight": list(rows)}
        if ref is not None:
            mark["ref"] = ref
        self._next.journal.append(_journal_line(mark))
        # The lingering result lines go along: after a crash, fewer answered rows are unknown.
        self._commit(waiter)
        await waiter
        self._check()

    def release(self, rows: Sequence[int]) -> None:
        """Journal that rows marked in flight were certainly not sent (resume sends them)."""
        self._journal({"released": list(rows)})

    def journal_header(self, record: dict[str, Any]) -> None:
        """Queue a descriptive journal line (run start or resume)."""
        self._journal(record)

    async def run(self) -> None:
        """Start the writer thread, then hand it result lines in blocks until closed.

        Cancellation does not stop it: results recorded while a cancelled run unwinds (requests
        in flight become ``unknown``) must still reach the file. Only :meth:`aclose` ends it,
        so whoever starts it must call that (in a ``finally``).
        """
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._write_jobs, args=(loop,), name="kaleyra-results-writer", daemon=True
        ).start()
        try:
            with anyio.CancelScope(shield=True):
                while not (self._closing and not self._pending):
                    await self._wakeup.wait()
                    if not self._urgent():
                        # Linger for company, so a paced run writes a block every few ms
                        # instead of one per answer.
                        with anyio.move_on_after(_RESULTS_LINGER_S):
                            await self._hurry.wait()
                    self._hurry = anyio.Event()
                    self._wakeup = anyio.Event()
                    await self._flush(loop)
                # A barrier: once it is written, so is everything queued before it.
                await self._flush(loop, barrier=True)
        finally:
            # What is still queued goes before the stop, or its waiter would never wake; a
            # hand-over still scheduled then queues an empty job after the stop, never read.
            if self._next:
                self._hand_over()
            self._jobs.put(None)
            self._stopped.set()

    async def aclose(self) -> None:
        """Write everything still pending and stop the writer."""
        self._closing = True
        self._wakeup.set()
        self._hurry.set()
        with anyio.CancelScope(shield=True):
            await self._stopped.wait()

    def _urgent(self) -> bool:
        """Someone waits on this write (the close) or a lot is queued."""
        return self._closing or self._pending_bytes > _HURRY_BYTES

    async def _flush(self, loop: asyncio.AbstractEventLoop, *, barrier: bool = False) -> None:
        """Hand the pending result lines to the thread and wait until they are written."""
        if self._pending or barrier:
            done = loop.create_future()
            self._commit(done)
            await done
        if self._error is not None:
            raise self._error  # a failed write (a journal mark's, too) ends the run

    def _check(self) -> None:
        if self._error is not None:
            raise ConfigError(f"cannot write results: {self._error}") from self._error

    def _journal(self, record: dict[str, Any]) -> None:
        if self._files.journal is not None:
            self._next.journal.append(_journal_line(record))
            self._submit()

    def _commit(self, waiter: asyncio.Future[None]) -> None:
        """Queue the lingering result lines for the thread, and ``waiter`` to wake once they
        and everything queued before are written."""
        job = self._next
        job.results.extend(self._pending)
        self._pending = []
        job.waiters.append(waiter)
        self._submit()

    def _submit(self) -> None:
        """Have what is queued handed to the thread at the end of this loop turn, unless the
        thread is still writing: then it goes when that job is done (group commit)."""
        if self._busy or not self._next:
            return
        self._busy = True
        asyncio.get_running_loop().call_soon(self._hand_over)

    def _hand_over(self) -> None:
        job, self._next = self._next, _Job()
        self._jobs.put(job)

    def _wrote(self, job: _Job, written: int, error: BaseException | None) -> None:
        """On the loop: a job was written (or failed); wake its waiters, queue the next one."""
        self._busy = False
        if error is not None and self._error is None:
            self._error = error
            self._wakeup.set()  # the result-lines task stops and raises it
        self._pending_bytes -= written
        if written or error is not None:
            previous, self._written = self._written, anyio.Event()
            previous.set()
        for waiter in job.waiters:
            if not waiter.done():  # a journal waiter may have been cancelled meanwhile
                waiter.set_result(None)
        self._submit()

    def _write_jobs(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread body: write each job, then hand its report to the loop with
        ``call_soon_threadsafe`` (which wakes it), until None."""
        error: BaseException | None = None
        while (job := self._jobs.get()) is not None:
            if error is None:
                try:
                    self._files.write(job)
                except Exception as exc:  # reported on the loop; later jobs are not written
                    error = exc
            try:
                loop.call_soon_threadsafe(self._wrote, job, sum(map(len, job.results)), error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return


def _journal_line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
