"""Results file and journal: line format, torn tails, resume state."""

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
from kaleyra_async._results import ResultsWriter, journal_path_for
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
]


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
        assert journal.getvalue() == b'{"inflight":[7]}\n'
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


async def test_released_rows_are_not_unresolved(tmp_path: Path) -> None:
    """Rows journaled in flight and then released (never sent) are sent again on resume."""
    results = tmp_path / "r.ndjson"
    results.write_bytes(b"")
    journal_path_for(results).write_bytes(
        b'{"journal":1,"input":{}}\n{"inflight":[1,2]}\n{"inflight":[3]}\n{"released":[3]}\n'
    )
    assert load_progress(results).unresolved == {1, 2}


def test_a_release_does_not_settle_an_earlier_runs_mark(tmp_path: Path) -> None:
    """Row 1 was in flight when run 1 died (fate unknown). Run 2 (retry_ambiguous) resent it and
    was refused as a whole (released). The refusal says nothing of run 1's request: row 1 stays
    unresolved, or a third run would send it without a word. Row 2, marked and released within
    run 2 alone, is free to send."""
    results = tmp_path / "r.ndjson"
    results.write_bytes(b"")
    journal_path_for(results).write_bytes(
        b'{"journal":1,"input":{}}\n{"inflight":[1]}\n'
        b'{"resumed":"2026-12-04T05:00:00+00:00","input":{}}\n'
        b'{"inflight":[1,2]}\n{"released":[1,2]}\n'
    )
    assert load_progress(results).unresolved == {1}


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


def test_load_progress_repairs_torn_lines_and_finds_unresolved(tmp_path: Path) -> None:
    """A half-written last line is cut; journaled rows without a result are unresolved."""
    results = tmp_path / "r.ndjson"
    results.write_bytes(b'{"row":1,"status":"sent"}\n{"row":3,"status":"failed"}\n{"row":2,"sta')
    journal_path_for(results).write_bytes(
        b'{"journal":1,"input":{"path":"/x.csv","size":9}}\n'
        b'{"inflight":[1,2]}\n{"inflight":[3]}\n{"inflight":[4'
    )
    progress = load_progress(results)
    assert results.read_bytes().endswith(b'"failed"}\n')
    assert progress.is_done(1) and progress.is_done(3)
    assert not progress.is_done(2) and not progress.is_done(4)
    assert progress.unresolved == {2}
    assert progress.input == {"path": "/x.csv", "size": 9}


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not json\n", id="not-json"),
        pytest.param(b"[1,2]\n", id="not-object"),
        pytest.param(b'{"row":1}\n{"row":1}\n', id="row-twice"),
        pytest.param(b'{"status":"sent"}\n', id="no-row"),
    ],
)
def test_load_progress_refuses_foreign_files(tmp_path: Path, content: bytes) -> None:
    """Resuming from a file that isn't ours (or is corrupt) is refused with the line named."""
    results = tmp_path / "r.ndjson"
    results.write_bytes(content)
    journal_path_for(results).write_bytes(HEADER)
    with pytest.raises(ConfigError, match=r"r\.ndjson:\d"):
        load_progress(results)


@pytest.mark.parametrize(
    ("results", "journal", "named"),
    [
        pytest.param(b"my notes\nmy important last line", None, "notes.txt", id="no-journal"),
        pytest.param(
            b"my notes\nmy important last line", HEADER, r"notes\.txt:1", id="not-results"
        ),
        pytest.param(
            b'{"row":1,"status":"sent"}\n{"row":2,"sta',
            b"a log of mine\nwithout its last newline",
            r"notes\.txt\.journal:1",
            id="foreign-journal",
        ),
        pytest.param(b"", b"[1,2]\n[3", r"\.journal:1", id="journal-not-an-object"),
    ],
)
def test_resume_leaves_files_that_are_not_ours_byte_for_byte(
    tmp_path: Path, results: bytes, journal: bytes | None, named: str
) -> None:
    """A torn-looking last line is only cut once both files are known to be ours."""
    path = tmp_path / "notes.txt"
    path.write_bytes(results)
    if journal is not None:
        journal_path_for(path).write_bytes(journal)
    with pytest.raises(ConfigError, match=named):
        load_progress(path)
    assert path.read_bytes() == results
    if journal is not None:
        assert journal_path_for(path).read_bytes() == journal


class LoggedFile(io.BytesIO):
    """A file that notes its name in a shared list at each write: the order of the writes."""

    def __init__(self, name: str, order: list[str]) -> None:
        super().__init__()
        self.name = name
        self.order = order

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.order.append(self.name)
        return super().write(data)


