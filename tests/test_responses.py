"""The wire format, answers side: how every documented and odd response shape is read."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from kaleyra_async._exceptions import (
    APIError,
    AuthenticationError,
    RateLimitError,
    RejectedError,
    ServerError,
)
from kaleyra_async._models import MessageStatus, Receipt
from kaleyra_async._responses import (
    error_from_response,
    parse_retry_after,
    parse_send,
    parse_sender_ids,
    parse_status,
)

# -- parsing successes -------------------------------------------------------------------------

MESSAGES_202 = {
    "id": "ee8a-9b717",
    "sender": "KLRHXA",
    "type": "DEFAULT",
    "body": "Hello! This is my first SMS.",
    "createdDateTime": "2019-11-04 10:42:23+00:00",
    "totalCount": 3,
    "data": [
        {"message_id": "ee8a-9b717:1", "recipient": "919876543210"},
        {"message_id": "ee8a-9b717:2", "recipient": "14155552671"},
        {"message_id": "ee8a-9b717:3", "recipient": "+447911123456"},
    ],
    "dlrurl": None,
    "error": {},
}


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_parse_send_documented_response() -> None:
    """The documented /messages 202 body: receipts get their "+" back, fields are read."""
    result = parse_send(202, {}, encode(MESSAGES_202), pod="IN")
    assert result.request_id == "ee8a-9b717"
    assert result.receipts == (
        Receipt("ee8a-9b717:1", "+919876543210"),
        Receipt("ee8a-9b717:2", "+14155552671"),
        Receipt("ee8a-9b717:3", "+447911123456"),
    )
    assert (result.sender, result.type, result.total_count) == ("KLRHXA", "DEFAULT", 3)
    assert result.created == "2019-11-04 10:42:23+00:00"
    assert result.attempts == 1
    assert result.raw["dlrurl"] is None


@pytest.mark.parametrize(
    "error",
    [
        pytest.param({}, id="empty-object"),
        pytest.param([], id="empty-list"),
        pytest.param(None, id="null"),
    ],
)
def test_parse_send_accepts_any_empty_error(error: Any) -> None:
    """`error` that is {}, [] or null means success; a missing one too."""
    payload = {**MESSAGES_202, "error": error}
    assert parse_send(200, {}, encode(payload), pod=None).request_id == "ee8a-9b717"
    del payload["error"]
    assert parse_send(200, {}, encode(payload), pod=None).request_id == "ee8a-9b717"


def test_parse_send_without_data_has_no_receipts() -> None:
    """An accepted body without data[] (undocumented /sms shape) gives no receipts, no crash."""
    result = parse_send(202, {}, b'{"id": "r1", "error": {}}', pod=None)
    assert result.receipts == ()
    assert result.total_count == 0


def test_parse_sender_ids_success() -> None:
    """MSG108: code and message are kept; senders listed when data names them."""
    result = parse_sender_ids(
        200,
        {},
        b'{"code":"MSG108","message":"Sender ID(s) deleted successfully","data":[],"error":{}}',
        pod="IN",
    )
    assert (result.code, result.message, result.senders) == (
        "MSG108",
        "Sender ID(s) deleted successfully",
        (),
    )
    created = parse_sender_ids(
        200,
        {},
        encode(
            {
                "code": "MSG106",
                "message": "ok",
                "data": [{"sender": "ADPAI"}, "JSONSE"],
                "error": {},
            }
        ),
        pod="IN",
    )
    assert created.senders == ("ADPAI", "JSONSE")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            {
                "data": [
                    {"campaign_id": "507-1:1", "status": "Delivered", "status_details": "DELIVERED"}
                ],
                "error": {},
            },
            [MessageStatus(message_id="507-1:1", status="Delivered", detail="DELIVERED")],
            id="legacy-campaign-id",
        ),
        pytest.param(
            {
                "data": [
                    {"message_id": "507-1:2", "status": "NotSent", "status_trace": "KLR-INV-NUMBER"}
                ]
            },
            [MessageStatus(message_id="507-1:2", status="NotSent", detail="KLR-INV-NUMBER")],
            id="message-id-and-trace",
        ),
        pytest.param(
            {"data": {"message_id": "x:1", "status": "Sent"}},
            [MessageStatus(message_id="x:1", status="Sent")],
            id="single-object",
        ),
        pytest.param(
            {"data": {"x:1": {"status": "Delivered"}, "x:2": {"status": "UnDelivered"}}},
            [
                MessageStatus(message_id="x:1", status="Delivered"),
                MessageStatus(message_id="x:2", status="UnDelivered"),
            ],
            id="keyed-by-id",
        ),
        pytest.param({"data": []}, [], id="empty"),
    ],
)
def test_parse_status_shapes(payload: Any, expected: list[MessageStatus]) -> None:
    """Both the documented legacy shape and plausible /sms/status shapes are read."""
    assert parse_status(200, {}, encode(payload), pod="IN") == expected


# -- parsing errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "payload", "cls", "code", "message"),
    [
        pytest.param(
            400,
            {"code": "E401", "message": "Body exceeds 4000 characters", "data": [], "error": {}},
            RejectedError,
            "E401",
            "Body exceeds 4000 characters",
            id="E401",
        ),
        pytest.param(
            400,
            {"code": "E404", "message": "Only one recipient is allowed", "data": [], "error": {}},
            RejectedError,
            "E404",
            "Only one recipient is allowed",
            id="E404",
        ),
        pytest.param(
            404,
            {
                "code": "RBC302",
                "message": "No profile exists with this id",
                "data": [],
                "status": 404,
                "error": [{"params": "id"}],
            },
            RejectedError,
            "RBC302",
            "No profile exists with this id",
            id="RBC302-params-list",
        ),
        pytest.param(
            200,
            {"id": "r1", "data": [], "error": {"message": "Invalid sender"}},
            ServerError,  # a 2xx took the request: with no ids, its fate is unknown
            None,
            "Invalid sender",
            id="2xx-with-error-message",
        ),
        pytest.param(
            202,
            {"error": {"code": "E110", "message": "Template mismatch"}},
            ServerError,
            "E110",
            "Template mismatch",
            id="2xx-error-with-code",
        ),
        pytest.param(
            401,
            {"code": "E100", "message": "Invalid API key", "error": {}},
            AuthenticationError,
            "E100",
            "Invalid API key",
            id="401",
        ),
        pytest.param(403, {}, AuthenticationError, None, "Forbidden", id="403-empty-envelope"),
        pytest.param(500, {"message": "oops"}, ServerError, None, "oops", id="500"),
        pytest.param(503, {}, ServerError, None, "Service Unavailable", id="503"),
        pytest.param(422, {"error": "bad to"}, RejectedError, None, "bad to", id="error-as-string"),
    ],
)
def test_error_envelopes_classify(
    status: int, payload: Any, cls: type[APIError], code: str | None, message: str
) -> None:
    """Each envelope maps to the right class with Kaleyra's code and message."""
    with pytest.raises(cls) as info:
        parse_send(status, {}, encode(payload), pod="IN")
    exc = info.value
    assert type(exc) is cls
    assert (exc.status_code, exc.kaleyra_code, exc.message, exc.pod) == (
        status,
        code,
        message,
        "IN",
    )
    assert str(exc).startswith(f"HTTP {status}")


