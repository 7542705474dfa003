"""The pipeline with a fake sender when it stops: Ctrl-C, the drain timeout, an outer cancel, a
stop while a batch waits for its turn or its journal mark; what each leaves in the results."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import orjson

from kaleyra_async._config import DispatchConfig
from kaleyra_async._dispatch import dispatch
from kaleyra_async._exceptions import (
    RateLimitError,
    RejectedError,
    ResponseLostError,
)
from kaleyra_async._flight import Flight
from kaleyra_async._models import Message, SendResult
from kaleyra_async._phone import PhoneNormalizer
from kaleyra_async._prepare import RowPreparer
from kaleyra_async._results import ResultsWriter
from kaleyra_async._sources import CsvSource
from kaleyra_async._summary import BulkSummary
from tests.conftest import numbers
from tests.test_dispatch import JOURNAL_HEADER, NOW, PLAN, FakeSend, csv_file, run


async def test_stop_finishes_inflight_and_leaves_unsent_rows_without_a_line(
    tmp_path: Path,
) -> None:
    """After stop: the request in flight completes and is recorded; nothing new is sent."""
    fake = FakeSend()
    fake.gate = anyio.Event()
    stop = anyio.Event()
    summary = BulkSummary()
    settings = DispatchConfig(batch_size=10, concurrency=1, max_wait_ms=0)

    async def stop_when_first_request_is_out() -> None:
        await fake.started.wait()
        stop.set()
        await anyio.lowlevel.checkpoint()
        assert fake.gate is not None
        fake.gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_when_first_request_is_out)
        results = await run(
            csv_file(tmp_path, numbers(1000)), fake, config=settings, stop=stop, summary=summary
        )
    assert summary.interrupted
    assert len(fake.requests) == 1
    assert [r["status"] for r in results] == ["sent"] * 10


async def test_drain_timeout_records_inflight_rows_as_unknown(tmp_path: Path) -> None:
    """A request still in flight when the drain time is up is recorded 'unknown'."""
    fake = FakeSend()
    fake.gate = anyio.Event()  # never set: the request hangs
    stop = anyio.Event()
    settings = DispatchConfig(batch_size=5, concurrency=1, max_wait_ms=0, drain_timeout_s=0)

    async def stop_when_out() -> None:
        await fake.started.wait()
        stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_when_out)
        results = await run(csv_file(tmp_path, numbers(50)), fake, config=settings, stop=stop)
    assert [r["status"] for r in results] == ["unknown"] * 5
    assert {r["error_code"] for r in results} == {"interrupted"}


async def test_stop_while_waiting_for_the_limiter_sends_and_journals_nothing(
    tmp_path: Path,
) -> None:
    """Requests not yet admitted when the run stops get no line and no journal entry."""
    fake = FakeSend()
    fake.limiter = anyio.Event()  # never admits
    stop = anyio.Event()
    journal = io.BytesIO()
    settings = DispatchConfig(batch_size=5, concurrency=3, max_wait_ms=0, drain_timeout_s=60)

    async def stop_when_all_wait() -> None:
        while fake.waiting < 3:
            await anyio.lowlevel.checkpoint()
        stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_when_all_wait)
        results = await run(
            csv_file(tmp_path, numbers(100)), fake, config=settings, stop=stop, journal=journal
        )
    assert results == []  # promptly, without waiting out the 60 s drain
    assert fake.requests == []
    assert journal.getvalue() == b""


async def test_a_refused_attempt_then_stop_releases_the_rows(tmp_path: Path) -> None:
    """Journaled, then refused as a whole (429) and stopped in backoff: released, not unknown."""
    from kaleyra_async._resume import load_progress

    refused = RateLimitError("slow down", status_code=429, retry_after_s=30)
    stop = anyio.Event()

    class RefusedThenBackoff(FakeSend):
        async def send(
            self, message: Message, recipients: Sequence[str], *, attempts: Flight
        ) -> SendResult:
            await attempts.sending()
            attempts.writing(1)
            attempts.failed(refused)
            stop.set()
            await anyio.sleep(30)  # the backoff the stop cuts short
            raise AssertionError("not reached")

    out = tmp_path / "out.ndjson"
    journal = io.BytesIO()
    settings = DispatchConfig(batch_size=5, concurrency=1, max_wait_ms=0, drain_timeout_s=60)
    with anyio.fail_after(10):
        results = await run(
            csv_file(tmp_path, numbers(5)), RefusedThenBackoff(), config=settings, stop=stop,
            journal=journal,
        )  # fmt: skip
    assert results == []
    out.write_bytes(b"")
    (tmp_path / "out.ndjson.journal").write_bytes(JOURNAL_HEADER + journal.getvalue())
    assert load_progress(out).unresolved == set()  # --resume sends them


async def test_outer_cancellation_records_inflight_rows_as_unknown(tmp_path: Path) -> None:
    """Cancelled from outside mid-request: the rows still get their 'unknown' lines."""
    fake = FakeSend()
    fake.gate = anyio.Event()  # the request hangs on the wire
    out = io.BytesIO()
    writer = ResultsWriter(out, io.BytesIO())
    preparer = RowPreparer(PLAN, normalize=PhoneNormalizer("+91"), now=NOW)
    settings = DispatchConfig(batch_size=5, concurrency=1, max_wait_ms=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)

        async def cancel_when_out() -> None:
            await fake.started.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(cancel_when_out)
        try:
            await dispatch(
                CsvSource(csv_file(tmp_path, numbers(5))), preparer, fake.send,
                writer=writer, config=settings,
            )  # fmt: skip
        finally:
            await writer.aclose()
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["status"], r["error_code"]) for r in lines] == [("unknown", "interrupted")] * 5


async def test_stop_during_the_journal_write_releases_the_rows(tmp_path: Path) -> None:
    """Cancelled while its in-flight mark is being written: the mark is followed by a release."""
    import threading

    from kaleyra_async._resume import load_progress

    class SlowJournal(io.BytesIO):
        def __init__(self) -> None:
            super().__init__()
            self.writing = threading.Event()

        def write(self, data: bytes) -> int:  # type: ignore[override]
            self.writing.set()
            time.sleep(0.3)
            return super().write(data)

    journal = SlowJournal()
    stop = anyio.Event()
    fake = FakeSend()
    settings = DispatchConfig(batch_size=5, concurrency=2, max_wait_ms=0, drain_timeout_s=60)

    async def stop_while_journaling() -> None:
        await anyio.to_thread.run_sync(journal.writing.wait)
        stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_while_journaling)
        with anyio.fail_after(20):
            results = await run(
                csv_file(tmp_path, numbers(10)), fake, config=settings, stop=stop,
                journal=journal,
            )  # fmt: skip
    assert results == []
    assert fake.requests == []
    out = tmp_path / "out.ndjson"
    out.write_bytes(b"")
    (tmp_path / "out.ndjson.journal").write_bytes(JOURNAL_HEADER + journal.getvalue())
    assert load_progress(out).unresolved == set()


async def test_stop_while_held_by_the_last_window_check_releases_the_rows(
    tmp_path: Path,
) -> None:
    """Journaled, then held before the write (window check, 429 pause): released on stop."""
    from kaleyra_async._resume import load_progress

    fake = FakeSend()
    fake.admit = anyio.Event()  # never lets the write happen
    stop = anyio.Event()
    journal = io.BytesIO()
    settings = DispatchConfig(batch_size=1, concurrency=3, max_wait_ms=0, drain_timeout_s=60)

    async def stop_when_held() -> None:
        while journal.getvalue().count(b"inflight") < 3:  # noqa: ASYNC110 (a plain buffer)
            await anyio.sleep(0.01)
        stop.set()

    summary = BulkSummary()
    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_when_held)
        with anyio.fail_after(20):  # promptly: the 60 s drain is not waited out
            results = await run(
                csv_file(tmp_path, numbers(10)), fake, config=settings, stop=stop,
                journal=journal, summary=summary,
            )  # fmt: skip
    assert results == []
    assert (summary.requests, summary.requests_ok) == (0, 0)  # none of them left
    out = tmp_path / "out.ndjson"
    out.write_bytes(b"")
    (tmp_path / "out.ndjson.journal").write_bytes(JOURNAL_HEADER + journal.getvalue())
    assert load_progress(out).unresolved == set()


async def test_a_maybe_sent_attempt_outweighs_a_later_refusal(tmp_path: Path) -> None:
    """retry_ambiguous: timed out, then refused: the SMS may be out, so 'unknown', not 'failed'."""

    class LostThenRefused(FakeSend):
        async def send(
            self, message: Message, recipients: Sequence[str], *, attempts: Flight
        ) -> SendResult:
            await attempts.sending()
            attempts.writing(1)
            attempts.failed(ResponseLostError("read timeout"))
            await attempts.sending()
            attempts.writing(2)
            refused = RejectedError("bad", status_code=400, kaleyra_code="E401")
            refused.attempts = 2
            attempts.failed(refused)
            raise refused

    results = await run(csv_file(tmp_path, numbers(3)), LostThenRefused())
    assert {(r["status"], r["attempts"]) for r in results} == {("unknown", 2)}
