"""The sandbox's sender-ID API and its control surface (reset, stats, ledger); requests, the
rate limit, faults and the status API are in test_sandbox_handler.py.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from kaleyra_async.sandbox import DEFAULT_SID, FaultSpec, SandboxConfig
from kaleyra_async.sandbox._state import SandboxState
from tests.conftest import NOW, A, B, call, make_state, ok_fields, payload, send
from tests.test_sandbox_handler import status_of

# -- sender IDs ------------------------------------------------------------------------------------

SENDER_PATH = f"/v1/{DEFAULT_SID}/sms/sender"


def sender_item(name: str, **extra: Any) -> dict[str, Any]:
    item = {"sender": name, "description": "d", "iso_code": "in", "entity_id": "123456789012"}
    return {k: v for k, v in {**item, **extra}.items() if v is not None}


def test_create_senders_answers_msg106_as_the_page_shows() -> None:
    """Valid sender IDs are created: 200 MSG106 with one {id, status, sender, message, code}
    item each and the page's "submitted and will be verified" text."""
    state = make_state()
    items = [sender_item("ADPAIX"), sender_item("Acme2024", iso_code="gb", entity_id=None)]
    response = call(state, "POST", SENDER_PATH, body={"data": items})
    assert response.status == 200
    text = "Your Sender ID is submitted and will be verified by a Kaleyra Support Team member."
    body = payload(response)
    ids = [item["id"] for item in body["data"]]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 2
    assert body == {
        "code": "MSG106",
        "message": text,
        "data": [
            {"id": ids[0], "status": "1", "sender": "ADPAIX", "message": text, "code": "MSG106"},
            {"id": ids[1], "status": "1", "sender": "Acme2024", "message": text, "code": "MSG106"},
        ],
        "error": {},
    }


def test_create_senders_is_all_or_nothing_with_reasons() -> None:
    """One bad item fails the call with MSG134, whose error maps each bad item's index to
    {"<field>": "<reason>", "sender_name": ...} as the page shows; nothing is created."""
    state = make_state()
    assert call(state, "POST", SENDER_PATH, body={"data": [sender_item("TAKENX")]}).status == 200
    items = [
        sender_item("GOODXX"),
        sender_item("ABCF992"),
        sender_item("takenx"),
        sender_item("ISOBAD", iso_code="ind"),
        sender_item("ENTBAD", entity_id="12"),
        "not-an-object",
        sender_item("DUPDUP"),
        sender_item("DUPDUP"),
        sender_item("NODESC", description=" "),
        sender_item("NOENTY", entity_id=None),
    ]
    response = call(state, "POST", SENDER_PATH, body={"data": items})
    body = payload(response)
    assert (response.status, body["code"], body["message"], body["data"]) == (
        400,
        "MSG134",
        "Sender IDs not created",
        [],
    )
    assert body["error"] == {
        "1": {
            "sender": "Sender ID has to be registered and it can only be 6 character",
            "sender_name": "ABCF992",
        },
        "2": {"sender": "Sender ID Already exist.", "sender_name": "takenx"},
        "3": {
            "iso_code": "iso_code 'ind' is not a valid two-letter ISO code",
            "sender_name": "ISOBAD",
        },
        "4": {"entity_id": "entity_id '12' is not 12 to 30 digits", "sender_name": "ENTBAD"},
        "5": {"data": "each item must be an object", "sender_name": None},
        "7": {"sender": "Sender ID Already exist.", "sender_name": "DUPDUP"},
        "8": {"description": "description is mandatory", "sender_name": "NODESC"},
        "9": {
            "entity_id": "entity_id is mandatory for India (the DLT entity id)",
            "sender_name": "NOENTY",
        },
    }
    # GOODXX was not created: creating it now succeeds.
    assert call(state, "POST", SENDER_PATH, body={"data": [sender_item("GOODXX")]}).status == 200


@pytest.mark.parametrize(
    ("sender", "iso_code", "valid"),
    [
        pytest.param("ADPAIX", "in", True, id="in-6-letters"),
        pytest.param("adpaix", "IN", True, id="in-lower-case"),
        pytest.param("123456", "in", True, id="in-6-digits"),
        pytest.param("ABCF01", "in", True, id="in-mixed-as-the-page"),
        pytest.param("ADPAI", "in", False, id="in-5-letters"),
        pytest.param("ADPAIXX", "in", False, id="in-7-letters"),
        pytest.param("A", "gb", True, id="gb-1-letter"),
        pytest.param("ACME2024", "gb", True, id="gb-8-alnum"),
        pytest.param("ABCDEFGHIJK", "gb", True, id="gb-11-letters"),
        pytest.param("ABCDEFGHIJKL", "gb", False, id="gb-12-letters"),
        pytest.param("1" * 15, "sg", True, id="sg-15-digits"),
        pytest.param("+17005550104", "us", True, id="us-two-way-plus"),
        pytest.param("1" * 16, "sg", False, id="sg-16-digits"),
        pytest.param("ACME-1", "sg", False, id="sg-hyphen"),
    ],
)
def test_sender_id_shape_depends_on_the_country(sender: str, iso_code: str, valid: bool) -> None:
    """India takes exactly 6 characters, letters or digits (the page's own "ABCF01"); elsewhere
    1-11 letters/digits or a numeric sender."""
    item = sender_item(sender, iso_code=iso_code)
    response = call(make_state(), "POST", SENDER_PATH, body={"data": [item]})
    assert (response.status, payload(response)["code"]) == (
        (200, "MSG106") if valid else (400, "MSG134")
    )