def test_msg134_per_item_reasons_go_to_details() -> None:
    """MSG134: one (sender, reason) per refused sender ID."""
    payload = {
        "code": "MSG134",
        "message": "Some sender IDs could not be created",
        "data": [],
        "error": [
            {"sender": "ADPAI", "message": "already exists"},
            {"sender": "X", "message": "must be 6 characters"},
        ],
    }
    exc = error_from_response(400, {}, encode(payload), pod="IN")
    assert isinstance(exc, RejectedError)
    assert exc.kaleyra_code == "MSG134"
    assert exc.details == (("ADPAI", "already exists"), ("X", "must be 6 characters"))
    assert exc.body == payload


def test_rbc192_error_dict_map_goes_to_details() -> None:
    """A field-to-reason error object becomes details, and the message falls back to one."""
    payload = {"code": "RBC192", "data": {}, "error": {"entity_id": "is invalid"}}
    exc = error_from_response(400, {}, encode(payload), pod=None)
    assert exc.kaleyra_code == "RBC192"
    assert exc.details == (("entity_id", "is invalid"),)
    assert exc.message == "is invalid"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "7"}, 7.0, id="seconds"),
        pytest.param({"retry-after": "1.5"}, 1.5, id="fraction-lowercase-key"),
        pytest.param({"Retry-After": "-3"}, 0.0, id="negative-clamped"),
        pytest.param(
            {
                "Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT",
                "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            30.0,
            id="http-date-vs-date-header",
        ),
        pytest.param(
            {
                "Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT",
                "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            0.0,
            id="http-date-in-past",
        ),
        pytest.param({"Retry-After": "soon"}, None, id="garbage"),
        pytest.param({"Retry-After": "nan"}, None, id="nan"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After as delta-seconds or HTTP-date, never negative."""
    assert parse_retry_after(headers) == expected


def test_retry_after_http_date_without_date_header_uses_now() -> None:
    """Without a Date header the HTTP-date is measured from the given clock."""
    when = "Wed, 21 Oct 2015 07:28:30 GMT"
    assert parse_retry_after({"Retry-After": when}, now_s=1445412500.0) == 10.0


def test_429_is_a_rate_limit_error_with_retry_after() -> None:
    """429 → RateLimitError carrying retry_after_s."""
    exc = error_from_response(429, {"Retry-After": "12"}, b'{"message":"Throttling"}', pod="SG")
    assert isinstance(exc, RateLimitError)
    assert exc.retry_after_s == 12.0
    assert exc.safe_to_retry


@pytest.mark.parametrize(
    ("status", "content", "cls"),
    [
        pytest.param(
            502,
            b"<html><head><title>502 Bad Gateway</title></head>"
            b"<body><h1>Bad\nGateway</h1></body></html>",
            ServerError,
            id="html-502",
        ),
        pytest.param(400, b"\x00\xff\xfe garbage \x07", RejectedError, id="binary-400"),
        pytest.param(504, b"", ServerError, id="empty-504"),
        pytest.param(202, b"OK", ServerError, id="2xx-not-json-fate-unknown"),
        pytest.param(200, b"[1, 2]", ServerError, id="2xx-json-not-object"),
        pytest.param(418, b"x" * 10_000, RejectedError, id="huge-body"),
    ],
)
def test_non_json_bodies_classify_cleanly(status: int, content: bytes, cls: type[APIError]) -> None:
    """HTML, binary, empty and huge bodies give a short, printable, tag-free message."""
    with pytest.raises(cls) as info:
        parse_send(status, {}, content, pod=None)
    exc = info.value
    assert exc.status_code == status
    assert exc.body is None
    assert len(exc.message) <= 200
    assert "<" not in exc.message
    assert exc.message.isprintable()
    assert exc.message


def test_html_snippet_keeps_the_text() -> None:
    """The snippet of an HTML error page keeps its words."""
    exc = error_from_response(502, {}, b"<html><h1>Bad Gateway</h1></html>", pod=None)
    assert exc.message == "Bad Gateway"


def test_unreadable_2xx_is_fate_unknown() -> None:
    """An accepted-looking answer we cannot read must not be retried blindly."""
    exc = error_from_response(202, {}, b"OK", pod=None)
    assert exc.fate_unknown
    assert not exc.safe_to_retry


def test_parse_sender_ids_and_status_raise_on_errors() -> None:
    """All parsers share the one classification."""
    with pytest.raises(AuthenticationError):
        parse_sender_ids(401, {}, b"{}", pod=None)
    with pytest.raises(ServerError):
        parse_status(500, {}, b"", pod=None)


def test_parse_send_tolerates_odd_receipt_items() -> None:
    """Items without a message id are skipped; odd values are stringified; "+" kept once."""
    payload = {
        "id": "r",
        "data": [
            {"message_id": "r:1", "recipient": "+919876543210"},
            {"message_id": 7, "recipient": 14155552671},
            {"recipient": "447911123456"},
            "junk",
            {"message_id": "r:4"},
        ],
        "error": {},
    }
    result = parse_send(202, {}, encode(payload), pod=None)
    assert result.receipts == (
        Receipt("r:1", "+919876543210"),
        Receipt("7", "+14155552671"),
        Receipt("r:4", ""),
    )


def test_2xx_with_error_and_message_ids_is_a_partial_success() -> None:
    """Recipients with an id were accepted: they are receipts, not a failure of everyone."""
    body = {
        "id": "r1",
        "data": [{"message_id": "r1:1", "recipient": "919876543210"}],
        "error": {"code": "E123", "message": "one number was rejected"},
    }
    result = parse_send(202, {}, orjson.dumps(body), pod="IN")
    assert result.message_ids() == {"+919876543210": "r1:1"}


def test_2xx_with_error_and_no_ids_is_fate_unknown() -> None:
    """Never 'failed' (which invites a resend): the 2xx may have sent something."""
    error = error_from_response(200, {}, b'{"error": {"message": "x"}}', pod="IN")
    assert isinstance(error, ServerError)
    assert error.fate_unknown
