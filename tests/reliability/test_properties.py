"""Properties of the pure core and the pipeline, for any rows and settings (hypothesis).

* batching never puts two recipients in an OTP request, never more than ``batch_size`` (<= 100)
  in any request, never a number twice in one request, and never mixes payloads;
* the pipeline gives every row exactly one outcome, and that outcome agrees with what a fake
  Kaleyra did with the request (accepted, refused, or left in doubt), attempt by attempt;
* number normalisation and message validation obey their rules (segment counting: in
  tests/test_encoding.py, beside its reference walk);
* a request built by the client reads back the same through the sandbox's parser.

Every run is bounded (``max_examples``) and keeps no example database in the repository.
"""

from __future__ import annotations

import contextvars
import dataclasses
import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.lowlevel
import httpx
import orjson
import phonenumbers
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kaleyra_async._batching import Batch, Batcher, PreparedRow
from kaleyra_async._client import KaleyraClient, validated_send
from kaleyra_async._config import DispatchConfig, MessageDefaults, PodConfig, RetryPolicy
from kaleyra_async._dispatch import dispatch
from kaleyra_async._exceptions import ValidationError
from kaleyra_async._flight import Flight
from kaleyra_async._limits import MAX_RECIPIENTS as MAX_BATCH_SIZE
from kaleyra_async._models import InputRow, Message, RowResult, SendResult
from kaleyra_async._phone import PhoneNormalizer, is_e164
from kaleyra_async._prepare import RowPlan, RowPreparer
from kaleyra_async._protocol import build_send
from kaleyra_async._request_rules import validate_recipients
from kaleyra_async._responses import parse_send
from kaleyra_async._results import ResultsWriter
from kaleyra_async._resume import Progress
from kaleyra_async._sources import RecordSource
from kaleyra_async._summary import BulkSummary
from kaleyra_async._validate import validate_message
from kaleyra_async.sandbox import SandboxConfig
from kaleyra_async.sandbox._handler import handle
from kaleyra_async.sandbox._state import SandboxState
from kaleyra_async.sandbox._values import Request

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# No example database: nothing is written into the repository, and every run is the same size.
QUICK = settings(max_examples=150, deadline=None, database=None)
PIPELINE = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- batching (pure) -----------------------------------------------------------------------------

MESSAGES = [
    Message(body="Your order has shipped", sender="KLRHXA", type="TXN"),
    Message(body="Your order has shipped", sender="KLRHXB", type="TXN"),
    Message(body="Your order has shipped", sender="KLRHXA", type="MKT"),
    Message(body="Your order has shipped", sender="KLRHXA", type="TXN", flash=True),
    Message(body="Hi Asha", sender="KLRHXA", type="TXN"),
    Message(body="Your code is 1234", sender="KLRHXA", type="OTP"),
    Message(body="Your code is 9876", sender="KLRHXA", type="OTP"),
    Message(template_id="1234567890123", template_data=(("name", "Asha"),), type="TXN"),
    Message(template_id="1234567890123", template_data=(("name", "Ravi"),), type="TXN"),
]
NUMBERS = [f"+9198765432{i:02d}" for i in range(12)]

# One step of the batcher: add a row (message index, number index) or let time pass.
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.integers(0, len(MESSAGES) - 1),
            st.integers(0, len(NUMBERS) - 1),
        ),
        st.tuples(st.just("tick"), st.floats(0, 0.2), st.just(0)),
    ),
    max_size=400,
)


