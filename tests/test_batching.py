"""Batching identical payloads into requests, and the OTP guard."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaleyra_async._batching import Batch, Batcher, PreparedRow, RepeatFilter
from kaleyra_async._exceptions import ValidationError
from kaleyra_async._models import Message

BULK = Message(body="Your order has shipped", sender="KLRHXA", type="TXN")
OTHER = Message(body="Your order is late", sender="KLRHXA", type="TXN")
OTP = Message(body="1234 is your OTP", sender="KLRHXA", type="OTP")


def row(n: int, message: Message = BULK, to: str | None = None) -> PreparedRow:
    return PreparedRow(n, to or f"+9198765{n:05d}", message, 1, "GSM-7")


def test_full_batch_is_flushed_at_batch_size() -> None:
    """A batch is ready as soon as it holds batch_size rows, not before."""
    batcher = Batcher(batch_size=3, max_wait_s=10)
    assert batcher.add(row(1), 0) == []
    assert batcher.add(row(2), 0) == []
    [batch] = batcher.add(row(3), 0)
    assert [r.row for r in batch.rows] == [1, 2, 3]
    assert batch.recipients == ["+919876500001", "+919876500002", "+919876500003"]
    assert len(batcher) == 0


def test_different_payloads_never_share_a_request() -> None:
    """Rows join a batch only when every wire field of their message is equal."""
    batcher = Batcher(batch_size=100, max_wait_s=10)
    variants = [
        BULK,
        OTHER,
        Message(body=BULK.body, sender="OTHERS", type="TXN"),
        Message(body=BULK.body, sender="KLRHXA", type="MKT"),
        Message(body=BULK.body, sender="KLRHXA", type="TXN", flash=True),
        Message(body=BULK.body, sender="KLRHXA", type="TXN", template_data=(("a", "1"),)),
    ]
    for n, message in enumerate(variants, 1):
        batcher.add(row(n, message), 0)
    batches = batcher.drain()
    assert len(batches) == len(variants)
    assert all(len(b.rows) == 1 for b in batches)


def test_linger_flushes_partial_batch_after_max_wait() -> None:
    """A partial batch becomes due max_wait_s after its first row, and not earlier."""
    batcher = Batcher(batch_size=100, max_wait_s=0.05)
    batcher.add(row(1), 10.0)
    batcher.add(row(2), 10.04)
    assert batcher.next_deadline() == pytest.approx(10.05)
    assert batcher.due(10.049) == []
    [batch] = batcher.due(10.05)
    assert len(batch.rows) == 2
    assert batcher.next_deadline() is None


def test_one_open_batch_too_many_closes_the_oldest() -> None:
    """Personalised rows don't pile up until the linger: past max_open the oldest is sent."""
    batcher = Batcher(batch_size=100, max_wait_s=10, max_open=2)
    first = Message(body="Order 1 shipped", sender="KLRHXA", type="TXN")
    second = Message(body="Order 2 shipped", sender="KLRHXA", type="TXN")
    third = Message(body="Order 3 shipped", sender="KLRHXA", type="TXN")
    assert batcher.add(row(1, first), 0) == []
    assert batcher.add(row(2, second), 0) == []
    assert batcher.add(row(3, first), 0) == []  # joins an open batch: nothing closes
    [batch] = batcher.add(row(4, third), 0)
    assert batch.message == first and [r.row for r in batch.rows] == [1, 3]
    assert [b.message for b in batcher.drain()] == [second, third]


def test_deadlines_stay_in_order_after_a_key_is_reopened() -> None:
    """A message whose batch was flushed full starts a new batch with a new, later deadline."""
    batcher = Batcher(batch_size=2, max_wait_s=1)
    batcher.add(row(1, BULK), 0)
    batcher.add(row(2, OTHER), 0.5)
    batcher.add(row(3, BULK), 0.6)  # BULK full -> flushed
    batcher.add(row(4, BULK), 0.7)  # BULK reopened, deadline 1.7
    [due] = batcher.due(1.6)
    assert due.message == OTHER
    [due] = batcher.due(1.7)
    assert [r.row for r in due.rows] == [4]


def test_same_number_twice_goes_to_separate_requests() -> None:
    """A repeated number closes the open batch, so one request never names a number twice."""
    batcher = Batcher(batch_size=100, max_wait_s=10)
    batcher.add(row(1, to="+919876543210"), 0)
    [first] = batcher.add(row(2, to="+919876543210"), 0)
    assert [r.row for r in first.rows] == [1]
    [second] = batcher.drain()
    assert [r.row for r in second.rows] == [2]


def test_a_number_repeated_in_a_group_of_several_closes_it() -> None:
    """The repeat check holds once a group has grown past its first row, too."""
    batcher = Batcher(batch_size=100, max_wait_s=10)
    batcher.add(row(1, to="+919876543210"), 0)
    batcher.add(row(2, to="+919876543211"), 0)
    [first] = batcher.add(row(3, to="+919876543211"), 0)
    assert [r.row for r in first.rows] == [1, 2]
    assert len(batcher) == 1
    [second] = batcher.drain()
    assert [r.row for r in second.rows] == [3]