class GatedFile(io.BytesIO):
    """A file whose writes block until ``gate`` is set (a slow disk), counting the writes."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.writes = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.entered.set()
        self.gate.wait(10)
        self.writes += 1
        return super().write(data)


async def test_inflight_waits_for_a_slow_write_without_blocking_the_loop() -> None:
    """The mark is written by the writer thread: inflight() waits for it, the loop runs on."""
    journal = GatedFile()
    writer = ResultsWriter(io.BytesIO(), journal)
    returned = anyio.Event()

    async def mark() -> None:
        await writer.inflight([1])
        returned.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        tg.start_soon(mark)
        await anyio.to_thread.run_sync(journal.entered.wait, 10)
        for _ in range(20):  # the loop keeps turning while the write is stuck
            await anyio.lowlevel.checkpoint()
        assert not returned.is_set() and journal.getvalue() == b""
        journal.gate.set()
        with anyio.fail_after(10):
            await returned.wait()
        assert journal.getvalue() == b'{"inflight":[1]}\n'
        await writer.aclose()


async def test_marks_queued_during_a_write_go_out_together_in_order() -> None:
    """Group commit: whatever queued up while the thread was writing is one write, in order."""
    journal = GatedFile()
    writer = ResultsWriter(io.BytesIO(), journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        tg.start_soon(writer.inflight, [1])
        await anyio.to_thread.run_sync(journal.entered.wait, 10)
        for rows in ([2], [3, 4], [5]):
            tg.start_soon(writer.inflight, rows)
            await anyio.lowlevel.checkpoint()
        writer.release([3, 4])
        await anyio.lowlevel.checkpoint()
        journal.gate.set()
        await writer.aclose()
    lines = [orjson.loads(line) for line in journal.getvalue().splitlines()]
    assert lines == [
        {"inflight": [1]},
        {"inflight": [2]},
        {"inflight": [3, 4]},
        {"inflight": [5]},
        {"released": [3, 4]},
    ]
    assert journal.writes == 2


async def test_marks_made_in_one_loop_turn_share_one_write_with_an_idle_thread() -> None:
    """Group commit without a slow disk: answers that arrive together (each sender marking
    its next request in the same loop turn) cost one write and one thread round trip."""
    journal = GatedFile()
    journal.gate.set()  # a fast disk: the thread is idle when the marks come
    writer = ResultsWriter(io.BytesIO(), journal)
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
    marks = [orjson.loads(line)["inflight"] for line in journal.getvalue().splitlines()]
    assert sorted(marks) == [[row] for row in range(1, 10)]
    assert journal.writes == 2


async def test_a_cancelled_mark_is_still_written_before_its_release(tmp_path: Path) -> None:
    """A sender cancelled while its mark is being written releases it: the file stays consistent."""
    journal = GatedFile()
    writer = ResultsWriter(io.BytesIO(), journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        with anyio.CancelScope() as scope:

            async def cancel_while_writing() -> None:
                await anyio.to_thread.run_sync(journal.entered.wait, 10)
                scope.cancel()

            tg.start_soon(cancel_while_writing)
            await writer.inflight([7])
        assert scope.cancelled_caught
        writer.release([7])  # what _Flight.abandon does for a mark that never went out
        journal.gate.set()
        await writer.aclose()
    results = tmp_path / "r.ndjson"
    results.write_bytes(b"")
    journal_path_for(results).write_bytes(HEADER + journal.getvalue())
    assert journal.getvalue() == b'{"inflight":[7]}\n{"released":[7]}\n'
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
    """Outcomes already known reach the file with the next mark, not a linger later.

    After a kill -9, a row with a mark and no result is reported unknown: the fewer answered
    rows wait in memory, the fewer are reported unknown although they were sent.
    """
    out, journal = io.BytesIO(), io.BytesIO()
    writer = ResultsWriter(out, journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        try:
            writer.write([RowResult(row=1, to="+919876543210", status="sent")])
            await writer.inflight([2])
            written_with_mark = out.getvalue()
        finally:
            await writer.aclose()
    assert [orjson.loads(line)["row"] for line in written_with_mark.splitlines()] == [1]


async def test_in_one_write_the_answers_go_before_the_next_marks() -> None:
    """A kill between the two writes of one job must cost nothing that was answered.

    The job holds the outcome of a sender's last request and the mark of its next one. Results
    first: a kill in between loses a mark whose request never left (resume sends it). Marks
    first would leave the answered row journaled without its result, reported unknown.
    """
    order: list[str] = []

    writer = ResultsWriter(LoggedFile("results", order), LoggedFile("journal", order))
    writer.journal_header({"journal": 1, "input": {}})
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        try:
            await writer.inflight([1])  # the header and the first mark
            order.clear()
            writer.write([RowResult(row=1, to="+919876543210", status="sent")])
            await writer.inflight([2])
        finally:
            await writer.aclose()
    assert order == ["results", "journal"]


async def test_the_journal_header_is_written_before_any_result_line() -> None:
    """The header line makes the files ours (resume refuses a results file without it): when
    it shares a write with result lines, it still reaches the disk first."""
    order: list[str] = []

    writer = ResultsWriter(LoggedFile("results", order), LoggedFile("journal", order))
    writer.journal_header({"journal": 1, "input": {}})
    writer.write([RowResult(row=1, to="", status="invalid", error="line 2: bad")])
    writer.write([RowResult(row=2, to="+919876543210", status="sent")])
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        try:
            await writer.inflight([3])
        finally:
            await writer.aclose()
    assert order == ["journal", "results"]


async def test_a_mark_made_while_a_failing_write_is_in_the_thread_gets_the_error() -> None:
    """A sender whose mark was queued while the writer thread was on a write that then failed
    is told (ConfigError), not left waiting forever, even when nothing cancels it."""

    class FailingGatedFile(GatedFile):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            super().write(data)
            raise OSError(28, "No space left on device")

    out = FailingGatedFile()
    writer = ResultsWriter(out, io.BytesIO())
    run_saw: list[BaseException] = []

    async def run_writer() -> None:
        try:
            await writer.run()
        except OSError as exc:  # kept here, so it does not cancel the waiting sender
            run_saw.append(exc)

    async def fail_the_write() -> None:
        await anyio.lowlevel.checkpoint()  # once the mark below is queued
        out.gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_writer)
        writer.write([RowResult(row=1, to="+919876543210", status="sent")])
        await anyio.to_thread.run_sync(out.entered.wait, 10)  # the result block is in the thread
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