@QUICK
@given(steps=steps, batch_size=st.integers(1, MAX_BATCH_SIZE), max_wait_s=st.floats(0, 0.1))
def test_batches_are_single_payload_bounded_and_otp_alone(
    steps: list[tuple[str, Any, int]], batch_size: int, max_wait_s: float
) -> None:
    """Any sequence of rows and pauses: every row in exactly one batch, and every batch is one
    payload, at most batch_size rows, no number twice, an OTP alone; rows keep their order."""
    batcher = Batcher(batch_size=batch_size, max_wait_s=max_wait_s)
    now = 0.0
    added: list[PreparedRow] = []
    batches: list[Batch] = []
    for kind, a, b in steps:
        if kind == "tick":
            now += a
            batches += batcher.due(now)
            continue
        row = PreparedRow(len(added) + 1, NUMBERS[b], MESSAGES[a], 1, "GSM-7")
        added.append(row)
        batches += batcher.add(row, now)
        assert len(batcher) <= len(added)
    batches += batcher.drain()
    assert len(batcher) == 0

    placed = [r.row for batch in batches for r in batch.rows]
    assert sorted(placed) == [r.row for r in added]  # each row once, none lost
    for batch in batches:
        rows = batch.rows
        assert 1 <= len(rows) <= batch_size <= MAX_BATCH_SIZE
        assert all(r.message == batch.message for r in rows)
        assert len({r.to for r in rows}) == len(rows)
        if batch.message.is_otp:
            assert len(rows) == 1
        assert [r.row for r in rows] == sorted(r.row for r in rows)
        # The message is the whole payload: the request differs from each row's own only in "to".
        shared = _wire_fields(build_send(batch.message, batch.recipients).content)
        for r in rows:
            alone = _wire_fields(build_send(r.message, [r.to]).content)
            assert {**alone, "to": None} == {**shared, "to": None}


@QUICK
@given(
    message=st.sampled_from(MESSAGES),
    n=st.integers(0, 2 * MAX_BATCH_SIZE),
)
def test_no_batch_or_request_can_break_the_recipient_rules(message: Message, n: int) -> None:
    """Batch() and validate_recipients() both refuse 0 rows, >100 rows and an OTP with >1."""
    rows = tuple(PreparedRow(i, f"+9198{i:08d}", message, 1, "GSM-7") for i in range(1, n + 1))
    allowed = 1 <= n <= (1 if message.is_otp else MAX_BATCH_SIZE)
    if allowed:
        assert len(Batch(message, rows).rows) == n
        validate_recipients([r.to for r in rows], message_type=message.type)
    else:
        with pytest.raises((ValueError, ValidationError)):
            Batch(message, rows)
        with pytest.raises(ValidationError):
            validate_recipients([r.to for r in rows], message_type=message.type)


def _wire_fields(content: bytes) -> dict[str, Any]:
    fields = orjson.loads(content)
    assert isinstance(fields, dict)
    return fields


# -- preparing rows: caches never mix payloads ---------------------------------------------------

RAW_NUMBERS = [
    *(f"+9198765432{i:02d}" for i in range(6)),
    *(f"98765432{i:02d}" for i in range(3)),  # the same people without the country code
    "+91 98765-432 00",
    "0091 9876543201",
    "12345",
    "not a number",
    "",
]
TYPES = ["", "TXN", "OTP", "otp", " MKT ", "BOGUS"]
SENDERS = ["", "KLRHXA", "klrhxb", "BAD!!"]
# "\ud800": a lone surrogate, which a Python record can hold and no wire encoding can carry.
NAMES = ["", "Asha", "Ravi", "Zoë", "x" * 31, "{name}", "\ud800"]
BODIES = ["", "Hello", "Hi {name}", "Hi {name}, {{braces}}", "Code {code}", "€uro ^ {#var#}"]
CODES = ["1234", "9876", "", "😀"]

row_fields = st.fixed_dictionaries(
    {
        "to": st.sampled_from(RAW_NUMBERS),
        "type": st.sampled_from(TYPES),
        "sender": st.sampled_from(SENDERS),
        "name": st.sampled_from(NAMES),
        "code": st.sampled_from(CODES),
        "body": st.sampled_from(BODIES),
    }
)