@settings(max_examples=200, deadline=None, database=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 9), st.integers(0, 6), st.sampled_from([0.0, 0.5, 1.0])),
        max_size=40,
    ),
    batch_size=st.integers(1, 4),
    json_batch_size=st.sampled_from([0, 2, 3]),
    max_open=st.integers(1, 3),
)
def test_every_row_leaves_in_exactly_one_well_formed_batch(
    rows: list[tuple[int, int, float]], batch_size: int, json_batch_size: int, max_open: int
) -> None:
    """Any mix of repeated and personalised messages (whole, or a body beside an equal base that
    is another object every row), numbers and linger expiries: each row is in one batch, no
    batch names a number twice or exceeds its size, an /sms batch has one message, and the
    batcher counts exactly the rows it still holds."""
    messages = [Message(body=f"Order {i} shipped", sender="KLRHXA", type="TXN") for i in range(6)]

    def row_of(n: int, kind: int, to: str) -> PreparedRow:
        if kind < len(messages):
            return row(n, messages[kind], to=to)
        base = Message(body="x", sender=("KLRHXA", "KLRHXB")[kind % 2], type="TXN")
        return PreparedRow(n, to, base, 1, "GSM-7", body=f"Order {kind // 8} shipped")

    batcher = Batcher(
        batch_size=batch_size, max_wait_s=0.7, max_open=max_open, json_batch_size=json_batch_size
    )
    batches: list[Batch] = []
    now = 0.0
    for n, (message, number, step) in enumerate(rows, 1):
        now += step
        batches += batcher.due(now)
        batches += batcher.add(row_of(n, message, f"+91987654321{number}"), now)
        assert len(batcher) == n - sum(len(b.rows) for b in batches)
    batches += batcher.drain()
    assert sorted(r.row for b in batches for r in b.rows) == list(range(1, len(rows) + 1))
    for batch in batches:
        numbers = [r.to for r in batch.rows]
        assert len(set(numbers)) == len(numbers)
        if batch.endpoint == "sms":
            assert len(batch.rows) <= batch_size
            assert all(r.message == batch.message for r in batch.rows)
        else:
            assert 2 <= len(batch.rows) <= json_batch_size


def test_rows_with_their_own_body_share_a_request_by_value_not_by_object() -> None:
    """A body beside its base: equal bases (other objects) and bodies share an /sms request;
    another sender never does, also after the batcher has forgotten thousands of bases."""

    def own(n: int, sender: str, body: str) -> PreparedRow:
        base = Message(body="x", sender=sender, type="TXN")
        return PreparedRow(n, f"+9198765{n:05d}", base, 1, "GSM-7", body=body)

    batcher = Batcher(batch_size=100, max_wait_s=10, max_open=10_000, json_batch_size=100)
    rows = [own(n, "KLRHXA" if n % 2 else "KLRHXB", "Same text") for n in range(1, 7)]
    rows += [own(n, f"S{n:05d}", "Same text") for n in range(7, 5_007)]  # 5,000 other bases
    rows += [own(n, "KLRHXA" if n % 2 else "KLRHXB", "Same text") for n in range(5_007, 5_011)]
    batches = [b for r in rows for b in batcher.add(r, 0)] + batcher.drain()
    shared = [b for b in batches if b.endpoint == "sms" and len(b.rows) > 1]
    firsts = {tuple(r.row for r in b.rows)[:3] for b in shared}
    assert {(1, 3, 5), (2, 4, 6)} <= firsts
    # Past the bound, a base is numbered anew: its rows may open a group of their own, but
    # never join another message's.
    assert sorted(r.row for b in shared for r in b.rows if r.row > 5_000) == [
        5_007,
        5_008,
        5_009,
        5_010,
    ]
    for batch in shared:
        assert all(r.message == batch.message for r in batch.rows)


@pytest.mark.parametrize("batch_size", [1, 2, 50, 100])
def test_otp_rows_are_always_alone(batch_size: int) -> None:
    """Whatever the batch size, every OTP row is its own request, ready at once."""
    batcher = Batcher(batch_size=batch_size, max_wait_s=10)
    out = []
    for n in range(1, 6):
        out += batcher.add(row(n, OTP), 0)
    assert [len(b.rows) for b in out] == [1] * 5
    assert batcher.drain() == []


def test_otp_guard_rejects_two_recipients_in_any_batch() -> None:
    """Constructing an OTP batch with two rows raises: no code path can build one."""
    with pytest.raises(ValidationError) as info:
        Batch(OTP, (row(1, OTP), row(2, OTP)))
    assert info.value.rule == "otp_single_recipient"


def test_otp_guard_holds_for_every_interleaving() -> None:
    """Mixed OTP and bulk rows, any batch size and order: no produced OTP batch has 2 rows."""
    rows = [row(n, OTP if n % 3 == 0 else BULK) for n in range(1, 10)]
    for batch_size in (1, 2, 3, 100):
        for order in itertools.islice(itertools.permutations(rows), 200):
            batcher = Batcher(batch_size=batch_size, max_wait_s=1)
            batches = [b for r in order for b in batcher.add(r, 0)] + batcher.drain()
            assert sum(len(b.rows) for b in batches) == len(rows)
            assert all(len(b.rows) == 1 for b in batches if b.message.is_otp)


def test_batch_over_100_recipients_is_refused() -> None:
    """Kaleyra takes at most 100 recipients per request."""
    with pytest.raises(ValidationError):
        Batch(BULK, tuple(row(n) for n in range(101)))
    with pytest.raises(ValueError, match=r"1\.\.100"):
        Batcher(batch_size=101)


def test_repeat_filter_knows_a_pair_only_once() -> None:
    """The same number and message repeat; another number or any other field does not."""
    repeats = RepeatFilter()
    assert repeats.first_time("+919800000001", BULK)
    assert not repeats.first_time(
        "+919800000001", Message(body=BULK.body, sender="KLRHXA", type="TXN")
    )
    assert repeats.first_time("+919800000002", BULK)
    assert repeats.first_time("+919800000001", OTHER)
    assert repeats.first_time("+919800000001", dataclasses.replace(BULK, flash=True))
    # Field boundaries count: the same characters split differently are another message.
    assert repeats.first_time("+919800000001", Message(body="a", sender="b'", type="TXN"))
    assert repeats.first_time("+919800000001", Message(body="a', sender='b", type="TXN"))
    assert len(repeats) == 6
