"""The sandbox's pure handler around the routes: routing, credentials, the rate limit, latency,
faults, the status and sender-ID routes and the ``/_sandbox/`` control surface, without a socket.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any
from urllib.parse import urlencode

import pytest

from kaleyra_async.sandbox import DEFAULT_API_KEY, DEFAULT_SID, FaultSpec, SandboxConfig
from kaleyra_async.sandbox._state import SandboxState
from tests.conftest import NOW, A, B, call, make_state, ok_fields, payload, send

# -- auth and routing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_key", "sid"),
    [
        pytest.param("wrong-key", DEFAULT_SID, id="wrong-key"),
        pytest.param(None, DEFAULT_SID, id="missing-key"),
        pytest.param(DEFAULT_API_KEY, "HXOTHER0001IN", id="wrong-sid"),
    ],
)
def test_wrong_credentials_are_401_and_never_echo_the_key(api_key: str | None, sid: str) -> None:
    """A wrong or missing api-key, or another SID, answers 401 E100 without the key in the body."""
    state = make_state()
    headers = {"content-type": "application/json"} | ({"api-key": api_key} if api_key else {})
    response = call(state, "POST", f"/v1/{sid}/sms", body=ok_fields(), headers=headers)
    assert (response.status, payload(response)["code"]) == (401, "E100")
    assert b"wrong-key" not in response.body
    assert DEFAULT_API_KEY.encode() not in response.body
    assert state.ledger_records() == []


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("POST", f"/v1/{DEFAULT_SID}/sms/xml", 404, "E001", id="sms-xml"),
        pytest.param("POST", "/v2/x/sms", 404, "E001", id="v2"),
        pytest.param("GET", "/", 404, "E001", id="root"),
        pytest.param("GET", f"/v1/{DEFAULT_SID}/sms", 405, "E002", id="get-send"),
        pytest.param("PUT", f"/v1/{DEFAULT_SID}/sms/sender", 405, "E002", id="put-sender"),
        pytest.param("GET", "/_sandbox/nothing", 404, "E001", id="control-unknown"),
        pytest.param("DELETE", "/_sandbox/stats", 405, "E002", id="control-method"),
    ],
)
def test_unknown_paths_and_methods(method: str, path: str, status: int, code: str) -> None:
    """Unknown paths are 404 E001; known paths with the wrong method are 405 E002."""
    response = call(make_state(), method, path)
    assert (response.status, payload(response)["code"]) == (status, code)


def test_405_lists_the_allowed_methods() -> None:
    """A 405 carries an Allow header."""
    response = call(make_state(), "GET", f"/v1/{DEFAULT_SID}/messages/sender")
    assert ("Allow", "DELETE, POST") in response.headers


# -- rate limit, latency and faults ----------------------------------------------------------------


def test_rate_limit_is_a_strict_sliding_second_with_retry_after() -> None:
    """Rate 2: a third request within a sliding second is 429 E429 with Retry-After."""
    state = make_state(rate_per_s=2)
    assert send(state, ok_fields(), now=NOW).status == 202
    assert send(state, ok_fields(), now=NOW + 0.5).status == 202
    throttled = send(state, ok_fields(), now=NOW + 0.9)
    assert throttled.status == 429
    assert ("Retry-After", "1") in throttled.headers
    assert payload(throttled)["code"] == "E429"
    assert throttled.acceptance is None
    assert send(state, ok_fields(), now=NOW + 1.0).status == 202
    assert send(state, ok_fields(), now=NOW + 1.2).status == 429
    assert send(state, ok_fields(), now=NOW + 1.5).status == 202


def test_latency_delays_every_api_answer() -> None:
    """--latency-ms sets the delay of successes and errors alike."""
    state = make_state(latency_ms=50)
    assert send(state, ok_fields()).delay_ms == 50
    assert send(state, {"to": A}).delay_ms == 50
    assert call(state, "GET", "/_sandbox/stats").delay_ms == 0


def faulty(name: str, **overrides: Any) -> SandboxState:
    return make_state(faults=FaultSpec(((name, 1.0),)), **overrides)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        pytest.param("429", 429, "E429", id="429"),
        pytest.param("503", 503, "E503", id="503"),
    ],
)
def test_refusing_faults_accept_nothing(fault: str, status: int, code: str) -> None:
    """Injected 429 and 503 answer with the envelope and put nothing in the ledger."""
    state = faulty(fault)
    response = send(state, ok_fields())
    assert (response.status, payload(response)["code"]) == (status, code)
    assert response.acceptance is None
    assert state.ledger_records() == []
    assert state.stats.faults == {fault: 1}


def test_reset_before_accepts_nothing() -> None:
    """reset_before resets the connection and nothing is accepted."""
    state = faulty("reset_before")
    response = send(state, ok_fields())
    assert (response.action, response.acceptance) == ("reset", None)
    assert state.ledger_records() == []
    assert state.stats.by_status == {"reset": 1}


@pytest.mark.parametrize(
    ("fault", "action", "status"),
    [
        pytest.param("500_after_accept", "respond", 500, id="500"),
        pytest.param("reset_after_accept", "reset", 0, id="reset"),
        pytest.param("slow", "respond", 202, id="slow"),
    ],
)
def test_after_accept_faults_record_the_recipients(fault: str, action: str, status: int) -> None:
    """After-accept faults hide or delay the answer, but the recipients ARE in the ledger."""
    state = faulty(fault, slow_ms=1234)
    response = send(state, ok_fields())
    assert (response.action, response.status) == (action, status)
    assert [r.recipient for r in state.ledger_records()] == [A, B]
    assert {r.fault for r in state.ledger_records()} == {fault}
    assert state.stats.accepted_recipients == 2
    assert response.delay_ms == (1234 if fault == "slow" else 0)


def test_after_accept_fault_on_an_invalid_request_keeps_the_error() -> None:
    """An invalid request under an after-accept fault still gets its 400 and accepts nothing."""
    state = faulty("500_after_accept")
    response = send(state, {"to": A})
    assert (response.status, payload(response)["code"]) == (400, "E406")
    assert state.ledger_records() == []


def test_fault_sequence_is_reproducible_from_the_seed() -> None:
    """Two sandboxes with the same seed inject the same faults in the same order."""
    spec = FaultSpec((("429", 0.3), ("503", 0.3)))

    def statuses() -> list[int]:
        state = make_state(faults=spec)
        return [send(state, ok_fields()).status for _ in range(40)]

    first = statuses()
    assert first == statuses()
    assert {429, 503, 202} <= set(first)


def test_faults_follow_their_probabilities() -> None:
    """Over many requests each fault's share is close to its probability."""
    state = make_state(faults=FaultSpec((("503", 0.1),)))
    statuses = [send(state, ok_fields(to=A)).status for _ in range(2000)]
    assert 150 < statuses.count(503) < 250


