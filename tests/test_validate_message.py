"""A whole message's rules (validate_message), chunking, and a personalised row's body on a
validated message; the field-by-field rules are in test_validate.py.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaleyra_async._exceptions import ValidationError
from kaleyra_async._limits import MAX_SENDER_IDS_PER_DELETE
from kaleyra_async._models import Message
from kaleyra_async._request_rules import chunked
from kaleyra_async._validate import (
    validate_message,
    validate_message_body,
)
from tests.conftest import rejects
from tests.test_validate import NOW

# -- whole message -------------------------------------------------------------------------------


def test_message_is_normalised() -> None:
    """validate_message returns a normalised copy and leaves the input unchanged."""
    raw = Message(
        body="Your code is 1234",
        sender=" klrhxa ",
        type="txn",
        template_id=" 123456789012 ",
        template_data=(("code", "1234"),),
        unicode="auto",
        time="2025-01-15T16:00:00+05:30",
        ref_custom=("a", "b"),
    )
    checked = validate_message(raw, pod="IN", now=NOW)
    assert checked == Message(
        body="Your code is 1234",
        sender="KLRHXA",
        type="TXN",
        template_id="123456789012",
        template_data=(("code", "1234"),),
        unicode="AUTO",
        time="2025-01-15T16:00:00+05:30",
        ref_custom=("a", "b"),
    )
    assert raw.type == "txn"


def test_message_blank_optional_fields_become_none() -> None:
    """Empty template_id, unicode and time mean "not given"."""
    raw = Message(body="Hi", sender="Acme", type="DEFAULT", template_id=" ", unicode="", time="")
    checked = validate_message(raw, pod="SG", now=NOW)
    assert (checked.template_id, checked.unicode, checked.time) == (None, None, None)


@pytest.mark.parametrize("sender", [None, "", "  "])
def test_message_needs_a_sender(sender: str | None) -> None:
    """Every SMS carries a sender ID: a missing or blank sender is refused before the network."""
    rejects(lambda: validate_message(Message(body="Hi", sender=sender), pod="SG", now=NOW),
            "sender", "required")  # fmt: skip


def test_message_time_defaults_now_to_the_clock() -> None:
    """Without ``now`` the time rule uses the current time (a time in 2000 is too soon)."""
    rejects(
        lambda: validate_message(
            Message(body="Hi", sender="Acme", time="2000-01-01T00:00:00+00:00"), pod="SG"
        ),
        "time",
        "too_soon",
    )


@pytest.mark.parametrize(
    ("message", "pod", "field", "rule"),
    [
        pytest.param(Message(body="Hi", sender="Acme", type="TXN"), "SG", "type",
                     "allowed_values", id="type"),
        pytest.param(Message(body="Hi", sender="TOO LONG", type="TXN"), "IN", "sender", "format",
                     id="sender"),
        pytest.param(Message(body=None, sender="Acme", type="TXN"), "IN", "body", "required",
                     id="body-missing"),
        pytest.param(Message(body="x" * 4001, sender="Acme"), "SG", "body", "max_length",
                     id="body-long"),
        pytest.param(Message(body="Hi", sender="Acme", template_id="123"), "SG", "template_id",
                     "format", id="template-id"),
        pytest.param(Message(body="Hi", sender="Acme", template_data=(("v", "x" * 31),)), "SG",
                     "template_data.v", "max_length", id="template-data"),
        pytest.param(Message(body="Hi", sender="Acme", unicode="2"), "SG", "unicode",
                     "allowed_values", id="unicode"),
        pytest.param(Message(body="Hi", sender="Acme", time="2025-01-15T12:00:00"), "SG", "time",
                     "timezone_required", id="time"),
        pytest.param(Message(body="Hi", sender="Acme", ref="r" * 256), "SG", "ref", "max_length",
                     id="ref"),
        pytest.param(Message(body="Hi", sender="Acme", ref_custom=("a",) * 6), "SG", "ref_custom",
                     "max_items", id="ref-custom"),
    ],
)  # fmt: skip
def test_message_runs_every_rule(message: Message, pod: str, field: str, rule: str) -> None:
    """Each field rule is applied by validate_message."""
    rejects(lambda: validate_message(message, pod=pod, now=NOW), field, rule)


# -- chunked -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "size", "sizes"),
    [
        pytest.param(0, 100, [], id="empty"),
        pytest.param(100, 100, [100], id="exact"),
        pytest.param(101, 100, [100, 1], id="one-over"),
        pytest.param(250, MAX_SENDER_IDS_PER_DELETE, [100, 100, 50], id="deletes"),
        pytest.param(3, 1, [1, 1, 1], id="size-1"),
    ],
)
def test_chunked_splits_in_order(count: int, size: int, sizes: list[int]) -> None:
    """chunked yields consecutive slices of at most size items, covering all items once."""
    items = list(range(count))
    chunks = list(chunked(items, size))
    assert [len(c) for c in chunks] == sizes
    assert [x for c in chunks for x in c] == items


def test_chunked_refuses_size_zero() -> None:
    """A chunk size below 1 is a programming error."""
    with pytest.raises(ValueError, match="size"):
        list(chunked([1], 0))


# -- one row's body on a validated message (personalised rows) ------------------------------------

_BASES = [
    Message(body="x", sender="KLRHXA", type="TXN"),
    Message(body="x", sender="KLRHXA", type="TXN", template_id="1107161234567890123"),
]


@settings(max_examples=300, deadline=None, database=None)
@given(
    base=st.sampled_from(_BASES),
    body=st.none()
    | st.text(max_size=30)
    | st.sampled_from(["", "  ", "a\x00b", "\ud800 lone", "tab\tline\nff\x0c", "é" * 4001]),
)
def test_a_rows_body_gets_the_answer_validate_message_gives(
    base: Message, body: str | None
) -> None:
    """validate_message_body(valid, body) returns or raises exactly what validate_message does
    for the whole message with that body (the fast path checks only the body, once per row)."""
    valid = validate_message(base, pod="IN", now=NOW)
    whole = dataclasses.replace(valid, body=body)
    try:
        expected: Message | tuple[str, str] = validate_message(whole, pod="IN", now=NOW)
    except ValidationError as exc:
        expected = (exc.field, exc.rule)
    try:
        got: Message | tuple[str, str] = validate_message_body(valid, body)
    except ValidationError as exc:
        got = (exc.field, exc.rule)
    assert got == expected


def test_a_rows_message_keeps_every_other_field_and_stays_frozen() -> None:
    """The per-row message is built without __init__: it must equal, hash and repr as the
    message dataclasses.replace makes, keep every field, and still refuse assignment."""
    valid = validate_message(
        Message(
            body="x",
            sender="KLRHXA",
            type="TXN",
            template_id="1107161234567890123",
            template_data=(("name", "Ann"),),
            unicode="AUTO",
            flash=True,
            time=None,
            ref_custom=("a", "b"),
            callback_profile_id="cb1",
            ref="r0",
            ref1="r1",
            ref2="r2",
        ),
        pod="IN",
        now=NOW,
    )
    got = validate_message_body(valid, "Hello Ann")
    expected = dataclasses.replace(valid, body="Hello Ann")
    assert got == expected and hash(got) == hash(expected) and repr(got) == repr(expected)
    assert type(got) is Message
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.body = "changed"  # type: ignore[misc]
