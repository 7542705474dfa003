"""Golden tests for the client: from each sample request on Kaleyra's pages, the client builds the
same request from the same inputs; each sample response parses into the right result or error.

The samples are ``tests/data/kaleyra_pages/samples.json`` (verbatim), read by ``tests/pages.py``
with the same placeholder filling as the sandbox's golden tests. Where the client's request
differs from a sample, the difference is listed here and in the README ("what the spec leaves
open"):

* ``unicode``: the client sends ``"AUTO"`` for the page's ``"Auto"`` (one spelling of the
  documented values);
* ``prefix``: never sent; the client puts the country code on every number itself (E.164);
* ``to`` is E.164 with its ``+`` (the two-way sample writes ``196...56``);
* ``/messages`` requests carry ``source: "API"`` (our digest's reading of that endpoint);
* the form samples of "Send OTP SMS" are sent form-encoded with the form content type (the page
  labels them JSON: its mistake); the client's default encoding is JSON, with the same fields;
* the legacy inline ``callback`` object of the two-way sample is not supported (receipts go
  through ``callback_profile_id``);
* the page's own mistakes are mended before comparing (see each test).

A placeholder number ("+91XXXXXXXXXX", "196xxxxxx56") becomes a valid number of its country
(the client checks numbers with phonenumbers; "+915555555555" is not one).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
import pytest

from kaleyra_async import APIError, Message, RejectedError, SenderId
from kaleyra_async._phone import PhoneNormalizer
from kaleyra_async._protocol import WireRequest, build_create_sender_ids, build_send
from kaleyra_async._responses import error_from_response, parse_send, parse_sender_ids
from kaleyra_async._senders import validate_sender_ids
from kaleyra_async._validate import validate_message
from tests.conftest import rejects
from tests.pages import SAMPLES, curl_request, fill, sample_json

#: Ten days before the first page's scheduled time.
JULY_2025: Final = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
#: A valid number for each placeholder number of the pages.
NUMBERS: Final = {"+915555555555": "+919876543210", "19655555556": "12025550156"}


def form_fields(sample_id: str) -> dict[str, str]:
    """The fields of a form sample as the page means them (its ``-d`` values, not what curl's
    unencoded "+" would turn into)."""
    options = re.findall(
        r"""(?:-d|--data-urlencode)\s+(['"])(.*?)\1""", SAMPLES[sample_id]["raw"], re.S
    )
    fields = dict(fill(value).split("=", 1) for _, value in options)
    return {k: NUMBERS.get(v, v) if k == "to" else v for k, v in fields.items()}


def built(message: Message, to: str, *, pod: str, **how: Any) -> WireRequest:
    number = PhoneNormalizer(None)(to)
    return build_send(validate_message(message, pod=pod, now=JULY_2025), [number], **how)


def sent_fields(request: WireRequest) -> dict[str, Any]:
    content_type = dict(request.headers)["Content-Type"]
    if content_type.startswith("application/json"):
        return dict(orjson.loads(request.content))
    return dict(parse_qsl(request.content.decode(), keep_blank_values=True))


# -- requests ------------------------------------------------------------------------------------


def test_first_sms_request_is_the_pages() -> None:
    """001 "Send the First SMS": the same fields from the same inputs, but for the documented
    differences (AUTO, no prefix, source=API) and the page's two mistakes mended (the
    ``"ref_custom: "`` key and its string value; the parameter table says List)."""
    _, _, body = curl_request(SAMPLES["001-first-sms-request"]["raw"])
    page = orjson.loads(body.replace(b'"ref_custom: "', b'"ref_custom": "') + b"}")
    page["ref_custom"] = ["John", "Doe"]
    page["to"] = NUMBERS[page["to"]]
    message = Message(
        body=page["body"],
        sender=page["sender"],
        type=page["type"],
        unicode=page["unicode"],
        flash=page["flash"],
        time=page["time"],
        template_id=page["template_id"],
        template_data=tuple(page["template_data"].items()),
        ref_custom=tuple(page["ref_custom"]),
        callback_profile_id=page["callback_profile_id"],
    )
    request = built(message, page["to"], pod="IN", endpoint="messages")
    assert (request.method, request.path) == ("POST", "/messages")
    ours = sent_fields(request)
    assert ours.pop("source") == "API"
    assert ours.pop("unicode") == "AUTO" and page.pop("unicode") == "Auto"
    assert page.pop("prefix") == "+91"
    assert ours == page


def test_two_way_request_is_the_pages() -> None:
    """001 two-way: a numeric sender, form-encoded, to /messages; the template id the sample
    meant (its line says ``--date-urlencode 'template_id: ...'``), ``to`` with its "+", and no
    inline ``callback``."""
    page = form_fields("001-two-way-request")
    assert page.pop("callback").startswith('{"url"')
    message = Message(body=page["body"], sender=page["sender"], type=page["type"],
                      template_id="101555555012")  # fmt: skip
    request = built(message, "+" + page["to"], pod="IN", endpoint="messages", encoding="form")
    assert dict(request.headers)["Content-Type"] == "application/x-www-form-urlencoded"
    ours = sent_fields(request)
    assert ours.pop("source") == "API"
    assert ours.pop("template_id") == "101555555012"
    assert ours.pop("to") == "+" + page.pop("to")
    assert ours == page


@pytest.mark.parametrize(
    ("sample_id", "pod"), [("003-otp-request", "SG"), ("003-otp-request-india", "IN")]
)
def test_otp_requests_are_the_pages(sample_id: str, pod: str) -> None:
    """003 "Send OTP SMS", both samples: the same fields to /sms, form-encoded under the form
    content type (the page's curl labels them JSON)."""
    page = form_fields(sample_id)
    message = Message(body=page["body"], sender=page["sender"], type=page["type"],
                      template_id=page.get("template_id"),
                      callback_profile_id=page["callback_profile_id"])  # fmt: skip
    request = built(message, page["to"], pod=pod, encoding="form")
    assert (request.method, request.path) == ("POST", "/sms")
    assert sent_fields(request) == page
    as_json = built(message, page["to"], pod=pod)
    assert sent_fields(as_json) == page


def test_create_sender_request_is_the_pages() -> None:
    """002 "Create Sender ID": the same ``data`` items to the same path (its legacy
    ``/messages/sender``; ``/sms/sender`` by default). The page's trailing commas are mended;
    its 5-letter "ADPAI" is refused by the client before the network, with the reason the
    page's MSG134 gives ("it can only be 6 character")."""
    _, _, body = curl_request(SAMPLES["002-create-sender-request"]["raw"])
    page = orjson.loads(re.sub(rb",\s*}", b"}", body))
    items = [SenderId(**item) for item in page["data"]]
    request = build_create_sender_ids(items, endpoint="messages")
    assert (request.method, request.path) == ("POST", "/messages/sender")
    assert orjson.loads(request.content) == page
    error = rejects(lambda: validate_sender_ids(items), "senders[0].sender", "format")
    assert "6 letters and digits" in str(error)
    assert validate_sender_ids(items[1:]) == items[1:]


# -- responses -----------------------------------------------------------------------------------


def raw(sample_id: str) -> bytes:
    return SAMPLES[sample_id]["raw"].encode()


@pytest.mark.parametrize(
    "sample_id", ["001-first-sms-success", "003-otp-success", "003-otp-success-india"]
)
def test_send_success_samples_parse(sample_id: str) -> None:
    """Each 202 sample is a SendResult with one receipt per data[] entry."""
    page = sample_json(sample_id)
    result = parse_send(SAMPLES[sample_id]["status"], {}, raw(sample_id), pod="IN")
    assert result.request_id == page["id"]
    assert [(r.message_id, r.recipient.lstrip("+")) for r in result.receipts] == [
        (d["message_id"], d["recipient"].lstrip("+")) for d in page["data"]
    ]
    assert (result.sender, result.type, result.body) == (page["sender"], page["type"],
                                                        page["body"])  # fmt: skip


def test_msg106_sample_parses() -> None:
    """002's MSG106 sample, its opening brace and the quotes of its ids restored: the created
    sender names."""
    text = "{" + SAMPLES["002-msg106-success"]["raw"]
    text = re.sub(r'"id":\s*([0-9X]+)', r'"id": "\1"', text)
    result = parse_sender_ids(200, {}, text.encode(), pod="IN")
    assert result.code == "MSG106"
    assert result.senders == tuple(item["sender"] for item in orjson.loads(text)["data"])


@pytest.mark.parametrize(
    ("sample_id", "code", "details"),
    [
        ("001-e401-failure", "E401", [("body", "SMS length is exceeding 4000 characters.")]),
        ("003-e404-failure", "E404",
         [("time", "If Type is OTP then only one mobile number is allowed.")]),
        ("002-msg134-failure-1", "MSG134", [("ABCF01", "Sender ID Already exist."),
                                            ("ABCF99", "Sender ID Already exist.")]),
        ("002-msg134-failure-2", "MSG134",
         [("ABCF992", "Sender ID has to be registered and it can only be 6 character"),
          ("ABCF01", "Sender ID Already exist.")]),
        ("002-msg134-case-1", "MSG134", [("TESTEHJJ5", "Sender ID Already exist.")]),
        ("002-rbc192-failure", "RBC192", [("error", "Exceeded max capacity of 5000 senders")]),
    ],
)  # fmt: skip
def test_error_samples_parse_with_their_reasons(
    sample_id: str, code: str, details: list[tuple[str, str]]
) -> None:
    """Each failure sample is a RejectedError with its code and per-item (or per-field)
    reasons: MSG134 names each sender."""
    error = error_from_response(SAMPLES[sample_id]["status"], {}, raw(sample_id), pod="IN")
    assert isinstance(error, RejectedError) and isinstance(error, APIError)
    assert error.kaleyra_code == code
    assert error.message == sample_json(sample_id)["message"]
    assert list(error.details) == details