@st.composite
def plans(draw: st.DrawFn) -> tuple[RowPlan, tuple[str, ...]]:
    """A plan and the input's columns (which message fields come from the rows)."""
    columns = ["to", "name", "code"]
    for optional in ("type", "sender", "body"):
        if draw(st.booleans()):
            columns.append(optional)
    template = draw(st.booleans())
    plan = RowPlan(
        pod="IN",
        defaults=MessageDefaults(
            body=draw(st.sampled_from(["Hi {name}", "Static text", "Hi {name}, code {code}"])),
            sender="KLRHXA",
            type=draw(st.sampled_from(["TXN", "OTP"])),
            template_id="123456789012",  # India's DLT rule: every IN-pod message has one
            template_data_columns=("name",) if template else (),
        ),
    )
    return plan, tuple(columns)


def _fresh(plan: RowPlan, header: tuple[str, ...], row: InputRow) -> PreparedRow | RowResult:
    """The row prepared by a preparer that has seen no other row (no cache to go wrong)."""
    preparer = RowPreparer(plan, normalize=PhoneNormalizer("+91", cache_size=0), now=NOW)
    preparer.check_header(header)
    return preparer.prepare(row)


@QUICK
@given(plan_columns=plans(), records=st.lists(row_fields, min_size=1, max_size=60))
def test_a_row_prepares_the_same_with_or_without_the_caches(
    plan_columns: tuple[RowPlan, tuple[str, ...]], records: list[dict[str, str]]
) -> None:
    """The per-run caches (numbers, messages by key columns, segments) never give a row another
    row's payload: one preparer for all rows agrees with a fresh one per row."""
    plan, header = plan_columns
    shared = RowPreparer(plan, normalize=PhoneNormalizer("+91"), now=NOW)
    shared.check_header(header)
    for n, record in enumerate(records, 1):
        row = InputRow(n, {c: record[c] for c in header})
        assert shared.prepare(row) == _fresh(plan, header, row)


# -- the pipeline against a fake Kaleyra ---------------------------------------------------------

#: What the fake does with one HTTP attempt. "accepted" is the truth (an SMS went out, a ledger
#: line); what the client is told may say less.
OUTCOMES = {
    # name: (accepts, what the client hears)
    "accept": ("all", "ids"),
    "partial": ("some", "ids"),  # 2xx with an error and ids for some recipients only
    "missing_ids": ("some", "ids"),  # 2xx, no error, data[] lacks some recipients
    "500_after_accept": ("all", "lost"),
    "500_before_accept": ("none", "lost"),
    "502": ("none", "lost"),
    "reset_after_accept": ("all", "lost"),
    "read_timeout": ("all", "lost"),
    "garbage_2xx": ("all", "lost"),
    "429": ("none", "safe"),
    "503": ("none", "safe"),
    "connect_refused": ("none", "safe"),
    "400": ("none", "refused"),
    "401": ("none", "refused"),
}
AMBIGUOUS_OK = ("ids",)


@dataclasses.dataclass
class Attempt:
    outcome: str
    recipients: list[str]
    payload: dict[str, Any]
    #: Recipient position -> message id, for every recipient the fake accepted.
    accepted: dict[int, str]
    #: Recipient position -> message id, for the ids the client was told.
    told: dict[int, str]


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """A pipeline run's choices: the [dispatch] config and the run-level flags."""

    config: DispatchConfig
    retry_ambiguous: bool
    dry_run: bool

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def dedupe(self) -> bool:
        return self.config.dedupe


@dataclasses.dataclass
class Call:
    """One request of the pipeline (``send``), with every HTTP attempt it made."""

    rows: tuple[int, ...]
    message: Message
    attempts: list[Attempt] = dataclasses.field(default_factory=list)


_CURRENT: contextvars.ContextVar[Call] = contextvars.ContextVar("call")