@pytest.mark.parametrize(
    ("method", "body", "code"),
    [
        pytest.param(
            "POST",
            {"data": [sender_item(f"{i:06d}") for i in range(5001)]},
            "RBC192",
            id="create-5001",
        ),
        pytest.param("POST", {"data": []}, "E400", id="create-empty"),
        pytest.param("POST", [1], "E400", id="create-not-object"),
        pytest.param(
            "DELETE", {"sender": [f"S{i:05d}" for i in range(101)]}, "RBC192", id="delete-101"
        ),
        pytest.param("DELETE", {"sender": []}, "E400", id="delete-empty"),
        pytest.param("DELETE", {"sender": ["NOSUCH"]}, "MSG134", id="delete-unknown"),
    ],
)
def test_sender_call_errors(method: str, body: Any, code: str) -> None:
    """Too many items is RBC192, a malformed body E400, deleting an unknown sender MSG134; the
    sender pages' envelope carries "data": [] and a keyed "error" object."""
    response = call(make_state(), method, SENDER_PATH, body=body)
    assert (response.status, payload(response)["code"]) == (400, code)
    assert payload(response)["data"] == []
    assert isinstance(payload(response)["error"], dict)


def test_create_5000_senders_is_allowed() -> None:
    """Exactly 5000 sender IDs per create call pass."""
    items = [sender_item(f"{i:06d}") for i in range(5000)]
    assert call(make_state(), "POST", SENDER_PATH, body={"data": items}).status == 200


def test_delete_senders_answers_msg108_exactly() -> None:
    """Deleting known senders answers 200 with Kaleyra's documented MSG108 body."""
    state = make_state()
    call(state, "POST", SENDER_PATH, body={"data": [sender_item("ADPAIX"), sender_item("JSONSX")]})
    response = call(
        state, "DELETE", f"/v1/{DEFAULT_SID}/messages/sender", body={"sender": ["ADPAIX", "JSONSX"]}
    )
    assert response.status == 200
    assert payload(response) == {
        "code": "MSG108",
        "message": "Sender ID(s) deleted successfully",
        "data": [],
        "error": {},
    }
    again = call(state, "DELETE", SENDER_PATH, body={"sender": ["ADPAIX"]})
    assert payload(again)["code"] == "MSG134"


# -- control surface -------------------------------------------------------------------------------


def test_stats_counts_statuses_recipients_and_the_busiest_second() -> None:
    """GET /_sandbox/stats reports totals, per-status counts, recipients and the sliding max."""
    state = make_state()
    for offset in (0.0, 0.5, 0.9, 1.5, 2.6):
        send(state, ok_fields(), now=NOW + offset)
    send(state, {"to": A}, now=NOW + 3.0)
    stats = payload(call(state, "GET", "/_sandbox/stats"))
    assert stats["requests_total"] == 6
    assert stats["by_status"] == {"202": 5, "400": 1}
    assert (stats["accepted_requests"], stats["accepted_recipients"]) == (5, 10)
    assert stats["max_requests_in_1s"] == 3
    assert stats["mean_rate_per_s"] == pytest.approx(5 / 3.0)
    assert stats["tightest_span_s"] is None  # no rate limit: nothing to measure against


def test_stats_say_how_close_the_arrivals_came_to_the_rate() -> None:
    """With a rate of 2/s, ``tightest_span_s`` is the shortest time 3 requests arrived in
    (counted at arrival, 429s too): over 1 s while the limit held, under it once it did not."""
    state = make_state(rate_per_s=2)
    send(state, ok_fields(), now=NOW)
    send(state, ok_fields(), now=NOW + 0.6)
    assert payload(call(state, "GET", "/_sandbox/stats"))["tightest_span_s"] is None
    for offset in (1.1, 1.7, 2.25):  # spans of the last three: 1.1, 1.1, 1.15
        send(state, ok_fields(), now=NOW + offset)
    assert payload(call(state, "GET", "/_sandbox/stats"))["tightest_span_s"] == pytest.approx(1.1)
    send(state, ok_fields(), now=NOW + 2.5)  # 1.7 .. 2.5: three in 0.8 s (the third a 429)
    stats = payload(call(state, "GET", "/_sandbox/stats"))
    assert stats["tightest_span_s"] == pytest.approx(0.8)
    assert stats["by_status"].get("429") == 1


