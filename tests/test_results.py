"""The results writer: line format, what reaches the disk when, and in which order."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import orjson
import pytest

from kaleyra_async._exceptions import ConfigError
from kaleyra_async._models import RowResult
from kaleyra_async._results import ResultsWriter, encode_result, journal_path_for
from kaleyra_async._resume import load_progress

#: The first line of every journal send_bulk writes.
HEADER = b'{"journal":1,"input":{}}\n'

KEYS = [
    "row",
    "to",
    "status",
    "message_id",
    "request_id",
    "error_code",
    "error",
    "attempts",
    "segments",
    "encoding",
    "ref",
]


def mark(*rows: int) -> bytes:
    return orjson.dumps({"inflight": list(rows)}) + b"\n"


def sent(row: int) -> RowResult:
    return RowResult(row=row, to="+919876543210", status="sent")


class Disk:
    """The results file and the journal (append-only), noting what both hold after each write
    or truncation: the states a kill -9 between two writes can leave. With ``slow``, writes
    wait for ``gate``."""

    def __init__(self, *, results: bytes = b"", journal: bytes = b"", slow: bool = False) -> None:
        self.states: list[tuple[bytes, bytes]] = []
        self.gate = threading.Event()
        if not slow:
            self.gate.set()
        #: A write has started (and, when slow, waits for the gate).
        self.entered = threading.Event()
        self.results = DiskFile(self, results)
        self.journal = DiskFile(self, journal)

    def note(self) -> None:
        self.states.append((self.results.getvalue(), self.journal.getvalue()))

    def journal_states(self) -> list[bytes]:
        return [journal for _, journal in self.states]


class DiskFile(io.BytesIO):
    """One file of a :class:`Disk`, opened for appending."""

    def __init__(self, disk: Disk, content: bytes) -> None:
        super().__init__(content)
        self.disk = disk

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.disk.entered.set()
        self.disk.gate.wait(10)
        self.seek(0, io.SEEK_END)
        written = super().write(data)
        self.disk.note()
        return written

    def truncate(self, size: int | None = None) -> int:
        kept = super().truncate(size)
        self.disk.note()
        return kept


async def test_writer_writes_one_line_per_result_in_schema_order() -> None:
    """Each result is one JSON line with every documented key."""
    out, journal = io.BytesIO(), io.BytesIO()
    writer = ResultsWriter(out, journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await writer.inflight([1, 2])
        writer.write(
            [
                RowResult(row=1, to="+919876543210", status="sent", message_id="a:1", attempts=1),
                RowResult(
                    row=2, to="x", status="invalid", error_code="invalid_to", error="to: bad"
                ),
            ]
        )
        await writer.aclose()
    lines = out.getvalue().splitlines()
    assert [list(orjson.loads(line)) for line in lines] == [KEYS, KEYS]
    assert orjson.loads(lines[0])["message_id"] == "a:1"
    assert orjson.loads(journal.getvalue()) == {"inflight": [1, 2]}


async def test_inflight_is_written_before_it_returns() -> None:
    """The journal line is in the file when inflight() returns: the request may go out then."""
    journal = io.BytesIO()
    writer = ResultsWriter(io.BytesIO(), journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await writer.inflight([7])
        assert journal.getvalue() == mark(7)
        await writer.aclose()


async def test_results_recorded_while_a_cancelled_run_unwinds_are_written() -> None:
    """Cancellation doesn't stop the writer: lines queued during the unwinding still land."""
    out = io.BytesIO()
    writer = ResultsWriter(out, None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        try:
            writer.write([RowResult(row=n, to="+1", status="sent") for n in range(1, 4)])
            tg.cancel_scope.cancel()
            await anyio.sleep(1)  # cancelled at once
        finally:
            # What a sender's cancellation handler does: record its rows as unknown...
            writer.write([RowResult(row=4, to="+1", status="unknown")])
            # ...and what the owner does last.
            await writer.aclose()
    assert [orjson.loads(line)["row"] for line in out.getvalue().splitlines()] == [1, 2, 3, 4]


async def test_room_waits_while_too_much_is_queued() -> None:
    """A writer that can't keep up makes room() wait instead of letting memory grow."""
    out = io.BytesIO()
    writer = ResultsWriter(out, None)
    big = [RowResult(row=n, to="+1", status="sent", error="x" * 1000) for n in range(6000)]
    writer.write(big)  # about 6 MB, over the limit, and the writer task isn't running yet
    with anyio.move_on_after(0.05) as waited:
        await writer.room()
    assert waited.cancelled_caught
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        with anyio.fail_after(10):
            await writer.room()  # returns once the block is written
        await writer.aclose()
    assert len(out.getvalue().splitlines()) == 6000


async def test_inflight_waits_for_a_slow_write_without_blocking_the_loop() -> None:
    """The mark is written by the writer thread: inflight() waits for it, the loop runs on."""
    disk = Disk(slow=True)
    writer = ResultsWriter(disk.results, disk.journal)
    returned = anyio.Event()

    async def mark_one() -> None:
        await writer.inflight([1])
        returned.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        tg.start_soon(mark_one)
        await anyio.to_thread.run_sync(disk.entered.wait, 10)
        for _ in range(20):  # the loop keeps turning while the write is stuck
            await anyio.lowlevel.checkpoint()
        assert not returned.is_set() and disk.states == []
        disk.gate.set()
        with anyio.fail_after(10):
            await returned.wait()
        assert disk.journal.getvalue() == mark(1)
        await writer.aclose()


async def test_marks_queued_during_a_write_reach_the_disk_together_in_order() -> None:
    """Group commit: what queues up while the thread writes lands in one write, in order."""
    disk = Disk(slow=True)
    writer = ResultsWriter(disk.results, disk.journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        tg.start_soon(writer.inflight, [1])
        await anyio.to_thread.run_sync(disk.entered.wait, 10)
        for rows in ([2], [3, 4], [5]):
            tg.start_soon(writer.inflight, rows)
            await anyio.lowlevel.checkpoint()
        writer.release([3, 4])
        await anyio.lowlevel.checkpoint()
        disk.gate.set()
        await writer.aclose()
    released = b'{"released":[3,4]}\n'
    assert disk.journal_states() == [mark(1), mark(1) + mark(2) + mark(3, 4) + mark(5) + released]


async def test_marks_made_in_one_loop_turn_reach_the_disk_together() -> None:
    """Group commit with an idle thread: marks made in the same loop turn land in one write."""
    disk = Disk()  # a fast disk: the thread is idle when the marks come
    writer = ResultsWriter(disk.results, disk.journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await writer.inflight([1])  # the thread has started and is idle again

        async def sender(row: int) -> None:
            # Stands for the socket calls a sender makes in the same turn: they release the
            # GIL, which is when an idle thread would take a mark handed over at once.
            time.sleep(0.002)  # noqa: ASYNC251 (on purpose: a GIL-releasing call)
            await writer.inflight([row])

        async with anyio.create_task_group() as senders:
            for row in range(2, 10):
                senders.start_soon(sender, row)
        await writer.aclose()
    states = [sorted(journal.splitlines()) for journal in disk.journal_states()]
    assert states == [[mark(1).strip()], sorted(mark(row).strip() for row in range(1, 10))]


async def test_a_cancelled_mark_is_still_written_before_its_release(tmp_path: Path) -> None:
    """A sender cancelled while its mark is being written releases it: the file stays consistent."""
    disk = Disk(slow=True)
    writer = ResultsWriter(disk.results, disk.journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        with anyio.CancelScope() as scope:

            async def cancel_while_writing() -> None:
                await anyio.to_thread.run_sync(disk.entered.wait, 10)
                scope.cancel()

            tg.start_soon(cancel_while_writing)
            await writer.inflight([7])
        assert scope.cancelled_caught
        writer.release([7])  # what Flight.release does for a mark that never went out
        disk.gate.set()
        await writer.aclose()
    results = tmp_path / "r.ndjson"
    results.write_bytes(b"")
    journal_path_for(results).write_bytes(HEADER + disk.journal.getvalue())
    assert disk.journal.getvalue() == mark(7) + b'{"released":[7]}\n'
    assert load_progress(results).unresolved == set()


async def test_a_failed_journal_write_stops_the_run_with_the_error() -> None:
    """A disk error is not swallowed: the waiting sender gets a ConfigError, run() the OSError."""

    class FullDisk(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            raise OSError(28, "No space left on device")

    writer = ResultsWriter(io.BytesIO(), FullDisk())
    sender_saw: list[BaseException] = []

    async def run_and_mark() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            try:
                await writer.inflight([1])
            except ConfigError as exc:
                sender_saw.append(exc)
            finally:
                await writer.aclose()

    with pytest.raises(ExceptionGroup) as caught:
        await run_and_mark()
    assert caught.group_contains(OSError, match="No space left")
    assert [type(e) for e in sender_saw] == [ConfigError]
    assert "No space left" in str(sender_saw[0])


async def test_the_writer_thread_ends_with_aclose() -> None:
    """aclose() leaves no writer thread behind."""
    writer = ResultsWriter(io.BytesIO(), io.BytesIO())
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await writer.inflight([1])
        thread = next(t for t in threading.enumerate() if t.name == "kaleyra-results-writer")
        await writer.aclose()
    await anyio.to_thread.run_sync(thread.join, 10)
    assert not thread.is_alive()


async def test_a_mark_takes_the_waiting_result_lines_with_it() -> None:
    """Outcomes already known reach the disk with the next mark, not a linger later."""
    # After a kill -9 a row with a mark and no result is reported unknown: the fewer answered
    # rows wait in memory, the fewer are reported unknown although they were sent.
    out, journal = io.BytesIO(), io.BytesIO()
    writer = ResultsWriter(out, journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        try:
            writer.write([sent(1)])
            await writer.inflight([2])
            written_with_mark = out.getvalue()
        finally:
            await writer.aclose()
    assert written_with_mark == encode_result(sent(1))


async def test_after_any_write_an_answered_row_has_its_result_before_the_next_mark() -> None:
    """Results go before marks: no crash point holds the next mark without the last answer."""
    # Marks first would leave the answered row 1 journaled without its result after a kill
    # between the two writes, and resume would report it unknown.
    disk = Disk()
    writer = ResultsWriter(disk.results, disk.journal)
    writer.journal_header({"journal": 1, "input": {}})
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        try:
            await writer.inflight([1])
            before = len(disk.states)
            writer.write([sent(1)])
            await writer.inflight([2])
        finally:
            await writer.aclose()
    row_1 = encode_result(sent(1))
    assert disk.states[before:] == [
        (row_1, HEADER + mark(1)),
        (row_1, HEADER + mark(1) + mark(2)),
    ]


async def test_no_crash_point_holds_a_result_line_before_the_journal_header() -> None:
    """The header makes the files ours (resume refuses results without it): it lands first."""
    disk = Disk()
    writer = ResultsWriter(disk.results, disk.journal)
    writer.journal_header({"journal": 1, "input": {}})
    writer.write([RowResult(row=1, to="", status="invalid", error="line 2: bad")])
    writer.write([sent(2)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        try:
            await writer.inflight([3])
        finally:
            await writer.aclose()
    assert disk.states, "nothing was written"
    assert all(journal.startswith(HEADER) for results, journal in disk.states if results)
    assert disk.states[-1][0].count(b"\n") == 2


OLD_RESULTS = b'{"row":1,"status":"sent"}\n'
OLD_JOURNAL = HEADER + mark(1)


async def test_truncate_first_empties_the_journal_then_the_results_at_the_first_write() -> None:
    """--overwrite from stdin: a kill mid-emptying leaves old results beside an empty journal."""
    # Resume refuses results without a journal header; old marks beside emptied results would
    # instead be read as rows of unknown fate.
    disk = Disk(results=OLD_RESULTS, journal=OLD_JOURNAL)
    writer = ResultsWriter(disk.results, disk.journal, truncate_first=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        try:
            writer.journal_header({"journal": 1, "input": {}})
            await writer.inflight([5])
        finally:
            await writer.aclose()
    assert disk.states[:2] == [(OLD_RESULTS, b""), (b"", b"")]
    assert disk.states[-1] == (b"", HEADER + mark(5))


async def test_truncate_first_keeps_the_old_files_when_nothing_is_written() -> None:
    """A run that stops before its first write (a refused header) leaves the old files whole."""
    disk = Disk(results=OLD_RESULTS, journal=OLD_JOURNAL)
    writer = ResultsWriter(disk.results, disk.journal, truncate_first=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await writer.aclose()
    assert (disk.states, disk.results.getvalue(), disk.journal.getvalue()) == (
        [],
        OLD_RESULTS,
        OLD_JOURNAL,
    )


async def test_a_mark_made_while_a_failing_write_is_in_the_thread_gets_the_error() -> None:
    """A mark queued while the thread's write fails gets a ConfigError, not an endless wait."""

    class FailingSlowFile(DiskFile):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            super().write(data)
            raise OSError(28, "No space left on device")

    disk = Disk(slow=True)
    writer = ResultsWriter(FailingSlowFile(disk, b""), io.BytesIO())
    run_saw: list[BaseException] = []

    async def run_writer() -> None:
        try:
            await writer.run()
        except OSError as exc:  # kept here, so it does not cancel the waiting sender
            run_saw.append(exc)

    async def fail_the_write() -> None:
        await anyio.lowlevel.checkpoint()  # once the mark below is queued
        disk.gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_writer)
        writer.write([sent(1)])
        await anyio.to_thread.run_sync(disk.entered.wait, 10)  # the result block is in the thread
        tg.start_soon(fail_the_write)
        with anyio.fail_after(10), pytest.raises(ConfigError, match="No space left"):
            await writer.inflight([2])
        await writer.aclose()
    assert [type(e) for e in run_saw] == [OSError]


async def test_a_mark_made_while_the_closing_barrier_is_written_is_written() -> None:
    """aclose() under way does not strand a mark queued while its last job is with the thread."""

    class TwoGates(io.BytesIO):
        def __init__(self) -> None:
            super().__init__()
            self.gates = [threading.Event(), threading.Event()]
            self.entered = [threading.Event(), threading.Event()]
            self.writes = 0

        def write(self, data: bytes) -> int:  # type: ignore[override]
            n, self.writes = self.writes, self.writes + 1
            if n < 2:
                self.entered[n].set()
                self.gates[n].wait(10)
            return super().write(data)

    journal = TwoGates()
    writer = ResultsWriter(io.BytesIO(), journal)

    async def open_gate(n: int) -> None:
        await anyio.lowlevel.checkpoint()
        journal.gates[n].set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.release([8])
        await anyio.to_thread.run_sync(journal.entered[0].wait, 10)  # first write in the thread
        tg.start_soon(writer.aclose)
        for _ in range(5):  # run() sees the close and queues its barrier
            await anyio.lowlevel.checkpoint()
        writer.release([9])  # goes out with the barrier
        tg.start_soon(open_gate, 0)
        await anyio.to_thread.run_sync(journal.entered[1].wait, 10)  # the barrier's job
        tg.start_soon(open_gate, 1)
        with anyio.fail_after(10):
            await writer.inflight([10])
    assert journal.getvalue().splitlines()[-1] == b'{"inflight":[10]}'
