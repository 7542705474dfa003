"""The results file (one NDJSON line per input row) and the in-flight journal beside it.

Two files, both append-only:

* ``results.ndjson``: one line per input data row, its final outcome (see README, "Results").
* ``results.ndjson.journal``: a first line describing the run's input, then one line per request
  *before* it is sent: ``{"inflight": [row, ...]}``.

A request's rows are journaled before the request leaves, and their outcomes are appended to the
results file after the answer. So after any crash, ``kill -9`` included, a row is in one of three
states: it has a result line (done: never sent again), it is journaled without a result (its
request may have reached Kaleyra: reported ``unknown`` on resume, never resent silently), or
neither (never sent: resume sends it).

Every write happens in one long-lived writer thread, so the event loop never blocks on the disk.
The thread has at most one job at a time: a journal mark is handed over at the end of the loop
turn that made it, or, while the thread is busy, as soon as it reports the job before done
(``loop.call_soon_threadsafe``); whatever queued up meanwhile is written together (group commit,
see ``ResultsWriter._submit``). Result lines wait up to 20 ms on the loop for company, then go
the same way as one block. Journal writes reach the operating system (``write``) before the
request is sent, which survives a killed process; ``fsync`` is not called, so a power cut may lose
the tail.

Why a thread of our own rather than ``anyio.to_thread.run_sync`` per block: a paced run (one
request every 0.5 ms at 2,000/s) journals every request on its own, and the worker-thread round
trip through anyio plus a wake-up of a writer task cost about 0.1 ms of CPU a request, a fifth of
the client's whole budget (see benchmarks/README.md, "Limiter at --rate 2000").
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import io
import logging
import os
import queue
import stat
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import anyio
import orjson

from ._exceptions import ConfigError
from ._models import RowResult

__all__ = ["Progress", "ResultsWriter", "journal_path_for", "load_progress"]

logger = logging.getLogger(__name__)

_JOURNAL_VERSION: Final = 1
#: Result bytes queued before recording waits for the writer (a slow disk or a paused pipe).
_MAX_PENDING_BYTES: Final = 4 << 20
#: How long result lines may wait for company before they are written (journal marks never wait).
_RESULTS_LINGER_S: Final = 0.02


def journal_path_for(results_path: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(results_path)}.journal")


def encode_result(result: RowResult) -> bytes:
    """One results-file line: orjson writes the dataclass's fields in their declared order."""
    return orjson.dumps(result, option=orjson.OPT_APPEND_NEWLINE)


@dataclasses.dataclass(slots=True)
class Progress:
    """What an earlier run of the same input already did, read back from its files."""

    #: done[row] is 1 when the row has a result line (index 0 unused).
    done: bytearray = dataclasses.field(default_factory=bytearray)
    #: Rows journaled as in flight that have no result line.
    unresolved: set[int] = dataclasses.field(default_factory=set)
    #: The input description recorded by the first run.
    input: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: How many result lines there were, by status.
    statuses: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: The earlier run was a dry run: its "planned" lines are not outcomes.
    dry_run: bool = False
    #: The message options of the first run (body, sender, type, ...), to compare on resume.
    plan: dict[str, Any] = dataclasses.field(default_factory=dict)

    def is_done(self, row: int) -> bool:
        return row < len(self.done) and self.done[row] == 1

    def mark_done(self, row: int) -> None:
        if row >= len(self.done):
            self.done.extend(bytes(max(row + 1 - len(self.done), len(self.done))))
        self.done[row] = 1


def describe_input(path: str | None) -> dict[str, Any]:
    """What identifies an input file across runs: its size and a hash of its ends.

    Resume relies on row N being the same person in both runs; the hash of the first and last
    megabyte catches an edited or swapped file of the same size. stdin and records cannot be
    identified (empty description).
    """
    if path is None or path == "-":
        return {}
    block = 1 << 20
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(block))
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(block, size - block))
        digest.update(fh.read(block))
    return {"path": os.path.abspath(path), "size": size, "sha256_ends": digest.hexdigest()[:32]}


