"""The sandbox's send route, through the pure handler: the success body, every field rule and its
error code, and the recipients it accepts into the ledger.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from kaleyra_async.sandbox import DEFAULT_API_KEY, DEFAULT_SID
from kaleyra_async.sandbox._handler import handle
from kaleyra_async.sandbox._values import Request
from tests.conftest import NOW, TEMPLATE_ID, A, B, make_state, ok_fields, payload, send

# -- success ---------------------------------------------------------------------------------------


def test_send_success_has_the_documented_messages_shape() -> None:
    """A valid send answers 202 with id, echoes (template_id where given, in the place of the
    "Send OTP SMS" sample for India), createdDateTime, totalCount, data, error {}."""
    response = send(make_state(), ok_fields())
    assert response.status == 202
    body = payload(response)
    request_id = body["id"]
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", request_id
    )
    assert body == {
        "id": request_id,
        "sender": "KLRHXA",
        "type": "TXN",
        "template_id": TEMPLATE_ID,
        "body": "Hello",
        "createdDateTime": "2023-11-14 22:13:20+00:00",
        "totalCount": 2,
        "data": [
            {"message_id": f"{request_id}:1", "recipient": "919876543210"},
            {"message_id": f"{request_id}:2", "recipient": "14155550123"},
        ],
        "dlrurl": None,
        "error": {},
    }


@pytest.mark.parametrize(
    ("endpoint", "extra", "echoed"),
    [
        pytest.param("messages", {}, {}, id="messages-no-source"),
        pytest.param("sms", {"flash": 1}, {"flash": 1}, id="flash"),
        pytest.param("sms", {"unicode": "1"}, {"unicode": 1}, id="unicode"),
        pytest.param("sms", {"flash": "0", "unicode": "AUTO"}, {}, id="no-echo-for-0-and-auto"),
    ],
)
def test_send_echoes_flash_unicode_and_source(
    endpoint: str, extra: dict[str, Any], echoed: dict[str, Any]
) -> None:
    """flash=1 and unicode=1 are echoed as 1 (ours); /messages adds no "source" (its page's
    sample has none)."""
    body = payload(send(make_state(), ok_fields(**extra), endpoint=endpoint))
    assert {k: body[k] for k in ("flash", "unicode", "source") if k in body} == echoed


def test_form_body_with_json_template_data_is_accepted() -> None:
    """Form fields work, and template_data may be a JSON string in form mode."""
    fields = {
        "to": A,
        "sender": "KLRHXA",
        "template_id": "1234567890123",
        "template_data": '{"name": "Asha"}',
    }
    response = send(make_state(), fields, form=True)
    assert response.status == 202
    assert payload(response)["body"] is None


def test_repeated_form_to_fields_add_recipients() -> None:
    """A repeated `to` form field adds its numbers to the request."""
    request = Request(
        method="POST",
        path=f"/v1/{DEFAULT_SID}/sms",
        headers={"api-key": DEFAULT_API_KEY, "content-type": "application/x-www-form-urlencoded"},
        body=urlencode(
            [("to", A), ("to", B), ("sender", "KLRHXA"), ("template_id", TEMPLATE_ID)]
        ).encode(),
    )
    assert payload(handle(make_state(), request, NOW))["totalCount"] == 2


def test_to_may_be_a_json_array() -> None:
    """`to` as a JSON array of numbers is the same as the comma-separated string."""
    body = payload(send(make_state(), ok_fields(to=[A, B])))
    assert [d["recipient"] for d in body["data"]] == ["919876543210", "14155550123"]


def test_prefix_is_put_in_front_of_numbers_without_a_country_code() -> None:
    """`prefix` completes national numbers only: a number with "+" or with its country code
    (11-15 digits, the checklist's "918888888888") keeps it; a trunk 0 is dropped."""
    to = "9876543210, +14155550123,919812345678,09811111111,14155550124"
    body = payload(send(make_state(), ok_fields(to=to, prefix="+91")))
    assert [d["recipient"] for d in body["data"]] == [
        "919876543210",
        "14155550123",
        "919812345678",
        "919811111111",
        "14155550124",
    ]


@pytest.mark.parametrize(
    ("pod", "to", "recipient"),
    [
        pytest.param("IN", "9876543210", "919876543210", id="in-domestic-10-digits"),
        pytest.param("IN", "98765432", None, id="in-8-digits"),
        pytest.param("SG", "9876543210", None, id="sg-no-country-code"),
        pytest.param("SG", "919876543210", "919876543210", id="sg-with-country-code"),
        pytest.param("IN", "+9876543210", "9876543210", id="plus-is-a-country-code"),
    ],
)
def test_a_number_without_country_code_or_prefix(pod: str, to: str, recipient: str | None) -> None:
    """Without `prefix`, a 10-digit number on the IN pod is Indian (the checklist: for India the
    country code "may or may not be applied"); anywhere else it is refused (E403), never read
    as "+9876543210"."""
    response = send(make_state(pod=pod), ok_fields(to=to, type="OTP" if pod == "IN" else "DEFAULT"))
    if recipient is None:
        assert (response.status, payload(response)["code"]) == (400, "E403")
        assert "has no country code" in payload(response)["error"]["to"]
    else:
        assert [d["recipient"] for d in payload(response)["data"]] == [recipient]


@pytest.mark.parametrize("digit", ["\u0669", "\u0e59", "\uff19"])
def test_non_ascii_digits_are_not_digits(digit: str) -> None:
    """Arabic-Indic, Thai or full-width digits never pass for a number, template id or time."""
    state = make_state()
    assert send(state, ok_fields(to=f"+91987654321{digit}")).status == 400
    no_body = ok_fields(body=None, template_id=f"12345678901{digit}")
    assert payload(send(state, no_body))["code"] == "E407"
    when = f"2023-11-15T1{digit}:00:00+00:00"
    assert payload(send(state, ok_fields(time=when)))["code"] == "E411"
    assert len(state.ledger_records()) == 0


@pytest.mark.parametrize(
    ("pod", "kind", "status"),
    [
        pytest.param("IN", None, 202, id="IN-default-TXN"),
        pytest.param("IN", "MKT", 202, id="IN-MKT"),
        pytest.param("IN", "DEFAULT", 400, id="IN-rejects-DEFAULT"),
        pytest.param("SG", "DEFAULT", 202, id="SG-DEFAULT"),
        pytest.param("SG", None, 202, id="SG-default-DEFAULT"),
    ],
)
def test_message_types_depend_on_the_pod(pod: str, kind: str | None, status: int) -> None:
    """IN accepts TXN/MKT/OTP (default TXN); other pods also DEFAULT (their default)."""
    fields = {"to": A, "body": "x", "sender": "KLRHXA", "template_id": TEMPLATE_ID}
    fields |= {"type": kind} if kind else {}
    response = send(make_state(pod=pod), fields)
    assert response.status == status
    if status == 202 and kind is None:
        assert payload(response)["type"] == ("TXN" if pod == "IN" else "DEFAULT")


def test_ledger_records_one_entry_per_recipient_in_e164() -> None:
    """Accepted recipients become ledger records with "+", in request order, ids matching data[]."""
    state = make_state()
    response = send(state, ok_fields(template_id="123456789012"))
    assert response.acceptance is not None
    records = state.ledger_records()
    request_id = payload(response)["id"]
    assert [(r.message_id, r.recipient) for r in records] == [
        (f"{request_id}:1", A),
        (f"{request_id}:2", B),
    ]
    assert records[0].to_dict() == {
        "message_id": f"{request_id}:1",
        "request_id": request_id,
        "recipient": A,
        "sender": "KLRHXA",
        "type": "TXN",
        "body": "Hello",
        "template_id": "123456789012",
        "accepted_at": "2023-11-14T22:13:20.000+00:00",
        "fault": None,
    }


def test_ndjson_lines_match_the_records() -> None:
    """The fast NDJSON serialisation gives exactly the records' dicts, one line each."""
    state = make_state()
    response = send(state, ok_fields(body='quote " and \\ and ü'))
    assert response.acceptance is not None
    lines = response.acceptance.ndjson().splitlines()
    assert [orjson.loads(line) for line in lines] == [r.to_dict() for r in state.ledger_records()]


@pytest.mark.parametrize(
    ("pod", "to", "sender", "valid"),
    [
        pytest.param("IN", A, "KLRHXA", True, id="in-dlt-header"),
        pytest.param("IN", A, "klrhxa", True, id="in-dlt-header-lower"),
        pytest.param("IN", A, "919876543210", True, id="in-numeric"),
        pytest.param("IN", A, "+17005550104", True, id="in-two-way-plus"),
        pytest.param("IN", A, "ACME", False, id="in-4-letters"),
        pytest.param("IN", A, "KLRHXAB", False, id="in-7-letters"),
        pytest.param("IN", A, "KLRHX1", False, id="in-letters-and-digit"),
        pytest.param("IN", A, "1" * 16, False, id="in-16-digits"),
        pytest.param("IN", B, "ACME2024", True, id="in-account-abroad-alnum"),
        pytest.param("IN", B, "ABCDEFGHIJKL", False, id="in-account-abroad-12"),
        pytest.param("SG", A, "ACME", True, id="sg-4-letters"),
        pytest.param("SG", A, "ACME2024", True, id="sg-8-alnum"),
        pytest.param("SG", A, "1" * 15, True, id="sg-15-digits"),
        pytest.param("SG", A, "+17005550104", True, id="sg-two-way-plus"),
        pytest.param("SG", A, "ABCDEFGHIJKL", False, id="sg-12-letters"),
        pytest.param("SG", A, "TOO-LONG-NAME", False, id="sg-punctuation"),
    ],
)
def test_sender_shape(pod: str, to: str, sender: str, valid: bool) -> None:
    """To an Indian number from the IN pod an alphabetic sender is a 6-letter DLT header (the
    checklist); anywhere else 1-11 letters/digits (ours); numeric senders, "+" allowed (the
    two-way "+17XXXXXXXX4"), go anywhere; otherwise E415 keyed by "sender"."""
    fields = {"to": to, "body": "x", "sender": sender, "template_id": TEMPLATE_ID}
    response = send(make_state(pod=pod), fields)
    if valid:
        assert response.status == 202
        assert payload(response)["sender"] == sender
    else:
        assert (response.status, payload(response)["code"]) == (400, "E415")
        assert sender in payload(response)["error"]["sender"]


def test_missing_sender_is_refused_outside_india_too() -> None:
    """`sender` is mandatory on every pod (the pages): E418 also where DLT does not bind."""
    for state, to in ((make_state(), B), (make_state(pod="SG"), A)):
        answer = payload(send(state, {"to": to, "body": "x"}))
        assert (answer["code"], answer["error"]) == ("E418", {"sender": "sender is mandatory"})


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        pytest.param({"template_id": None}, "E417", "template_id", id="no-template-id"),
        pytest.param({"template_id": " "}, "E417", "template_id", id="blank-template-id"),
        pytest.param({"sender": None}, "E418", "sender", id="no-sender"),
        pytest.param({"to": f"{B},{A}", "template_id": ""}, "E417", "template_id", id="mixed-to"),
    ],
)
def test_india_dlt_rules_on_the_in_pod(fields: dict[str, Any], code: str, field: str) -> None:
    """From the IN pod to an Indian number, a template id and a sender are mandatory ("For
    Indian customers, it is mandatory to use the Template ID"): the refusal names the rule."""
    state = make_state()
    response = send(state, {k: v for k, v in ok_fields(**fields).items() if v is not None})
    assert (response.status, payload(response)["code"]) == (400, code)
    assert "DLT" in payload(response)["error"][field]
    assert state.ledger_records() == []


