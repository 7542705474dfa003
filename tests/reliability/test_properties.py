"""Properties of the pure core, for any rows and settings (hypothesis): batching never puts two
recipients in an OTP request, never more than ``batch_size`` (<= 100) in any request, never a
number twice in one request, and never mixes payloads; preparing rows never mixes payloads
through its caches. The pipeline's properties are in test_properties_pipeline.py, numbers,
messages and the wire in test_properties_rules.py (segment counting: tests/test_encoding.py).

Every run is bounded (``max_examples``) and keeps no example database in the repository.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaleyra_async._batching import Batch, Batcher, PreparedRow
from kaleyra_async._config import MessageDefaults
from kaleyra_async._exceptions import ValidationError
from kaleyra_async._limits import MAX_RECIPIENTS as MAX_BATCH_SIZE
from kaleyra_async._models import InputRow, Message, RowResult
from kaleyra_async._phone import PhoneNormalizer
from kaleyra_async._prepare import RowPlan, RowPreparer
from kaleyra_async._protocol import build_send
from kaleyra_async._request_rules import validate_recipients

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