# -- status API ------------------------------------------------------------------------------------


def status_of(state: SandboxState, ids: list[str], *, now: float, endpoint: str = "sms") -> Any:
    response = call(
        state,
        "GET",
        f"/v1/{DEFAULT_SID}/{endpoint}/status",
        query=urlencode({"message_ids": ",".join(ids)}),
        now=now,
    )
    assert response.status == 200
    return payload(response)


def test_status_turns_from_sent_to_delivered_after_the_delay() -> None:
    """A message is Sent until deliver_after_s of the sandbox clock passed, then Delivered."""
    state = make_state(deliver_after_s=2.0)
    message_id = payload(send(state, ok_fields(to=A)))["data"][0]["message_id"]
    early = status_of(state, [message_id], now=NOW + 1.9, endpoint="messages")
    late = status_of(state, [message_id], now=NOW + 2.0, endpoint="messages")
    assert early == {
        "data": [{"campaign_id": message_id, "status": "Sent", "status_details": "SENT"}],
        "error": {},
    }
    assert late["data"][0] == {
        "campaign_id": message_id,
        "status": "Delivered",
        "status_details": "DELIVERED",
    }


def test_failing_numbers_show_notsent_at_once_and_undelivered_later() -> None:
    """...0000 is NotSent/KLR-INV-NUMBER at once; ...9999 goes Sent -> UnDelivered/ABSENT-SUB."""
    state = make_state()
    data = payload(send(state, ok_fields(to="+919876540000,+919876549999")))["data"]
    ids = [d["message_id"] for d in data]
    early = status_of(state, ids, now=NOW)["data"]
    late = status_of(state, ids, now=NOW + 60)["data"]
    assert [(e["status"], e["status_details"]) for e in early] == [
        ("NotSent", "KLR-INV-NUMBER"),
        ("Sent", "SENT"),
    ]
    assert [(e["status"], e["status_details"]) for e in late] == [
        ("NotSent", "KLR-INV-NUMBER"),
        ("UnDelivered", "ABSENT-SUB"),
    ]
    assert [e["message_id"] for e in late] == ids


def test_unknown_ids_are_notfound_entries() -> None:
    """Ids the sandbox never issued (or an index past the request's count) are NotFound."""
    state = make_state()
    request_id = payload(send(state, ok_fields(to=A)))["id"]
    entries = status_of(state, ["nope:1", f"{request_id}:2", request_id], now=NOW)["data"]
    assert [e["status"] for e in entries] == ["NotFound"] * 3
    assert {e["status_details"] for e in entries} == {"MESSAGE-NOT-FOUND"}


def test_status_forgets_the_oldest_requests_past_capacity() -> None:
    """Only the last status_capacity requests are remembered."""
    state = make_state(status_capacity=1)
    first = payload(send(state, ok_fields(to=A)))["data"][0]["message_id"]
    second = payload(send(state, ok_fields(to=A)))["data"][0]["message_id"]
    entries = status_of(state, [first, second], now=NOW)["data"]
    assert [e["status"] for e in entries] == ["NotFound", "Sent"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        pytest.param("", "E420", id="missing"),
        pytest.param("message_ids=", "E420", id="empty"),
        pytest.param("message_ids=" + ",".join(f"a:{i}" for i in range(101)), "E421", id="101"),
    ],
)
def test_status_argument_errors(query: str, code: str) -> None:
    """A status call needs 1 to 100 message_ids."""
    response = call(make_state(), "GET", f"/v1/{DEFAULT_SID}/sms/status", query=query)
    assert (response.status, payload(response)["code"]) == (400, code)


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
