"""The sandbox's send route, through the pure handler: the success body, every field rule and its
error code, and the recipients it accepts into the ledger.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from kaleyra_async.sandbox import DEFAULT_API_KEY, DEFAULT_SID, SandboxConfig
from kaleyra_async.sandbox._handler import handle
from kaleyra_async.sandbox._state import SandboxState
from kaleyra_async.sandbox._values import Request, Response

NOW = 1_700_000_000.0
A = "+919876543210"
B = "+14155550123"


def make_state(**overrides: Any) -> SandboxState:
    return SandboxState(SandboxConfig(seed=7, **overrides))


def send(
    state: SandboxState,
    fields: Any,
    *,
    endpoint: str = "sms",
    now: float = NOW,
    form: bool = False,
) -> Response:
    content_type = "application/x-www-form-urlencoded" if form else "application/json"
    headers = {"api-key": DEFAULT_API_KEY, "content-type": content_type}
    body = urlencode(fields).encode() if form else orjson.dumps(fields)
    request = Request(
        method="POST", path=f"/v1/{DEFAULT_SID}/{endpoint}", headers=headers, body=body
    )
    return handle(state, request, now)


def payload(response: Response) -> Any:
    return orjson.loads(response.body)


def ok_fields(**extra: Any) -> dict[str, Any]:
    return {"to": f"{A},{B}", "body": "Hello", "type": "TXN", "sender": "KLRHXA", **extra}


# -- success ---------------------------------------------------------------------------------------


def test_send_success_has_the_documented_messages_shape() -> None:
    """A valid send answers 202 with id, echoes, createdDateTime, totalCount, data, error {}."""
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
        pytest.param("messages", {}, {"source": "API"}, id="messages-adds-source"),
        pytest.param("sms", {"flash": 1}, {"flash": 1}, id="flash"),
        pytest.param("sms", {"unicode": "1"}, {"unicode": 1}, id="unicode"),
        pytest.param("sms", {"flash": "0", "unicode": "AUTO"}, {}, id="no-echo-for-0-and-auto"),
    ],
)
def test_send_echoes_flash_unicode_and_source(
    endpoint: str, extra: dict[str, Any], echoed: dict[str, Any]
) -> None:
    """flash=1 and unicode=1 are echoed as 1; /messages adds "source": "API"."""
    body = payload(send(make_state(), ok_fields(**extra), endpoint=endpoint))
    assert {k: body[k] for k in ("flash", "unicode", "source") if k in body} == echoed


def test_form_body_with_json_template_data_is_accepted() -> None:
    """Form fields work, and template_data may be a JSON string in form mode."""
    fields = {"to": A, "template_id": "1234567890123", "template_data": '{"name": "Asha"}'}
    response = send(make_state(), fields, form=True)
    assert response.status == 202
    assert payload(response)["body"] is None


def test_repeated_form_to_fields_add_recipients() -> None:
    """A repeated `to` form field adds its numbers to the request."""
    request = Request(
        method="POST",
        path=f"/v1/{DEFAULT_SID}/sms",
        headers={"api-key": DEFAULT_API_KEY, "content-type": "application/x-www-form-urlencoded"},
        body=urlencode([("to", A), ("to", B), ("body", "x")]).encode(),
    )
    assert payload(handle(make_state(), request, NOW))["totalCount"] == 2


def test_to_may_be_a_json_array() -> None:
    """`to` as a JSON array of numbers is the same as the comma-separated string."""
    body = payload(send(make_state(), ok_fields(to=[A, B])))
    assert [d["recipient"] for d in body["data"]] == ["919876543210", "14155550123"]


def test_prefix_is_put_in_front_of_numbers_without_plus() -> None:
    """`prefix` completes national numbers; numbers with "+" keep their own country code."""
    body = payload(send(make_state(), ok_fields(to="9876543210, +14155550123", prefix="+91")))
    assert [d["recipient"] for d in body["data"]] == ["919876543210", "14155550123"]


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
    fields = {"to": A, "body": "x"} | ({"type": kind} if kind else {})
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
    ("pod", "sender", "valid"),
    [
        pytest.param("IN", "KLRHXA", True, id="in-dlt-header"),
        pytest.param("IN", "klrhxa", True, id="in-dlt-header-lower"),
        pytest.param("IN", "919876543210", True, id="in-numeric"),
        pytest.param("IN", "ACME", False, id="in-4-letters"),
        pytest.param("IN", "KLRHX1", False, id="in-letters-and-digit"),
        pytest.param("IN", "+919876543210", False, id="in-plus"),
        pytest.param("IN", "1" * 16, False, id="in-16-digits"),
        pytest.param("SG", "ACME", True, id="sg-4-letters"),
        pytest.param("SG", "ACME2024", True, id="sg-8-alnum"),
        pytest.param("SG", "1" * 15, True, id="sg-15-digits"),
        pytest.param("SG", "ABCDEFGHIJKL", False, id="sg-12-letters"),
        pytest.param("SG", "TOO-LONG-NAME", False, id="sg-punctuation"),
    ],
)
def test_sender_shape_depends_on_the_pod(pod: str, sender: str, valid: bool) -> None:
    """IN takes 6 letters or up to 15 digits, other pods 1-11 letters/digits; otherwise E415."""
    response = send(make_state(pod=pod), {"to": A, "body": "x", "sender": sender})
    if valid:
        assert response.status == 202
    else:
        assert (response.status, payload(response)["error"]["code"]) == (400, "E415")
        assert payload(response)["error"]["field"] == "sender"


def test_missing_sender_uses_the_trial_sender() -> None:
    """Without `sender` the request is sent (and echoed) as KLRHXA."""
    assert payload(send(make_state(), {"to": A, "body": "x"}))["sender"] == "KLRHXA"


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
        pytest.param({"to": f"{A},{B}", "body": "x", "type": "OTP"}, "E404", "to", id="otp-two"),
        pytest.param({"to": A, "body": "x", "type": "BULK"}, "E408", "type", id="unknown-type"),
        pytest.param({"to": A}, "E406", "body", id="no-body-no-template"),
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
        pytest.param({"to": A, "body": "x", "ref1": "r" * 151}, "E416", "ref1", id="ref1-151"),
        pytest.param({"to": A, "body": 5}, "E400", "body", id="body-not-a-string"),
    ],
)
def test_invalid_send_is_a_400_envelope_and_accepts_nothing(
    fields: dict[str, Any], code: str, field: str
) -> None:
    """Each rule answers 400 with its own code in the envelope, and nothing reaches the ledger."""
    state = make_state()
    response = send(state, fields)
    assert response.status == 400
    body = payload(response)
    assert body == {
        "code": code,
        "message": body["message"],
        "data": [],
        "error": {"code": code, "message": body["message"], "field": field},
    }
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
            {"to": A, "body": "x", "time": "2023-11-14T22:28:20+00:00"}, 202, id="time-15-min-ahead"
        ),
        pytest.param(
            {"to": A, "body": "x", "time": "2023-11-16T03:43:20+05:30"}, 202, id="time-with-offset"
        ),
        pytest.param({"to": A, "body": "x", "ref_custom": ["a" * 50] * 5}, 202, id="ref-5x50"),
        pytest.param({"to": A, "body": "x", "ref_custom": "a,b"}, 202, id="ref-comma-string"),
        pytest.param({"to": A, "body": "x", "type": "OTP"}, 202, id="otp-one"),
        pytest.param({"to": A, "body": "x", "flash": True}, 202, id="flash-true"),
    ],
)
def test_boundary_values_are_accepted(fields: dict[str, Any], status: int) -> None:
    """Values exactly at a documented limit pass."""
    assert send(make_state(), fields).status == status


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
    response = send(make_state(), {"to": A, "body": "x", "time": time}, now=END_OF_NOVEMBER)
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
