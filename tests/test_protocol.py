"""The wire format, requests side: golden request bodies for every endpoint."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest

from kaleyra_async._models import Message, SenderId
from kaleyra_async._protocol import (
    WireRequest,
    build_create_sender_ids,
    build_delete_sender_ids,
    build_send,
    build_status,
)

JSON_CT = (("Content-Type", "application/json"),)
FORM_CT = (("Content-Type", "application/x-www-form-urlencoded"),)

FULL = Message(
    body="Your code is 1234",
    sender="KLRHXA",
    type="TXN",
    template_id="1107161234567890123",
    template_data=(("name", "Asha"), ("code", "1234")),
    unicode="AUTO",
    flash=True,
    time="2030-07-13T12:58:00+04:30",
    ref_custom=("a", "b"),
    callback_profile_id="IN_09b3dfa7",
)


def body(request: WireRequest) -> Any:
    return json.loads(request.content)


# -- building ----------------------------------------------------------------------------------


def test_send_minimal_json_omits_unset_fields() -> None:
    """Only to, type and the fields that are set go on the wire; flash is left out when false."""
    request = build_send(Message(body="hi"), ["+919876543210", "+14155552671"])
    assert request == WireRequest("POST", "/sms", JSON_CT, request.content)
    assert body(request) == {"to": "+919876543210,+14155552671", "type": "DEFAULT", "body": "hi"}


def test_send_every_field_json() -> None:
    """Every field, with template_data as an object, flash as 1 and ref_custom as an array."""
    request = build_send(FULL, ["+919876543210"])
    assert body(request) == {
        "to": "+919876543210",
        "sender": "KLRHXA",
        "type": "TXN",
        "body": "Your code is 1234",
        "template_id": "1107161234567890123",
        "template_data": {"name": "Asha", "code": "1234"},
        "unicode": "AUTO",
        "flash": "1",
        "time": "2030-07-13T12:58:00+04:30",
        "ref_custom": ["a", "b"],
        "callback_profile_id": "IN_09b3dfa7",
    }


def test_send_every_field_form() -> None:
    """Form mode: template_data as a JSON string, ref_custom repeated, flash as "1"."""
    request = build_send(FULL, ["+919876543210", "+14155552671"], encoding="form")
    assert request.method == "POST"
    assert request.path == "/sms"
    assert request.headers == FORM_CT
    assert urllib.parse.parse_qsl(request.content.decode()) == [
        ("to", "+919876543210,+14155552671"),
        ("sender", "KLRHXA"),
        ("type", "TXN"),
        ("body", "Your code is 1234"),
        ("template_id", "1107161234567890123"),
        ("template_data", '{"name":"Asha","code":"1234"}'),
        ("unicode", "AUTO"),
        ("flash", "1"),
        ("time", "2030-07-13T12:58:00+04:30"),
        ("ref_custom", "a"),
        ("ref_custom", "b"),
        ("callback_profile_id", "IN_09b3dfa7"),
    ]


def test_send_form_encodes_unicode_and_plus() -> None:
    """A "+" and non-ASCII text survive form encoding."""
    request = build_send(Message(body="नमस्ते & 50%"), ["+919876543210"], encoding="form")
    fields = dict(urllib.parse.parse_qsl(request.content.decode()))
    assert fields["to"] == "+919876543210"
    assert fields["body"] == "नमस्ते & 50%"


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_send_messages_endpoint_adds_source(encoding: Any) -> None:
    """The legacy /messages variant posts to /messages with source=API."""
    request = build_send(
        Message(body="hi"), ["+919876543210"], endpoint="messages", encoding=encoding
    )
    assert request.path == "/messages"
    if encoding == "json":
        assert body(request)["source"] == "API"
    else:
        assert ("source", "API") in urllib.parse.parse_qsl(request.content.decode())


def test_create_sender_ids_body() -> None:
    """POST /sms/sender with a data[] of sender, description, iso_code and entity_id."""
    request = build_create_sender_ids(
        [SenderId("ADPAI", "alerts", "in", "123456789012"), SenderId("JSONSE")]
    )
    assert (request.method, request.path, request.headers) == ("POST", "/sms/sender", JSON_CT)
    assert body(request) == {
        "data": [
            {
                "sender": "ADPAI",
                "description": "alerts",
                "iso_code": "in",
                "entity_id": "123456789012",
            },
            {"sender": "JSONSE", "description": "", "iso_code": "in"},
        ]
    }


def test_sender_ids_legacy_endpoint() -> None:
    """endpoint="messages" targets /messages/sender."""
    assert build_create_sender_ids([SenderId("A")], endpoint="messages").path == "/messages/sender"
    assert build_delete_sender_ids(["A"], endpoint="messages").path == "/messages/sender"


def test_delete_sender_ids_body() -> None:
    """DELETE /sms/sender with {"sender": [...]}."""
    request = build_delete_sender_ids(["ADPAI", "JSONSEND"])
    assert (request.method, request.path, request.headers) == ("DELETE", "/sms/sender", JSON_CT)
    assert body(request) == {"sender": ["ADPAI", "JSONSEND"]}


@pytest.mark.parametrize(
    ("legacy", "path"),
    [
        pytest.param(False, "/sms/status", id="new"),
        pytest.param(True, "/messages/status", id="legacy"),
    ],
)
def test_status_request(legacy: bool, path: str) -> None:
    """GET with comma-joined message_ids and the required Content-Type: application/json."""
    request = build_status(["abc:1", "abc:2"], legacy=legacy)
    assert request == WireRequest("GET", f"{path}?message_ids=abc%3A1%2Cabc%3A2", JSON_CT, b"")


def test_requests_never_carry_an_api_key() -> None:
    """The api-key header is the client's business: no builder adds it."""
    for request in (
        build_send(FULL, ["+919876543210"]),
        build_create_sender_ids([SenderId("A")]),
        build_delete_sender_ids(["A"]),
        build_status(["x"]),
    ):
        assert all(name.lower() != "api-key" for name, _ in request.headers)