def test_body_makes_the_template_moot() -> None:
    """With a body, template_id and template_data are ignored, not checked ("body will have
    priority"): a blank or short template id and long template data are accepted abroad."""
    fields = {"to": B, "sender": "Acme", "body": "x", "template_id": " ",
              "template_data": {"k": "v" * 99}}  # fmt: skip
    assert send(make_state(), fields).status == 202
    assert send(make_state(), {**fields, "template_id": "123"}).status == 202
    assert payload(send(make_state(), {**fields, "body": None}))["code"] == "E406"


def test_seeded_states_issue_the_same_request_ids() -> None:
    """The same seed gives the same request ids, so runs can be compared."""
    ids = [payload(send(make_state(), ok_fields()))["id"] for _ in range(2)]
    assert ids[0] == ids[1]


# -- validation errors -----------------------------------------------------------------------------

LONG = "x" * 4001


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        pytest.param({"body": "x"}, "E402", "to", id="missing-to"),
        pytest.param({"to": "", "body": "x"}, "E402", "to", id="empty-to"),
        pytest.param(
            {"to": ",".join(f"+9198765{i:05d}" for i in range(101)), "body": "x"},
            "E405",
            "to",
            id="101-recipients",
        ),
        pytest.param({"to": "+0123456789", "body": "x"}, "E403", "to", id="leading-zero"),
        pytest.param({"to": f"{A},12345", "body": "x"}, "E403", "to", id="too-short"),
        pytest.param({"to": f"{A},,{B}", "body": "x"}, "E403", "to", id="empty-item"),
        pytest.param({"to": 919876543210, "body": "x"}, "E403", "to", id="to-not-a-string"),
        pytest.param({"to": A, "body": "x", "prefix": "91x"}, "E403", "prefix", id="bad-prefix"),
        pytest.param({"to": f"{A},{B}", "body": "x", "type": "OTP"}, "E404", "time", id="otp-two"),
        pytest.param({"to": A, "body": "x", "type": "BULK"}, "E408", "type", id="unknown-type"),
        pytest.param({"to": A, "template_id": None}, "E406", "body", id="no-body-no-template"),
        pytest.param({"to": A, "body": LONG}, "E401", "body", id="body-4001"),
        pytest.param({"to": A, "template_id": "12345678901"}, "E407", "template_id", id="tpl-11"),
        pytest.param({"to": A, "template_id": "1" * 31}, "E407", "template_id", id="tpl-31"),
        pytest.param({"to": A, "template_id": "12345678901a"}, "E407", "template_id", id="tpl-a"),
        pytest.param(
            {"to": A, "body": "x", "sender": "TOO-LONG-NAME"}, "E415", "sender", id="sndr"
        ),
        pytest.param({"to": A, "body": "x", "unicode": "2"}, "E409", "unicode", id="unicode"),
        pytest.param({"to": A, "body": "x", "flash": "yes"}, "E410", "flash", id="flash"),
        pytest.param(
            {"to": A, "body": "x", "time": "2023-11-15T12:00:00"}, "E411", "time", id="time-no-tz"
        ),
        pytest.param({"to": A, "body": "x", "time": "tomorrow"}, "E411", "time", id="time-text"),
        pytest.param(
            {"to": A, "body": "x", "time": "2023-11-14T22:23:20+00:00"},
            "E412",
            "time",
            id="time-10-min-ahead",
        ),
        pytest.param(
            {"to": A, "body": "x", "time": "2024-02-20T00:00:00+00:00"},
            "E412",
            "time",
            id="time-98-days-ahead",
        ),
        pytest.param(
            {"to": A, "template_id": "123456789012", "template_data": {"v": "y" * 31}},
            "E413",
            "template_data",
            id="template-data-31",
        ),
        pytest.param(
            {"to": A, "template_id": "123456789012", "template_data": ["a"]},
            "E413",
            "template_data",
            id="template-data-list",
        ),
        pytest.param(
            {"to": A, "body": "x", "ref_custom": ["a"] * 6}, "E414", "ref_custom", id="ref-6"
        ),
        pytest.param(
            {"to": A, "body": "x", "ref_custom": ["a" * 51]}, "E414", "ref_custom", id="ref-51"
        ),
        pytest.param(
            {"to": A, "body": "x", "ref_custom": "a,b"}, "E414", "ref_custom", id="ref-string"
        ),
        pytest.param({"to": A, "body": "x", "ref1": "r" * 256}, "E416", "ref1", id="ref1-256"),
        pytest.param({"to": A, "body": 5}, "E400", "body", id="body-not-a-string"),
    ],
)
def test_invalid_send_is_a_400_envelope_and_accepts_nothing(
    fields: dict[str, Any], code: str, field: str
) -> None:
    """Each rule answers 400 with its own code in the send pages' envelope (no "data"; "error"
    maps the field to the message), and nothing reaches the ledger."""
    state = make_state()
    response = send(state, {"sender": "KLRHXA", "template_id": TEMPLATE_ID, **fields})
    assert response.status == 400
    body = payload(response)
    assert body == {"code": code, "message": body["message"], "error": {field: body["message"]}}
    assert response.acceptance is None
    assert state.ledger_records() == []
    assert state.stats.by_status == {"400": 1}


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        pytest.param({"to": A, "body": "x" * 4000}, 202, id="body-4000"),
        pytest.param(
            {"to": ",".join(f"+9198765{i:05d}" for i in range(100)), "body": "x"},
            202,
            id="100-recipients",
        ),
        pytest.param({"to": A, "template_id": "1" * 30}, 202, id="template-30-digits"),
        pytest.param({"to": A, "template_id": 123456789012}, 202, id="template-id-as-number"),
        pytest.param(
            {"to": A, "template_id": "123456789012", "template_data": {"v": "y" * 30}},
            202,
            id="template-data-30",
        ),
        pytest.param(
            {"to": A, "body": "x", "time": "2023-11-14T22:28:20+00:00"}, 202, id="time-15-min-ahead"
        ),
        pytest.param(
            {"to": A, "body": "x", "time": "2023-11-16T03:43:20+05:30"}, 202, id="time-with-offset"
        ),
        pytest.param({"to": A, "body": "x", "ref_custom": ["a" * 50] * 5}, 202, id="ref-5x50"),
        pytest.param(
            {"to": A, "body": "x", "ref": "r" * 255, "ref1": "s" * 255, "ref2": "t" * 255},
            202,
            id="refs-255",
        ),
        pytest.param(
            {"to": A, "body": "x", "time": "2023-11-15T00:00:00.250Z"}, 202, id="time-z-fraction"
        ),
        pytest.param({"to": A, "body": "x", "type": "OTP"}, 202, id="otp-one"),
        pytest.param({"to": A, "body": "x", "flash": True}, 202, id="flash-true"),
    ],
)
def test_boundary_values_are_accepted(fields: dict[str, Any], status: int) -> None:
    """Values exactly at a documented limit pass."""
    response = send(make_state(), {"sender": "KLRHXA", "template_id": TEMPLATE_ID, **fields})
    assert response.status == status