class ScriptedKaleyra:
    """An in-process Kaleyra behind httpx.MockTransport that answers from a script."""

    def __init__(self, script: Sequence[str], partial_mask: int) -> None:
        self.script = list(script)
        self.partial_mask = partial_mask
        self.calls: list[Call] = []
        self.counter = itertools.count(1)

    def handler(self, request: httpx.Request) -> httpx.Response:
        n = next(self.counter)
        outcome = self.script[n - 1] if n <= len(self.script) else "accept"
        payload = orjson.loads(request.content)
        recipients = payload["to"].split(",")
        accepts, hears = OUTCOMES[outcome]
        positions = range(len(recipients))
        if accepts == "all":
            kept = list(positions)
        elif accepts == "some":
            kept = [i for i in positions if (self.partial_mask >> (i % 16)) & 1]
        else:
            kept = []
        ids = {i: f"r{n}:{i + 1}" for i in kept}
        told = ids if hears == "ids" else {}
        _CURRENT.get().attempts.append(Attempt(outcome, recipients, payload, ids, told))
        data = [{"message_id": ids[i], "recipient": recipients[i][1:]} for i in told]
        if outcome == "accept" or outcome == "missing_ids":
            return httpx.Response(202, json={"id": f"r{n}", "data": data, "error": {}})
        if outcome == "partial":
            error = {"code": "E999", "message": "some recipients failed"}
            return httpx.Response(202, json={"id": f"r{n}", "data": data, "error": error})
        if outcome in ("500_after_accept", "500_before_accept"):
            return httpx.Response(500, json={"code": "E500", "message": "internal", "error": {}})
        if outcome == "502":
            return httpx.Response(502, text="<html>bad gateway</html>")
        if outcome == "reset_after_accept":
            raise httpx.ReadError("connection reset by peer", request=request)
        if outcome == "read_timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if outcome == "garbage_2xx":
            return httpx.Response(200, text="<html>OK</html>")
        if outcome == "429":
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {}})
        if outcome == "503":
            return httpx.Response(503, json={"code": "E503", "message": "busy", "error": {}})
        if outcome == "connect_refused":
            raise httpx.ConnectError("connection refused", request=request)
        if outcome == "400":
            return httpx.Response(400, json={"code": "E401", "message": "bad body", "error": {}})
        assert outcome == "401"
        return httpx.Response(401, json={"code": "E100", "message": "bad key", "error": {}})


def _hears(attempt: Attempt) -> str:
    """What the client can know from an attempt: ids, lost (fate unknown), safe or refused."""
    hears = OUTCOMES[attempt.outcome][1]
    if attempt.outcome == "partial" and not attempt.told:
        return "lost"  # an error and not one id: Kaleyra took it, what it sent is unknown
    return hears


