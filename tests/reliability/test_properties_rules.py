"""Properties of numbers, messages and the wire, for any input (hypothesis): number normalisation
and message validation obey their rules, and a request built by the client reads back the same
through the sandbox's parser. Bounded runs, no example database (as test_properties.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import orjson
import phonenumbers
from hypothesis import example, given
from hypothesis import strategies as st

from kaleyra_async._exceptions import ValidationError
from kaleyra_async._limits import MAX_RECIPIENTS as MAX_BATCH_SIZE
from kaleyra_async._models import Message
from kaleyra_async._phone import PhoneNormalizer, is_e164
from kaleyra_async._protocol import build_send
from kaleyra_async._responses import parse_send
from kaleyra_async._validate import validate_message
from kaleyra_async.sandbox import SandboxConfig
from kaleyra_async.sandbox._handler import handle
from kaleyra_async.sandbox._state import SandboxState
from kaleyra_async.sandbox._values import Request

from .test_properties import NOW, QUICK

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