#: 2023-11-30T00:00Z: three calendar months on is 2024-02-29 (clamped), 91 days, not 92.
END_OF_NOVEMBER = 1_701_302_400.0


@pytest.mark.parametrize(
    ("time", "status"),
    [
        pytest.param("2024-02-29T00:00:00+00:00", 202, id="3-calendar-months"),
        pytest.param("2024-02-29T00:00:00Z", 202, id="z-suffix"),
        pytest.param("2024-02-29T00:00:01+00:00", 400, id="a-second-later"),
        pytest.param("2024-03-01T00:00:00+00:00", 400, id="92-days"),
    ],
)
def test_schedule_window_is_three_calendar_months(time: str, status: int) -> None:
    """`time` may be at most 3 calendar months ahead, clamped to the month's last day."""
    response = send(make_state(), ok_fields(time=time), now=END_OF_NOVEMBER)
    assert response.status == status
    if status == 400:
        assert payload(response)["code"] == "E412"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        pytest.param(b"{not json", "application/json", 400, id="bad-json"),
        pytest.param(b"[1, 2]", "application/json", 400, id="json-array"),
        pytest.param(b"to=1", "text/plain", 415, id="text-plain"),
        pytest.param(b"to=\xff", "application/x-www-form-urlencoded", 400, id="form-not-utf8"),
    ],
)
def test_unreadable_bodies_are_e400(body: bytes, content_type: str, status: int) -> None:
    """A body that is not a JSON object or UTF-8 form data is refused with E400."""
    headers = {"api-key": DEFAULT_API_KEY, "content-type": content_type}
    request = Request(method="POST", path=f"/v1/{DEFAULT_SID}/sms", headers=headers, body=body)
    response = handle(make_state(), request, NOW)
    assert (response.status, payload(response)["code"]) == (status, "E400")
