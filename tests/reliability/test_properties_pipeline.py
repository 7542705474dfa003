"""Properties of the pipeline against a fake Kaleyra, for any rows and settings (hypothesis):
every row gets exactly one outcome, and it agrees with what the fake did with its request
(accepted, refused, or left in doubt), attempt by attempt. Bounded runs, no example database.
"""

from __future__ import annotations

import contextvars
import dataclasses
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import orjson
from hypothesis import given
from hypothesis import strategies as st

from kaleyra_async._batching import PreparedRow
from kaleyra_async._client import KaleyraClient, validated_send
from kaleyra_async._config import DispatchConfig, PodConfig, RetryPolicy
from kaleyra_async._dispatch import dispatch
from kaleyra_async._flight import Flight
from kaleyra_async._limits import MAX_RECIPIENTS as MAX_BATCH_SIZE
from kaleyra_async._models import InputRow, Message, RowResult, SendResult
from kaleyra_async._phone import PhoneNormalizer
from kaleyra_async._prepare import RowPreparer
from kaleyra_async._protocol import build_send
from kaleyra_async._results import ResultsWriter
from kaleyra_async._resume import Progress
from kaleyra_async._sources import RecordSource
from kaleyra_async._summary import BulkSummary

from .test_properties import NOW, PIPELINE, _fresh, _wire_fields, plans, row_fields

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
