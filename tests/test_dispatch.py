"""The pipeline with a fake sender: one result per row, batching, OTP, failures, resume (stops:
test_dispatch_stop.py)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import orjson
import pytest

from kaleyra_async._batching import Batch, PreparedRow
from kaleyra_async._config import DispatchConfig, MessageDefaults
from kaleyra_async._dispatch import dispatch
from kaleyra_async._exceptions import (
    KaleyraError,
    RateLimitError,
    RejectedError,
    ResponseLostError,
    ServerError,
)
from kaleyra_async._flight import Flight
from kaleyra_async._lanes import LaneQueue
from kaleyra_async._models import Message, Receipt, RowResult, SendResult
from kaleyra_async._phone import PhoneNormalizer
from kaleyra_async._prepare import RowPlan, RowPreparer
from kaleyra_async._results import ResultsWriter
from kaleyra_async._resume import Progress
from kaleyra_async._sources import CsvSource
from kaleyra_async._summary import BulkSummary
from tests.conftest import bulk, numbers, write_csv

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TEMPLATE_ID = "1107161234567890123"
PLAN = RowPlan(
    pod="IN",
    defaults=MessageDefaults(
        body="Your order has shipped", sender="KLRHXA", type="TXN", template_id=TEMPLATE_ID
    ),
)
#: The line send_bulk starts a journal with (dispatch itself does not write it).
JOURNAL_HEADER = b'{"journal":1,"input":{}}\n'


class FakeSend:
    """Records every request; answers like Kaleyra, or raises what it is told to."""

    def __init__(self, fail: dict[int, KaleyraError] | None = None) -> None:
        self.requests: list[tuple[Message, list[str]]] = []
        self.fail = fail or {}
        self.gate: anyio.Event | None = None
        self.limiter: anyio.Event | None = None
        self.admit: anyio.Event | None = None
        self.waiting = 0
        self.started = anyio.Event()

    async def send(
        self, message: Message, recipients: Sequence[str], *, attempts: Flight
    ) -> SendResult:
        self.waiting += 1
        if self.limiter is not None:  # stands for the rate limiter: nothing written yet
            await self.limiter.wait()
        await attempts.sending()
        if self.admit is not None:  # stands for the last window check / a 429 pause
            await self.admit.wait()
        attempts.writing(1)
        self.requests.append((message, list(recipients)))
        n = len(self.requests)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if n in self.fail:
            attempts.failed(self.fail[n])
            raise self.fail[n]
        rid = f"req-{n}"
        return SendResult(
            request_id=rid,
            receipts=tuple(Receipt(f"{rid}:{i}", to) for i, to in enumerate(recipients, 1)),
            attempts=1,
        )


def csv_file(tmp_path: Path, lines: list[str], header: str = "to") -> str:
    return str(write_csv(tmp_path / "in.csv", lines, header))


async def run(
    path: str,
    send: FakeSend | None,
    *,
    plan: RowPlan = PLAN,
    config: DispatchConfig | None = None,
    retry_ambiguous: bool = False,
    progress: Progress | None = None,
    stop: anyio.Event | None = None,
    summary: BulkSummary | None = None,
    journal: io.BytesIO | None = None,
) -> list[dict[str, object]]:
    out = io.BytesIO()
    writer = ResultsWriter(out, journal if journal is not None else io.BytesIO())
    preparer = RowPreparer(plan, normalize=PhoneNormalizer("+91"), now=NOW)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        try:
            await dispatch(
                CsvSource(path),
                preparer,
                send.send if send else None,
                writer=writer,
                config=config or DispatchConfig(max_wait_ms=0),
                retry_ambiguous=retry_ambiguous,
                progress=progress,
                stop=stop,
                summary=summary,
            )
        finally:
            await writer.aclose()
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def by_row(results: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    rows = {r["row"]: r for r in results}
    assert len(rows) == len(results), "a row has two result lines"
    return rows


async def test_every_row_gets_exactly_one_result(tmp_path: Path) -> None:
    """Valid, invalid and malformed rows: one line each, numbered 1..N."""
    lines = [*numbers(250), "12345", '""', "not a number", "+919800000001,extra"]
    fake = FakeSend()
    results = await run(csv_file(tmp_path, lines), fake)
    rows = by_row(results)
    assert sorted(rows) == list(range(1, 255))
    statuses = [rows[n]["status"] for n in range(1, 255)]
    assert statuses == ["sent"] * 250 + ["invalid"] * 4
    assert rows[251]["to"] == "12345" and rows[251]["error_code"] == "invalid_to"
    assert "missing number" in str(rows[252]["error"])
    assert "fields" in str(rows[254]["error"])


async def test_identical_payloads_share_requests_of_100(tmp_path: Path) -> None:
    """250 identical rows go out as 100 + 100 + 50, and every message id maps back."""
    fake = FakeSend()
    results = await run(csv_file(tmp_path, numbers(250)), fake)
    assert [len(r) for _, r in fake.requests] == [100, 100, 50]
    sent = {r["to"]: r["message_id"] for r in results}
    for n, (_, recipients) in enumerate(fake.requests, 1):
        for i, to in enumerate(recipients, 1):
            assert sent[to] == f"req-{n}:{i}"


async def test_otp_rows_each_get_their_own_request(tmp_path: Path) -> None:
    """OTP rows in the same CSV as bulk rows never share a request, whatever batch_size."""
    lines = [f"{to},{'OTP' if i % 2 else ''}" for i, to in enumerate(numbers(40))]
    fake = FakeSend()
    await run(csv_file(tmp_path, lines, header="to,type"), fake)
    otp = [r for m, r in fake.requests if m.type == "OTP"]
    bulk = [r for m, r in fake.requests if m.type != "OTP"]
    assert len(otp) == 20 and all(len(r) == 1 for r in otp)
    assert [len(r) for r in bulk] == [20]


async def test_placeholders_personalise_and_split_batches(tmp_path: Path) -> None:
    """{name} is filled per row; rows with different bodies go in different requests."""
    plan = RowPlan(
        pod="IN",
        defaults=MessageDefaults(
            body="Hi {name}", sender="KLRHXA", type="TXN", template_id=TEMPLATE_ID
        ),
    )
    lines = ["+919800000001,Asha", "+919800000002,Ravi", "+919800000003,Asha"]
    fake = FakeSend()
    await run(csv_file(tmp_path, lines, header="to,name"), fake, plan=plan)
    bodies = sorted((m.body or "", len(r)) for m, r in fake.requests)
    assert bodies == [("Hi Asha", 2), ("Hi Ravi", 1)]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        pytest.param(RateLimitError("slow down", status_code=429), "failed", "HTTP429", id="429"),
        pytest.param(
            RejectedError("bad", status_code=400, kaleyra_code="E401"), "failed", "E401", id="400"
        ),
        pytest.param(ServerError("boom", status_code=500), "unknown", "HTTP500", id="500"),
        pytest.param(ServerError("busy", status_code=503), "failed", "HTTP503", id="503"),
        pytest.param(ResponseLostError("reset"), "unknown", "response_lost", id="reset"),
    ],
)
async def test_failures_map_to_failed_or_unknown(
    tmp_path: Path, error: KaleyraError, status: str, code: str
) -> None:
    """A request whose fate is unknown gives 'unknown'; a refused one 'failed'; with the code."""
    error.attempts = 3
    fake = FakeSend(fail={1: error})
    results = await run(csv_file(tmp_path, numbers(3)), fake)
    assert {r["status"] for r in results} == {status}
    assert {r["error_code"] for r in results} == {code}
    assert {r["attempts"] for r in results} == {3}
    assert len(fake.requests) == 1


async def test_dedupe_skips_repeats_of_number_and_message(tmp_path: Path) -> None:
    """With dedupe, the second identical (number, message) row is skipped, not sent."""
    lines = ["+919800000001", "9800000001", "+919800000002"]
    fake = FakeSend()
    results = by_row(await run(csv_file(tmp_path, lines), fake, config=DispatchConfig(dedupe=True)))
    assert results[2]["status"] == "skipped" and results[2]["error_code"] == "duplicate"
    assert sum(len(r) for _, r in fake.requests) == 2


async def test_dry_run_sends_nothing_and_plans_every_valid_row(tmp_path: Path) -> None:
    """A dry run counts requests and marks rows 'planned' without calling send."""
    summary = BulkSummary()
    results = await run(csv_file(tmp_path, [*numbers(150), "bad"]), None, summary=summary)
    assert [r["status"] for r in results].count("planned") == 150
    assert summary.requests == 2
    assert summary.by_status["invalid"] == 1
    assert summary.duplicates == 0


async def test_dry_run_counts_duplicates_without_skipping_them(tmp_path: Path) -> None:
    """Without --dedupe a dry run still reports repeats, and plans them like any row."""
    summary = BulkSummary()
    lines = ["+919800000001", "+919800000001", "9800000001", "+919800000002"]
    results = await run(csv_file(tmp_path, lines), None, summary=summary)
    assert [r["status"] for r in results] == ["planned"] * 4
    assert summary.duplicates == 2


async def test_planning_a_large_chunk_lets_other_tasks_run(tmp_path: Path) -> None:
    """A chunk of personalised rows is validated in slices: the loop turns between them.

    A dry run never waits on the send queue, so without the slices nothing else (a sender, the
    rate limiter's next wake-up) would run until the whole chunk was planned.
    """
    plan = RowPlan(
        pod="IN",
        defaults=MessageDefaults(
            body="Order {order} has shipped", sender="KLRHXA", type="TXN", template_id=TEMPLATE_ID
        ),
    )
    lines = [f"{to},KX{i:06d}" for i, to in enumerate(numbers(1000))]
    summary = BulkSummary()
    seen: set[int] = set()
    done = anyio.Event()

    async def watch() -> None:
        while not done.is_set():
            seen.add(summary.rows)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        try:
            results = await run(
                csv_file(tmp_path, lines, header="to,order"), None, plan=plan, summary=summary
            )
        finally:
            done.set()
    assert len(results) == 1000
    assert any(0 < rows < 1000 for rows in seen), sorted(seen)


async def test_resume_skips_done_rows_and_reports_inflight_as_unknown(tmp_path: Path) -> None:
    """Done rows are not sent again; rows in flight at the crash are 'unknown', not resent."""
    progress = Progress()
    for row in (1, 2, 3):
        progress.mark_done(row)
    progress.unresolved = {4, 5}
    fake = FakeSend()
    results = by_row(await run(csv_file(tmp_path, numbers(8)), fake, progress=progress))
    assert sorted(results) == [4, 5, 6, 7, 8]
    assert results[4]["status"] == results[5]["status"] == "unknown"
    assert results[4]["error_code"] == "inflight_at_crash"
    assert [r for _, r in fake.requests] == [numbers(3, start=5)]


async def test_resume_with_retry_ambiguous_resends_inflight_rows(tmp_path: Path) -> None:
    """retry_ambiguous opts in to at-least-once: in-flight rows are sent again."""
    progress = Progress()
    progress.unresolved = {1}
    fake = FakeSend()
    settings = DispatchConfig(max_wait_ms=0)
    results = await run(
        csv_file(tmp_path, numbers(2)),
        fake,
        progress=progress,
        config=settings,
        retry_ambiguous=True,
    )
    assert {r["status"] for r in results} == {"sent"}
    assert sorted(to for _, r in fake.requests for to in r) == numbers(2)


@pytest.mark.slow
async def test_memory_stays_bounded_when_sending_is_slow(tmp_path: Path) -> None:
    """With senders blocked, the pipeline reads only a bounded number of rows ahead."""
    fake = FakeSend()
    fake.gate = anyio.Event()
    summary = BulkSummary()
    settings = DispatchConfig(batch_size=100, concurrency=2, max_wait_ms=0)
    path = csv_file(tmp_path, numbers(200_000))

    async def watch() -> None:
        await fake.started.wait()
        # Let the reader thread run as far ahead as it can: until the count stops moving (an
        # unbounded reader would reach all 200,000 rows well within this).
        stable, last = 0, -1
        with anyio.fail_after(20):
            while stable < 20 and summary.rows < 200_000:
                await anyio.sleep(0.005)
                stable, last = (stable + 1, last) if summary.rows == last else (0, summary.rows)
        read_ahead = summary.rows
        assert read_ahead < 30_000, read_ahead
        assert fake.gate is not None
        fake.gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        results = await run(path, fake, config=settings, summary=summary)
    assert len(results) == 200_000


async def test_records_from_python_are_sent_like_csv_rows() -> None:
    """send_bulk over a RecordSource: one result per record through on_results."""
    import dataclasses

    import httpx
    import respx

    from kaleyra_async import BulkOptions, load_config
    from kaleyra_async._sources import RecordSource

    def accept(request: httpx.Request) -> httpx.Response:
        numbers = orjson.loads(request.content)["to"].split(",")
        data = [{"message_id": f"r1:{i}", "recipient": n[1:]} for i, n in enumerate(numbers, 1)]
        return httpx.Response(202, json={"id": "r1", "data": data, "error": {}})

    router = respx.Router()
    route = router.post(url__regex=r"/v1/HX1/sms$").mock(side_effect=accept)
    config = load_config(None, env={"KALEYRA_SID": "HX1", "KALEYRA_API_KEY": "k"})
    config = dataclasses.replace(
        config,
        defaults=dataclasses.replace(
            config.defaults, body="Hi {name}", sender="KLRHXA", template_id=TEMPLATE_ID
        ),
    )
    records = [
        {"to": "+919800000001", "name": "Asha"},
        {"to": "+919800000002", "name": "Asha"},
        {"to": "oops", "name": "Bad"},
        {"name": "No number"},
    ]
    seen: list[RowResult] = []
    summary = await bulk(
        RecordSource(records),
        config,
        BulkOptions(),
        on_results=seen.extend,
        transport=httpx.MockTransport(router.async_handler),
    )
    assert sorted((r.row, r.status) for r in seen) == [
        (1, "sent"),
        (2, "sent"),
        (3, "invalid"),
        (4, "invalid"),
    ]
    assert route.call_count == 1  # the two identical messages shared one request
    assert orjson.loads(route.calls[0].request.content)["body"] == "Hi Asha"
    assert "no 'to'" in str(next(r.error for r in seen if r.row == 4))
    assert summary.by_status == {"sent": 2, "invalid": 2}


async def test_the_number_column_matches_regardless_of_case(tmp_path: Path) -> None:
    """A header 'To' is the 'to' column (one column differing only in case)."""
    fake = FakeSend()
    results = await run(csv_file(tmp_path, numbers(2), header="To"), fake)
    assert [r["status"] for r in results] == ["sent", "sent"]


async def test_lane_queue_hands_over_a_waiting_batch_without_a_loop_turn() -> None:
    """put() with room and get() with a batch waiting do not yield to the loop: a yield there
    cost a whole loop turn per request (19 % of the client's CPU for one-recipient OTP)."""
    queue = LaneQueue(capacity=4)
    message = Message(body="Your order has shipped", sender="KLRHXA", type="TXN")
    bulk = Batch(message, (PreparedRow(1, "+919876500001", message, 1, "GSM-7"),))
    other_ran = False

    async def other() -> None:
        nonlocal other_ran
        other_ran = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)  # runs at the next loop turn
        await queue.put(bulk)
        got = await queue.get()
        assert not other_ran
    assert other_ran and got is bulk


def test_top_reasons_group_input_errors_across_lines() -> None:
    """'line 12: row has 5 fields...' and 'line 40: row has 5 fields...' are one reason: a
    file with many such rows must not push every other reason out of the summary's top 5."""
    summary = BulkSummary()
    wide = [
        RowResult(row=n, to="", status="invalid", error_code="invalid_row",
                  error=f"line {n + 1}: row has 5 fields, the header has 4")
        for n in range(1, 8)
    ]  # fmt: skip
    bad_number = RowResult(
        row=9, to="12345", status="invalid", error_code="invalid_to", error="to: is not valid"
    )
    summary.count([*wide, bad_number])
    assert summary.top_reasons() == [
        ("invalid invalid_row: row has 5 fields, the header has 4", 7),
        ("invalid invalid_to: to: is not valid", 1),
    ]


def test_top_reasons_group_malformed_csv_records_across_lines() -> None:
    """A malformed record's reason names the lines it spans; the summary groups by the kind."""
    summary = BulkSummary()
    spans = [
        RowResult(row=n, to="", status="invalid", error_code="invalid_row",
                  error=f"line {n}: malformed CSV: text after a closing quote "
                  f"(the row spans lines {n}-{n + 1})")
        for n in (3, 9)
    ]  # fmt: skip
    unclosed = [
        RowResult(row=n, to="", status="invalid", error_code="invalid_row",
                  error=f"line {n}: malformed CSV: the file ends inside a quoted field{tail}")
        for n, tail in (
            (20, "; lines 21-24 are read again as rows of their own"),
            (40, "; the quote opens on line 41; line 45 is read again as a row of its own"),
        )
    ]  # fmt: skip
    summary.count([*spans, *unclosed])
    assert summary.top_reasons() == [
        ("invalid invalid_row: malformed CSV: text after a closing quote", 2),
        ("invalid invalid_row: malformed CSV: the file ends inside a quoted field", 2),
    ]
