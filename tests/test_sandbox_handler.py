"""The sandbox's pure handler around the routes: routing, credentials, the rate limit, latency,
faults and the status route, without a socket (sender IDs and the ``/_sandbox/`` control
surface: test_sandbox_senders.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from kaleyra_async.sandbox import DEFAULT_API_KEY, DEFAULT_SID, FaultSpec
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