def test_stats_name_the_silence_before_the_tightest_span() -> None:
    """``silence_before_tightest_s`` is the gap before the tightest span's first arrival: a
    bunch released after a stall shows as a long one."""
    state = make_state(rate_per_s=2)
    for offset in (0.0, 0.5, 1.6):  # the first span (1.6 s) began with the first arrival
        send(state, ok_fields(), now=NOW + offset)
    stats = payload(call(state, "GET", "/_sandbox/stats"))
    assert stats["tightest_span_s"] == pytest.approx(1.6, abs=1e-6)
    assert stats["silence_before_tightest_s"] is None
    for offset in (1.7, 2.3):  # spans 1.2 (0.5..1.7), then 0.7 (1.6..2.3) after 1.1 s of silence
        send(state, ok_fields(), now=NOW + offset)
    stats = payload(call(state, "GET", "/_sandbox/stats"))
    assert stats["tightest_span_s"] == pytest.approx(0.7, abs=1e-6)
    assert stats["silence_before_tightest_s"] == pytest.approx(1.1, abs=1e-6)
    send(state, ok_fields(), now=NOW + 3.5)  # a wider span: the tightest and its silence stay
    stats = payload(call(state, "GET", "/_sandbox/stats"))
    assert stats["silence_before_tightest_s"] == pytest.approx(1.1, abs=1e-6)


def test_control_calls_are_not_counted() -> None:
    """Requests to /_sandbox/ do not show up in the stats."""
    state = make_state()
    call(state, "GET", "/_sandbox/stats")
    assert state.stats.requests_total == 0


def test_reset_forgets_everything_but_the_config() -> None:
    """POST /_sandbox/reset clears stats, ledger memory, senders and issued ids."""
    state = make_state()
    message_id = payload(send(state, ok_fields()))["data"][0]["message_id"]
    call(state, "POST", SENDER_PATH, body={"data": [sender_item("ADPAIX")]})
    assert payload(call(state, "POST", "/_sandbox/reset")) == {"reset": True}
    assert state.ledger_records() == []
    assert state.stats.requests_total == 0
    assert status_of(state, [message_id], now=NOW)["data"][0]["status"] == "NotFound"
    assert call(state, "POST", SENDER_PATH, body={"data": [sender_item("ADPAIX")]}).status == 200


def test_ledger_endpoint_returns_records_or_409_when_not_kept() -> None:
    """GET /_sandbox/ledger lists records, or 409 E005 when keep_in_memory is off."""
    state = make_state()
    send(state, ok_fields())
    assert [r["recipient"] for r in payload(call(state, "GET", "/_sandbox/ledger"))["records"]] == [
        A,
        B,
    ]
    lean = make_state(keep_in_memory=False)
    assert send(lean, ok_fields()).acceptance is not None
    assert lean.ledger_records() == []
    response = call(lean, "GET", "/_sandbox/ledger")
    assert (response.status, payload(response)["code"]) == (409, "E005")


def test_config_endpoint_never_shows_the_api_key() -> None:
    """GET /_sandbox/config describes the sandbox without its key."""
    state = SandboxState(dataclasses.replace(SandboxConfig(), api_key="s3cret-value"))
    response = call(state, "GET", "/_sandbox/config")
    assert payload(response)["sid"] == DEFAULT_SID
    assert b"s3cret" not in response.body
    assert "s3cret" not in repr(state.config)


def test_fault_draw_uses_one_random_number_per_request() -> None:
    """The fault of request n is FaultSpec.pick of the seed's n-th random number."""
    spec = FaultSpec((("503", 0.5),))
    state = make_state(faults=spec)
    rng = random.Random(7)
    expected = [503 if spec.pick(rng.random()) else 202 for _ in range(20)]
    assert [send(state, ok_fields()).status for _ in range(20)] == expected


def test_reset_replays_the_fault_sequence_but_not_the_request_ids() -> None:
    """After a reset the same faults come again, while request ids stay unique."""
    state = make_state(faults=FaultSpec((("503", 0.5),)))

    def run() -> tuple[list[int], set[str]]:
        responses = [send(state, ok_fields()) for _ in range(20)]
        ids = {payload(r)["id"] for r in responses if r.status == 202}
        return [r.status for r in responses], ids

    first_statuses, first_ids = run()
    call(state, "POST", "/_sandbox/reset")
    second_statuses, second_ids = run()
    assert first_statuses == second_statuses
    assert first_ids.isdisjoint(second_ids)