@st.composite
def pipeline_cases(draw: st.DrawFn) -> dict[str, Any]:
    plan, header = draw(plans())
    records = draw(st.lists(row_fields, min_size=1, max_size=40))
    n = len(records)
    done = draw(st.sets(st.integers(1, n), max_size=n // 4))
    unresolved = draw(st.sets(st.integers(1, n), max_size=n // 4)) - done
    # A refused key stops the whole run; let most examples run to the end.
    outcomes = [o for o in OUTCOMES if o != "401" or draw(st.integers(0, 4)) == 0]
    script = draw(st.lists(st.sampled_from(outcomes), max_size=30))
    return {
        "plan": plan,
        "header": header,
        "records": [{c: r[c] for c in header} for r in records],
        "progress": (done, unresolved) if draw(st.booleans()) else None,
        "script": script,
        "partial_mask": draw(st.integers(0, 0xFFFF)),
        "settings": RunSettings(
            config=DispatchConfig(
                batch_size=draw(st.integers(1, MAX_BATCH_SIZE)),
                max_wait_ms=draw(st.sampled_from([0.0, 1.0])),
                concurrency=draw(st.integers(1, 4)),
                dedupe=draw(st.booleans()),
            ),
            retry_ambiguous=draw(st.booleans()),
            dry_run=draw(st.integers(0, 9)) == 0,
        ),
        "max_attempts": draw(st.integers(1, 4)),
    }


async def _records(records: list[dict[str, str]]) -> AsyncIterator[dict[str, str]]:
    for record in records:
        yield record


async def _no_wait(_: float) -> None:
    await anyio.lowlevel.checkpoint()


async def _run_pipeline(
    case: dict[str, Any], fake: ScriptedKaleyra
) -> tuple[list[RowResult], BulkSummary]:
    settings: RunSettings = case["settings"]
    progress = None
    if case["progress"] is not None:
        done, unresolved = case["progress"]
        progress = Progress()
        for row in done:
            progress.mark_done(row)
        progress.unresolved = set(unresolved)
    retry = RetryPolicy(
        max_attempts=case["max_attempts"],
        initial_backoff_s=0,
        jitter_s=0,
        retry_ambiguous=settings.retry_ambiguous,
    )
    client = KaleyraClient(
        sid="HX1",
        api_key="k",
        retry=retry,
        rate_limit=PodConfig(rate_per_s=100_000, burst=1000),
        transport=httpx.MockTransport(fake.handler),
        _sleep=_no_wait,
    )
    client_send = validated_send(client)

    async def send(message: Message, recipients: Sequence[str], *, attempts: Flight) -> SendResult:
        # The flight knows its rows; the fake needs them to tell duplicates of a number apart.
        call = Call(tuple(r.row for r in attempts.batch.rows), message)
        token = _CURRENT.set(call)
        try:
            return await client_send(message, recipients, attempts=attempts)
        finally:
            _CURRENT.reset(token)
            fake.calls.append(call)

    results: list[RowResult] = []
    summary = BulkSummary()
    writer = ResultsWriter(None, None)
    preparer = RowPreparer(case["plan"], normalize=PhoneNormalizer("+91"), now=NOW)
    async with client, anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        try:
            await dispatch(
                RecordSource(_records(case["records"])),
                preparer,
                None if settings.dry_run else send,
                writer=writer,
                config=settings.config,
                retry_ambiguous=settings.retry_ambiguous,
                summary=summary,
                progress=progress,
                on_results=results.extend,
            )
        finally:
            await writer.aclose()
    return results, summary


def _expected_for_call(call: Call, retry_ambiguous: bool) -> dict[int, tuple[str, str | None]]:
    """What each row of a request must end as, from what the fake did (not from the code)."""
    if not call.attempts:
        return {}
    last = call.attempts[-1]
    hears = _hears(last)
    earlier_lost = any(_hears(a) == "lost" for a in call.attempts[:-1])
    out: dict[int, tuple[str, str | None]] = {}
    for i, row in enumerate(call.rows):
        if hears == "ids":
            out[row] = ("sent", last.told[i]) if i in last.told else ("unknown", None)
        elif hears == "lost" or earlier_lost:
            out[row] = ("unknown", None)
        else:
            out[row] = ("failed", None)
    return out


@PIPELINE
@given(case=pipeline_cases())
def test_every_row_has_one_outcome_that_matches_what_kaleyra_did(case: dict[str, Any]) -> None:
    """Valid, invalid, duplicate, OTP and personalised rows, resumed or not, against any script
    of accepts, refusals and lost answers: one result per row, none contradicting the fake."""
    settings: RunSettings = case["settings"]
    fake = ScriptedKaleyra(case["script"], case["partial_mask"])
    results, summary = anyio.run(_run_pipeline, case, fake)
    plan, header, records = case["plan"], case["header"], case["records"]
    done, unresolved = case["progress"] or (set(), set())

    by_row: dict[int, RowResult] = {}
    for result in results:
        assert result.row not in by_row, f"row {result.row} has two results"
        by_row[result.row] = result

    # The requests themselves: shape, and the payload each row would have had on its own.
    prepared = {n: _fresh(plan, header, InputRow(n, record)) for n, record in enumerate(records, 1)}
    calls_of_row: dict[int, int] = {}
    for call in fake.calls:
        for row in call.rows:
            calls_of_row[row] = calls_of_row.get(row, 0) + 1
        for a in call.attempts:
            assert 1 <= len(a.recipients) <= settings.batch_size
            assert len(set(a.recipients)) == len(a.recipients)
            if a.payload["type"] == "OTP":
                assert len(a.recipients) == 1
            for row, to in zip(call.rows, a.recipients, strict=True):
                mine = prepared[row]
                assert isinstance(mine, PreparedRow)
                assert to == mine.to
                alone = _wire_fields(build_send(mine.message, [mine.to]).content)
                assert {**alone, "to": None} == {**a.payload, "to": None}
        # A request whose fate is unknown is never resent silently.
        for before in call.attempts[:-1]:
            kind = _hears(before)
            assert kind == "safe" or (kind == "lost" and settings.retry_ambiguous), before
        # ... and one that surely did not go out is retried while the policy allows.
        if call.attempts and summary.aborted is None:
            kind = _hears(call.attempts[-1])
            if kind == "safe" or (kind == "lost" and settings.retry_ambiguous):
                assert len(call.attempts) == case["max_attempts"]
    assert all(count == 1 for count in calls_of_row.values()), "a row was batched twice"

    # What each row must end as, in input order (dedupe remembers earlier rows).
    seen: set[tuple[Message, str]] = set()
    expected: dict[int, tuple[str, str | None]] = {}
    for call in fake.calls:
        expected.update(_expected_for_call(call, settings.retry_ambiguous))
    for n in range(1, len(records) + 1):
        mine = prepared[n]
        key = (mine.message, mine.to) if isinstance(mine, PreparedRow) else None
        if n in done:
            assert n not in by_row and n not in calls_of_row
            if settings.dedupe and key:
                seen.add(key)
            continue
        if n in unresolved and not settings.retry_ambiguous:
            assert n not in calls_of_row
            assert (by_row[n].status, by_row[n].error_code) == ("unknown", "inflight_at_crash")
            if settings.dedupe and key:
                seen.add(key)
            continue
        if key is None:
            assert isinstance(mine, RowResult)
            assert n not in calls_of_row
            assert (by_row[n].status, by_row[n].error_code) == ("invalid", mine.error_code)
            continue
        if settings.dedupe:
            if key in seen:
                assert n not in calls_of_row
                assert (by_row[n].status, by_row[n].error_code) == ("skipped", "duplicate")
                continue
            seen.add(key)
        if settings.dry_run:
            assert by_row[n].status == "planned"
            continue
        if n not in by_row:
            # Only a run that stopped itself (refused key, no server) leaves rows without a line,
            # and only rows that cannot have gone out: --resume sends them.
            assert summary.aborted is not None, f"row {n} has no result"
            for call in fake.calls:
                if n in call.rows:
                    assert all(OUTCOMES[a.outcome][0] == "none" for a in call.attempts)
            continue
        result = by_row[n]
        if n not in expected:  # stopped before its request was written
            assert summary.aborted is not None
            assert result.status == "unknown" and result.error_code == "interrupted"
            continue
        status, message_id = expected[n]
        assert (result.status, result.message_id) == (status, message_id), (n, result)
        call = next(c for c in fake.calls if n in c.rows)
        assert result.attempts == len(call.attempts)
    if summary.aborted is None:
        assert set(by_row) == set(range(1, len(records) + 1)) - done

    # The ledger view: an accepted row is never failed, and goes out at most once unless the
    # user opted in to at-least-once with retry_ambiguous.
    accepted: dict[int, int] = {}
    for call in fake.calls:
        for a in call.attempts:
            for i in a.accepted:
                accepted[call.rows[i]] = accepted.get(call.rows[i], 0) + 1
    for row, times in accepted.items():
        assert by_row[row].status in ("sent", "unknown"), by_row[row]
        assert times == 1 or settings.retry_ambiguous
    for row, result in by_row.items():
        if result.status == "sent":
            assert row in accepted


# -- numbers and validation ---------------------------------------------------------------------

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


@st.composite
def written_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A valid number in E.164 and as a person might write it (spaces, dashes, 00, brackets)."""
    region = draw(st.sampled_from(REGIONS))
    example = phonenumbers.example_number_for_type(
        region, draw(st.sampled_from([phonenumbers.PhoneNumberType.MOBILE, None]))
    )
    if example is None:
        example = phonenumbers.example_number(region)
    if example is None:
        example = phonenumbers.parse("+919876543210", None)
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    style = draw(
        st.sampled_from(
            [
                phonenumbers.PhoneNumberFormat.E164,
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
            ]
        )
    )
    written = phonenumbers.format_number(example, style)
    if draw(st.booleans()):
        written = "00" + written[1:]
    written = draw(st.sampled_from(["", " ", "\t"])) + written + draw(st.sampled_from(["", " "]))
    return e164, written


@QUICK
@given(number=written_numbers(), prefix=st.sampled_from([None, "+91", "+1", "+44"]))
def test_normalising_is_idempotent_and_ignores_formatting(
    number: tuple[str, str], prefix: str | None
) -> None:
    """A written valid number normalises to its E.164 form, which normalises to itself."""
    e164, written = number
    normalize = PhoneNormalizer(prefix)
    assert normalize(written) == e164
    assert normalize(e164) == e164
    assert is_e164(e164)


@QUICK
@given(
    raw=st.text(alphabet="0123456789 +-()./x", max_size=24),
    prefix=st.sampled_from([None, "+91", "+1"]),
)
def test_any_accepted_number_is_e164_and_a_fixed_point(raw: str, prefix: str | None) -> None:
    """Whatever is accepted comes out as E.164, and normalising that changes nothing."""
    normalize = PhoneNormalizer(prefix)
    try:
        e164 = normalize(raw)
    except ValidationError as exc:
        rejected = exc
    else:
        rejected = None
    if rejected is not None:
        assert rejected.field == "to"
        return
    assert is_e164(e164)
    assert normalize(e164) == e164
    assert PhoneNormalizer(None)(e164) == e164


messages = st.builds(
    Message,
    body=st.one_of(
        st.none(), st.text(max_size=60), st.text(max_size=5).map(lambda t: t + "\udc80")
    ),
    sender=st.sampled_from([None, "", "KLRHXA", "klrhxa", " 919876543210 ", "BAD!"]),
    type=st.sampled_from(["TXN", "txn", " OTP", "MKT", "DEFAULT", "NOPE"]),
    template_id=st.sampled_from([None, "", "123456789012", "12"]),
    template_data=st.lists(
        st.tuples(st.sampled_from(["a", "b", ""]), st.text(max_size=35)), max_size=3
    ).map(tuple),
    unicode=st.sampled_from([None, "", "auto", "1", "2"]),
    flash=st.booleans(),
    time=st.one_of(
        st.none(),
        st.integers(-60, 60 * 24 * 100).map(
            lambda m: (NOW + timedelta(minutes=m)).isoformat(timespec="seconds")
        ),
    ),
    ref_custom=st.lists(st.text(max_size=55), max_size=6).map(tuple),
)


@QUICK
@given(message=messages, pod=st.sampled_from(["IN", "SG", "EU", "NA"]))
def test_validating_a_valid_message_changes_nothing(message: Message, pod: str) -> None:
    """validate_message is idempotent: its output passes again, unchanged."""
    try:
        valid = validate_message(message, pod=pod, now=NOW)
    except ValidationError as exc:
        rejected = exc
    else:
        rejected = None
    if rejected is not None:
        assert str(rejected) == f"{rejected.field}: {rejected.reason}"
        return
    assert validate_message(valid, pod=pod, now=NOW) == valid
    # What passes validation can be put on the wire, in either body encoding.
    build_send(valid, ["+919876543210"], encoding="json")
    build_send(valid, ["+919876543210"], encoding="form")


# -- the wire format round-trips through the sandbox ---------------------------------------------

SANDBOX_KEY = "prop-key"
wire_messages = st.builds(
    Message,
    # Control characters other than tab, LF, FF and CR are refused by validation (they'd reach
    # the handset as garbage), so they are not part of a message that goes on the wire.
    body=st.text(
        alphabet=st.characters(exclude_categories=["Cs", "Cc"], include_characters="\t\n\x0c\r"),
        min_size=1,
        max_size=200,
    ).filter(lambda b: b.strip() != ""),
    sender=st.sampled_from(["KLRHXA", "919876543210"]),
    type=st.sampled_from(["TXN", "MKT", "OTP", "TXND"]),
    # India's DLT rule: every message to a +91 number from the IN pod carries a template id.
    template_id=st.just("123456789012"),
    template_data=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.text(max_size=30)),
        max_size=3,
        unique_by=lambda p: p[0],
    ).map(tuple),
    unicode=st.sampled_from([None, "AUTO", "0", "1"]),
    flash=st.booleans(),
    time=st.sampled_from([None, (NOW + timedelta(hours=2)).isoformat(timespec="seconds")]),
    ref_custom=st.lists(st.text(max_size=50), max_size=5).map(tuple),
)


@QUICK
@given(
    message=wire_messages,
    count=st.integers(1, MAX_BATCH_SIZE),
    encoding=st.sampled_from(["json", "form"]),
    endpoint=st.sampled_from(["sms", "messages"]),
)
# Found by this test: the sandbox read a form-encoded ref_custom value starting with "[" as JSON,
# split one with commas into several, and kept only the last of repeated values.
@example(
    message=Message(
        body="x", sender="KLRHXA", type="TXN", template_id="123456789012", ref_custom=("[",)
    ),
    count=1,
    encoding="form",
    endpoint="sms",
)
@example(
    message=Message(
        body="x",
        sender="KLRHXA",
        type="TXN",
        template_id="123456789012",
        ref_custom=("a,b,c,d,e,f",),
    ),
    count=1,
    encoding="form",
    endpoint="sms",
)
def test_a_built_request_reads_back_the_same_in_the_sandbox(
    message: Message, count: int, encoding: Any, endpoint: Any
) -> None:
    """build_send -> the sandbox's parser -> parse_send: every field and every recipient, in
    order, with one message id each, in both body encodings and on both endpoints."""
    message = validate_message(message, pod="IN", now=NOW)
    # US numbers: India's DLT rules (template id and 6-letter sender to +91) are the sandbox's
    # own tests' business, not this round trip's.
    recipients = [f"+1415{i:07d}" for i in range(1, (1 if message.is_otp else count) + 1)]
    wire = build_send(message, recipients, endpoint=endpoint, encoding=encoding)
    headers = {k.lower(): v for k, v in wire.headers} | {"api-key": SANDBOX_KEY}
    config = SandboxConfig(api_key=SANDBOX_KEY, seed=1)
    request = Request(
        method="POST", path=f"/v1/{config.sid}{wire.path}", headers=headers, body=wire.content
    )
    response = handle(SandboxState(config), request, NOW.timestamp())
    assert response.status == 202, response.body
    acceptance = response.acceptance
    assert acceptance is not None
    assert acceptance.recipients == tuple(r[1:] for r in recipients)
    assert acceptance.body == message.body
    assert acceptance.type == message.type
    assert acceptance.template_id == message.template_id
    if message.sender is not None:
        assert acceptance.sender == message.sender
    if encoding == "form":
        fields = dict(parse_qsl(wire.content.decode(), keep_blank_values=True))
        if message.template_data:
            assert orjson.loads(fields["template_data"]) == dict(message.template_data)
    result = parse_send(response.status, dict(response.headers), response.body, pod="IN")
    assert [r.recipient for r in result.receipts] == recipients
    assert [r.message_id for r in result.receipts] == [
        record.message_id for record in acceptance.records()
    ]
