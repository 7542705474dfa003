"""Reading a callback request: GET query, JSON or form POST, renamed fields, refusals."""

from __future__ import annotations

import pytest

from kaleyra_async._receipt_fields import ReceiptRefused, receipt_from_request

DOC = (
    "id=r:1&recipient=919999999999&status=Delivered&status_trace=DELIVRD"
    "&timestamp=2025-04-17+18:35:20&ref=run-1"
)


def read(**kwargs: object) -> object:
    base: dict[str, object] = {"method": "GET", "content_type": "", "query": "", "body": b""}
    return receipt_from_request(**{**base, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"query": DOC}, id="GET"),
        pytest.param(
            {
                "method": "POST",
                "content_type": "application/x-www-form-urlencoded",
                "body": DOC.encode(),
            },
            id="form",
        ),
        pytest.param(
            {
                "method": "POST",
                "content_type": "application/json",
                "body": b'{"id":"r:1","recipient":919999999999,"status":"Delivered",'
                b'"status_trace":"DELIVRD","timestamp":"2025-04-17 18:35:20",'
                b'"ref":"run-1"}',
            },
            id="JSON",
        ),
    ],
)
def test_documented_names_in_every_shape(request_kwargs: dict[str, object]) -> None:
    record = read(**request_kwargs)
    assert (
        record.message_id,
        record.recipient,
        record.status,
        record.status_trace,  # type: ignore[attr-defined]
        record.timestamp,
        record.ref,
    ) == (  # type: ignore[attr-defined]
        "r:1",
        "919999999999",
        "Delivered",
        "DELIVRD",
        "2025-04-17 18:35:20",
        "run-1",
    )


def test_renamed_fields() -> None:
    """A profile's own variable names are read through the mapping."""
    record = read(query="msgid=r:2&dlr=UNDELIV", names={"id": "msgid", "status": "dlr"})
    assert (record.message_id, record.status) == ("r:2", "UNDELIV")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        pytest.param({"query": "status=Delivered"}, 422, id="no-id"),
        pytest.param({"query": "id=r:1"}, 422, id="no-status"),
        pytest.param(
            {"method": "POST", "content_type": "application/json", "body": b"{bad"},
            400,
            id="bad-json",
        ),
        pytest.param(
            {"method": "POST", "content_type": "application/json", "body": b"[1]"},
            400,
            id="json-array",
        ),
        pytest.param(
            {"method": "POST", "content_type": "text/xml", "body": b"<x/>"}, 415, id="xml"
        ),
        pytest.param(
            {"method": "POST", "content_type": "application/json", "body": b" " * (64 * 1024 + 1)},
            413,
            id="oversized",
        ),
        pytest.param({"method": "DELETE"}, 405, id="method"),
        pytest.param({"query": "id=" + "x" * 2000 + "&status=Sent"}, 422, id="long-value"),
        pytest.param(
            {
                "method": "POST",
                "content_type": "application/x-www-form-urlencoded",
                "body": b"id=%ff&status=Sent",
            },
            400,
            id="bad-utf8",
        ),
    ],
)
def test_refusals(request_kwargs: dict[str, object], status: int) -> None:
    with pytest.raises(ReceiptRefused) as info:
        read(**request_kwargs)
    assert info.value.status == status


def test_a_query_with_raw_non_ascii_is_read_or_refused_never_a_crash() -> None:
    """Raw UTF-8 in a query is read; undecodable bytes (as surrogates) are a 400."""
    record = read(query="id=r:€&status=Sent")
    assert record.message_id == "r:€"  # type: ignore[attr-defined]
    with pytest.raises(ReceiptRefused) as info:
        read(query="id=r:\udcff&status=Sent")
    assert info.value.status == 400