def same_input(earlier: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether two descriptions name the same content (the path may differ: files move)."""
    keys = ("size", "sha256_ends")
    return all(earlier.get(k) == now.get(k) for k in keys)


def load_progress(results_path: str | os.PathLike[str]) -> Progress:
    """Read an earlier run's results and journal, repairing a torn last line of either.

    Raises:
        ConfigError: a file exists but is not one of ours (a line that isn't a JSON object).
            A file that does not start as ours is refused before anything in it is cut.
    """
    progress = Progress()
    results = Path(results_path)
    journal = journal_path_for(results)
    _check_ours(results, journal)
    for line_no, record in _read_ndjson(results):
        row = record.get("row")
        if not isinstance(row, int) or row < 1:
            raise ConfigError(f"{results}:{line_no}: not a kaleyra_async result line")
        if progress.is_done(row):
            raise ConfigError(f"{results}:{line_no}: row {row} has two result lines")
        progress.mark_done(row)
        progress.statuses[str(record.get("status"))] += 1
    # A "released" line says that this run's request for the rows never reached Kaleyra; it
    # says nothing of an earlier run's request for them. A row of unknown fate that a resume
    # (retry_ambiguous) tried again and got refused is still of unknown fate: the marks of
    # earlier runs are kept apart, and only a result line settles them.
    earlier_runs: set[int] = set()
    this_run: set[int] = set()
    for line_no, record in _read_ndjson(journal):
        if "inflight" in record:
            this_run.update(record["inflight"])
        elif "released" in record:
            this_run.difference_update(record["released"])
        elif "journal" in record or "resumed" in record:
            earlier_runs |= this_run
            this_run = set()
            if "journal" in record:
                if not progress.input:
                    progress.input = dict(record.get("input") or {})
                    progress.plan = dict(record.get("plan") or {})
                progress.dry_run = progress.dry_run or bool(record.get("dry_run"))
        else:
            raise ConfigError(f"{journal}:{line_no}: not a kaleyra_async journal line")
    progress.unresolved = {row for row in earlier_runs | this_run if not progress.is_done(row)}
    return progress


def _check_ours(results: Path, journal: Path) -> None:
    """Refuse files that kaleyra_async did not write, before a torn tail is cut from them.

    Every run writes its journal's header line before anything else, so files with content are
    ours only when the journal starts with that header; a results line must start the results.

    Raises:
        ConfigError: naming the file, which is left exactly as it was.
    """
    journal_head = _first_line(journal)
    results_head = _first_line(results)
    if journal_head is None and results_head is None:
        return  # nothing was ever written: nothing to cut either
    untouched = "it is left as it is: choose another --out"
    if journal_head is None:
        raise ConfigError(
            f"{results}: not a kaleyra_async results file (there is no {journal.name} beside "
            f"it); {untouched}"
        )
    header = _json_object(journal_head)
    if header is None or "journal" not in header:
        raise ConfigError(
            f"{journal}:1: not a kaleyra_async journal (the first line is not its header); "
            f"{untouched}"
        )
    if results_head and results_head.endswith(b"\n"):
        record = _json_object(results_head)
        row = None if record is None else record.get("row")
        if not isinstance(row, int) or isinstance(row, bool) or row < 1:
            raise ConfigError(f"{results}:1: not a kaleyra_async result line; {untouched}")


def _first_line(path: Path, limit: int = 1 << 20) -> bytes | None:
    """The first line of a file, with its newline if it has one; None if missing or empty."""
    try:
        with path.open("rb") as fh:
            line = fh.readline(limit)
    except FileNotFoundError:
        return None
    return line or None


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _read_ndjson(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    if not path.exists():
        return
    _truncate_torn_tail(path)
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ConfigError(f"{path}:{line_no}: not valid JSON") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{path}:{line_no}: not a JSON object")
            yield line_no, record


def _truncate_torn_tail(path: Path) -> None:
    """Cut a last line that a killed process left without its newline, and say so.

    Cutting is safe in both files: a torn journal mark was never followed by its request (the
    mark is written whole before the request leaves), and a row whose result line is cut is
    still journaled, so resume records it ``unknown`` rather than sending it again.
    """
    with path.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        block = 1 << 16
        pos = size
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            pos = start
        fh.truncate(keep)
    logger.warning(
        "%s: removed a torn last line (%d bytes) left by an interrupted run", path, size - keep
    )


class _Job:
    """One block for the writer thread: journal lines, result lines, and who waits for them."""

    __slots__ = ("journal", "results", "waiters")

    def __init__(self) -> None:
        self.journal: list[bytes] = []
        self.results: list[bytes] = []
        self.waiters: list[asyncio.Future[None]] = []

    def __bool__(self) -> bool:
        return bool(self.journal or self.results or self.waiters)


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
        self._results = results
        self._journal = journal
        #: Empty both files right before the first write (an --overwrite whose input's header
        #: is only known once the run has started: until something is written, they are kept).
        self._truncate_first = truncate_first
        #: The writer thread has written to the journal (its first write holds the header).
        self._journal_written = False
        #: Result lines lingering on the loop for company.
        self._pending: list[bytes] = []
        #: What the thread writes next, growing while it is busy with the job before.
        self._next = _Job()
        #: The thread has a job (at most one at a time: that is what groups the writes).
        self._busy = False
        #: Jobs for the writer thread; None stops it.
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._wakeup = anyio.Event()
        self._hurry = anyio.Event()
        self._closing = False
        self._stopped = anyio.Event()
        self._written = anyio.Event()
        #: Result bytes recorded and not yet written (lingering, queued or being written).
        self._pending_bytes = 0
        self._error: BaseException | None = None

    def write(self, results: Sequence[RowResult]) -> None:
        """Queue result lines; they are written soon. See :meth:`room` for back-pressure."""
        self._check()
        lines = [encode_result(r) for r in results]
        self._pending.extend(lines)
        self._pending_bytes += sum(map(len, lines))
        self._wakeup.set()
        if self._pending_bytes > _MAX_PENDING_BYTES // 4:
            self._hurry.set()

    async def room(self) -> None:
        """Wait while too much is queued: a slow disk or pipe slows the run down instead of
        filling memory."""
        while self._pending_bytes > _MAX_PENDING_BYTES and self._error is None:
            await self._written.wait()

    async def inflight(self, rows: Sequence[int]) -> None:
        """Journal rows as in flight and return once the journal write reached the OS."""
        self._check()
        if self._journal is None:
            await self.room()
            return
        waiter = asyncio.get_running_loop().create_future()
        job = self._next
        job.journal.append(orjson.dumps({"inflight": list(rows)}) + b"\n")
        job.waiters.append(waiter)
        # Result lines waiting for their linger go along (written before the mark, see
        # _write_blocks): a crash then finds the outcomes of requests already answered, not
        # only their marks, so --resume reports as unknown only what was really in flight.
        if self._pending:
            job.results.extend(self._pending)
            self._pending = []
        self._submit()
        await waiter
        self._check()

    def release(self, rows: Sequence[int]) -> None:
        """Journal that rows marked in flight were certainly not sent (resume sends them)."""
        if self._journal is not None:
            self._next.journal.append(orjson.dumps({"released": list(rows)}) + b"\n")
            self._submit()

    def journal_header(self, record: dict[str, Any]) -> None:
        """Queue a descriptive journal line (run start or resume)."""
        if self._journal is not None:
            self._next.journal.append(orjson.dumps(record) + b"\n")
            self._submit()

    async def run(self) -> None:
        """Start the writer thread, then hand it result lines in blocks until closed.

        Cancellation does not stop it: results recorded while a cancelled run unwinds (requests
        in flight become ``unknown``) must still reach the file. Only :meth:`aclose` ends it,
        so whoever starts it must call that (in a ``finally``).
        """
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._write_jobs, args=(loop,), name="kaleyra-results-writer", daemon=True
        )
        self._thread.start()
        try:
            with anyio.CancelScope(shield=True):
                while not (self._closing and not self._pending):
                    await self._wakeup.wait()
                    self._wakeup = anyio.Event()
                    if not self._urgent():
                        # Let more lines join them (until something urgent comes), so that a
                        # paced run writes a block every few ms instead of one per answer.
                        with anyio.move_on_after(_RESULTS_LINGER_S):
                            await self._hurry.wait()
                    self._hurry = anyio.Event()
                    self._wakeup = anyio.Event()
                    await self._flush(loop)
                # A barrier: once it is written, so is everything queued before it.
                await self._flush(loop, barrier=True)
        finally:
            # What is queued and not yet handed over (a mark made while a failed write or the
            # barrier was with the thread: its hand-over is scheduled after this) goes before
            # the stop, or its waiter would never wake. A hand-over still scheduled then passes
            # an empty job, which the stopped thread never reads.
            if self._next:
                self._hand_over()
            self._jobs.put(None)
            self._stopped.set()

    def _urgent(self) -> bool:
        """Someone waits on this write (the close) or a lot is queued."""
        return self._closing or self._pending_bytes > _MAX_PENDING_BYTES // 4

    async def _flush(self, loop: asyncio.AbstractEventLoop, *, barrier: bool = False) -> None:
        """Hand the pending result lines to the thread and wait until they are written."""
        if self._pending or barrier:
            done = loop.create_future()
            self._next.results.extend(self._pending)
            self._next.waiters.append(done)
            self._pending = []
            self._submit()
            await done
        if self._error is not None:
            raise self._error  # a failed write (a journal mark's, too) ends the run

    async def aclose(self) -> None:
        """Write everything still pending and stop the writer."""
        self._closing = True
        self._wakeup.set()
        self._hurry.set()
        with anyio.CancelScope(shield=True):
            await self._stopped.wait()

    def _check(self) -> None:
        if self._error is not None:
            raise ConfigError(f"cannot write results: {self._error}") from self._error

    def _submit(self) -> None:
        """Have what is queued handed to the thread, unless it is still writing a job.

        This is the group commit. The hand-over waits for the end of the current loop turn
        (``call_soon``), and the next job waits for the thread to finish the one before
        (``_wrote``); whatever is queued meanwhile goes out as one job, in one ``write`` per
        file and one wake-up of the loop. Under load, with a mark from each of many answers
        that arrive together, that halves the thread round trips (and the context switches);
        a paced run, whose thread is idle when a mark comes, has its mark written one loop
        turn later, microseconds.
        """
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

    # -- the writer thread ------------------------------------------------------------------

    def _write_jobs(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread body: write each job, results then journal, and report back, until None."""
        error: BaseException | None = None
        while (job := self._jobs.get()) is not None:
            if error is None:
                try:
                    self._write_blocks(job.results, job.journal)
                except Exception as exc:  # reported on the loop; later jobs are not written
                    error = exc
            try:
                loop.call_soon_threadsafe(self._wrote, job, sum(map(len, job.results)), error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return

    def _write_blocks(self, results: list[bytes], journal: list[bytes]) -> None:
        # Result lines go first. A mark never trails its request whatever the order (the
        # request waits for the whole job), but a kill between the two writes is not alike:
        # results first loses only journal lines, that is marks of requests that never left
        # (resume sends them) and releases (their rows come back unknown: safe, if needless);
        # marks first would lose the outcomes of answered requests, whose rows resume then
        # reports unknown beside the ones truly in flight. A sender's last answer travels with
        # its next mark, so this keeps "unknown after kill -9" to one batch per sender.
        # Except the journal's first write: its header line is what makes a results file ours
        # (resume refuses one without it), so no result line may reach the disk before it.
        if self._truncate_first and (results or journal):
            self._truncate_first = False
            # The journal first: a kill between the two leaves old results beside an empty
            # journal, which resume refuses, rather than old marks beside no results.
            for fh in (self._journal, self._results):
                if fh is not None and _truncatable(fh):
                    fh.truncate(0)
        header_first = bool(journal) and not self._journal_written
        if header_first:
            self._write_journal(journal)
        if results and self._results is not None:
            self._results.write(b"".join(results))
            self._results.flush()
        if journal and not header_first:
            self._write_journal(journal)

    def _write_journal(self, journal: list[bytes]) -> None:
        if self._journal is not None:
            self._journal.write(b"".join(journal))
            self._journal.flush()
            self._journal_written = True


def _truncatable(fh: IO[bytes]) -> bool:
    """A regular file (or an in-memory one): a FIFO or a device refuses ftruncate (EINVAL),
    where opening it with O_TRUNC had quietly done nothing."""
    try:
        return stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return True


def journal_start_record(
    input_description: dict[str, Any],
    *,
    resumed: bool,
    dry_run: bool = False,
    plan: dict[str, Any] | None = None,
) -> dict[str, Any]:
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
