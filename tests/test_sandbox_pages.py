"""Golden tests: every sample request on Kaleyra's pages, fed to the sandbox's handler, and every
sample error the sandbox can produce, reproduced in the page's envelope and text.

The samples are ``tests/data/kaleyra_pages/samples.json``, verbatim. Adjustments, each one the
least needed to run a sample here:

* placeholders: the host is dropped (the handler is in process), the SID becomes the sandbox's,
  the api-key the sandbox's, and each run of X/x next to a digit becomes 5s ("+91XXXXXXXXXX" ->
  "+915555555555", "101XXXXXX012" -> "101555555012");
* the clock is 2025-07-01, before the page's scheduled ``time`` of 2025-07-11;
* the curl command lines are read by :func:`curl_request`, which takes ``-d`` as curl does (no
  URL-encoding: the "+" of "to=+91..." arrives as a space) and drops the two-way sample's
  ``--date-urlencode`` line, an option curl does not have (curl stops on it);
* the "Send OTP SMS" sample "for non-Indian companies" runs on an SG-pod sandbox: the page
  prints the IN host in both of its samples, and on the IN pod a message to an Indian number
  without a template id breaks India's DLT rule (the other sample, "for customers from India",
  adds the template id).

Where a sample itself is broken, the sandbox refuses it with a message that names the mistake
(see the sandbox's docstring, "Kaleyra's own samples"), and the test then sends the sample with
that one mistake mended, which is accepted.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Final

import orjson
import pytest

from kaleyra_async import KaleyraClient, Message, PodConfig, RejectedError
from kaleyra_async import _send_checks as send_checks
from kaleyra_async import _validate as client_validate
from kaleyra_async.sandbox import DEFAULT_API_KEY, DEFAULT_SID, Sandbox
from kaleyra_async.sandbox._values import Response
from tests.conftest import TEMPLATE_ID, call, make_state, payload
from tests.pages import SAMPLES, curl_request, sample_json

#: 2025-07-01T00:00Z: ten days before the first page's scheduled time.
JULY_2025: Final = dt.datetime(2025, 7, 1, tzinfo=dt.UTC).timestamp()


def post(path: str, headers: dict[str, str], body: bytes, **config: Any) -> Response:
    state = make_state(**config)
    return call(state, "POST", path, body=body, headers=headers, now=JULY_2025)


def assert_accepted(response: Response, expected: dict[str, Any], recipients: list[str]) -> None:
    """A 202 that echoes ``expected`` and lists ``recipients`` in ``data``."""
    assert response.status == 202, payload(response)
    answer = payload(response)
    assert {k: answer[k] for k in expected} == expected
    assert [d["recipient"] for d in answer["data"]] == recipients


def assert_success_like(response: Response, sample_id: str, sent: dict[str, Any]) -> None:
    """The answer has the sample's keys in the sample's order, and the values it implies."""
    assert response.status == SAMPLES[sample_id]["status"]
    body, sample = payload(response), sample_json(sample_id)
    assert list(body) == list(sample)
    assert {k: body[k] for k in sent} == sent
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00", body["createdDateTime"])
    assert [list(item) for item in body["data"]] == [list(item) for item in sample["data"]]
    assert body["data"][0]["message_id"] == body["id"] + ":1"
    assert (body["totalCount"], body["dlrurl"], body["error"]) == (1, None, {})


# -- Send the First SMS (/messages) --------------------------------------------------------------


def test_first_sms_sample_is_refused_for_its_broken_key_then_for_its_string_ref_custom() -> None:
    """The page's sample is not JSON ("ref_custom: " lacks its closing quote; the body is never
    closed): E400 names the key. Mended, its ref_custom is the string "['John','Doe']": E414
    names that. Sent as the List the parameter table asks for, it is accepted, with the page's
    every other field (scheduled time, prefix next to a "+" number, flash "1", unicode "Auto")."""
    path, headers, body = curl_request(SAMPLES["001-first-sms-request"]["raw"])
    assert (path, headers["content-type"]) == (f"/v1/{DEFAULT_SID}/messages", "application/json")
    refused = post(path, headers, body)
    assert (refused.status, payload(refused)["code"]) == (400, "E400")
    assert '"ref_custom: " lacks its closing quote' in payload(refused)["message"]
    assert "Send the First SMS" in payload(refused)["message"]

    mended = body.replace(b'"ref_custom: "', b'"ref_custom": "') + b"}"
    as_string = post(path, headers, mended)
    assert (as_string.status, payload(as_string)["code"]) == (400, "E414")
    assert payload(as_string)["error"]["ref_custom"].startswith("ref_custom must be a list")
    assert "['John','Doe']" in payload(as_string)["message"]

    fields = orjson.loads(mended)
    fields["ref_custom"] = ["John", "Doe"]
    accepted = post(path, headers, orjson.dumps(fields))
    expected = {"sender": "KLRHXA", "type": "MKT", "template_id": "101555555012"}
    assert_accepted(accepted, expected, ["915555555555"])


def test_first_sms_success_sample_shape() -> None:
    """A DEFAULT send abroad answers with exactly the keys of the page's success sample."""
    fields = {"to": "+15555555555", "sender": "KLRHXA", "body": "Hello! This is my first SMS."}
    response = send_json("/messages", fields, pod="SG")
    sent = {"sender": "KLRHXA", "type": "DEFAULT", "body": "Hello! This is my first SMS."}
    assert_success_like(response, "001-first-sms-success", sent)


def test_e401_is_the_page_sample_exactly() -> None:
    """A body over 4000 characters answers the page's E401 envelope, text and error key."""
    response = send_json("/messages", {"to": "+15555555555", "body": "x" * 4001}, pod="SG")
    assert response.status == SAMPLES["001-e401-failure"]["status"]
    assert payload(response) == sample_json("001-e401-failure")


def test_two_way_sample_is_accepted_with_its_numeric_sender() -> None:
    """The two-way sample (form fields; a numeric sender to a US number from the IN host) is
    accepted; so is the page's note's "+17XXXXXXXX4" as the sender."""
    path, headers, body = curl_request(SAMPLES["001-two-way-request"]["raw"])
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    expected = {
        "sender": "917555555834",
        "type": "MKT",
        "body": "Accepting number as sender test 1",
    }
    assert_accepted(post(path, headers, body), expected, ["19655555556"])
    plus = body.replace(b"sender=917555555834", b"sender=%2B17555555554")
    assert payload(post(path, headers, plus))["sender"] == "+17555555554"


# -- Send OTP SMS (/sms) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_id", "pod", "success_id"),
    [
        pytest.param("003-otp-request", "SG", "003-otp-success", id="non-indian"),
        pytest.param("003-otp-request-india", "IN", "003-otp-success-india", id="india"),
    ],
)
def test_otp_samples_are_refused_as_json_then_accepted_as_form(
    sample_id: str, pod: str, success_id: str
) -> None:
    """The curl samples send form fields (-d) under Content-Type application/json: E400 names
    that. The same fields as form data are accepted and answered in the page's success shape
    (template_id echoed for India, as its sample shows)."""
    path, headers, body = curl_request(SAMPLES[sample_id]["raw"])
    assert headers["content-type"] == "application/json"
    refused = post(path, headers, body, pod=pod)
    assert (refused.status, payload(refused)["code"]) == (400, "E400")
    assert "form fields" in payload(refused)["message"]
    assert "Send OTP SMS" in payload(refused)["message"]

    form = {**headers, "content-type": "application/x-www-form-urlencoded"}
    accepted = post(path, form, body, pod=pod)
    sent = {"sender": "KLRHXA", "type": "OTP"}
    if pod == "IN":
        sent["template_id"] = "101555555012"
    assert_success_like(accepted, success_id, sent)
    assert [d["recipient"] for d in payload(accepted)["data"]] == ["915555555555"]


def test_e404_is_the_page_sample_exactly() -> None:
    """An OTP to two numbers answers the page's E404 envelope, keyed by "time" as printed."""
    fields = {"to": "+919876543210,+919876543211", "type": "OTP", "body": "1234"}
    response = send_json("/sms", {**fields, "sender": "KLRHXA", "template_id": TEMPLATE_ID})
    assert response.status == SAMPLES["003-e404-failure"]["status"]
    assert payload(response) == sample_json("003-e404-failure")


# -- Create Sender ID ----------------------------------------------------------------------------

SENDER_PATH: Final = f"/v1/{DEFAULT_SID}/messages/sender"


def create(state: Any, *items: tuple[str, str]) -> Response:
    data = [
        {"sender": name, "description": "d", "iso_code": iso, "entity_id": "123456789012"}
        for name, iso in items
    ]
    return call(state, "POST", SENDER_PATH, body={"data": data})


def test_create_sender_sample_is_refused_for_commas_then_for_its_5_letter_sender() -> None:
    """The page's sample has a comma before each "}" (not JSON): E400 names it. Without them,
    its "ADPAI" (5 characters, for India) gets the page's own MSG134 reason; with a sixth
    letter the sample creates both sender IDs."""
    path, headers, body = curl_request(SAMPLES["002-create-sender-request"]["raw"])
    state = make_state()
    refused = call(state, "POST", path, body=body, headers=headers)
    assert (refused.status, payload(refused)["code"]) == (400, "E400")
    assert "comma" in payload(refused)["message"]
    assert "Create Sender ID" in payload(refused)["message"]

    mended = re.sub(rb",(\s*})", rb"\1", body)
    short = call(state, "POST", path, body=mended, headers=headers)
    assert payload(short) == {
        "code": "MSG134",
        "message": "Sender IDs not created",
        "data": [],
        "error": {
            "0": {
                "sender": "Sender ID has to be registered and it can only be 6 character",
                "sender_name": "ADPAI",
            }
        },
    }
    six = mended.replace(b'"ADPAI"', b'"ADPAIX"')
    created = call(state, "POST", path, body=six, headers=headers)
    assert (created.status, payload(created)["code"]) == (200, "MSG106")
    assert [item["sender"] for item in payload(created)["data"]] == ["ADPAIX", "ABCF01"]


def test_msg106_matches_the_page_sample() -> None:
    """The success answer is the page's sample: its missing opening brace restored and its ids
    ("6XX67", not JSON) read as the numbers the sandbox issues."""
    raw = SAMPLES["002-msg106-success"]["raw"]
    sample = orjson.loads("{" + re.sub(r'"id": ([0-9X]+)', r'"id": "\1"', raw))
    response = create(make_state(), ("TESTEHR5", "ae"), ("TESTET5", "ae"))
    assert response.status == SAMPLES["002-msg106-success"]["status"]
    body = payload(response)
    for item in body["data"]:
        assert isinstance(item["id"], int)
    for item in sample["data"]:
        item["id"] = body["data"][sample["data"].index(item)]["id"]
    assert body == sample


@pytest.mark.parametrize(
    ("sample_id", "existing", "request_items"),
    [
        pytest.param(
            "002-msg134-failure-1",
            [("ABCF01", "in"), ("ABCF99", "in")],
            [("ABCF01", "in"), ("ABCF99", "in")],
            id="both-exist",
        ),
        pytest.param(
            "002-msg134-failure-2",
            [("ABCF01", "in")],
            [("ABCF992", "in"), ("ABCF01", "in")],
            id="seven-characters",
        ),
        pytest.param(
            "002-msg134-case-1",
            [("TESTEHJJ5", "gb")],
            [("TESTEHJJ5", "gb")],
            id="case-1",
        ),
    ],
)
def test_msg134_is_the_page_sample_exactly(
    sample_id: str, existing: list[tuple[str, str]], request_items: list[tuple[str, str]]
) -> None:
    """MSG134 answers the page's samples byte for byte in meaning: error keyed by item index,
    each {"sender": "<reason>", "sender_name": ...}, and nothing is created."""
    state = make_state()
    assert create(state, *existing).status == 200
    response = create(state, *request_items)
    assert response.status == SAMPLES[sample_id]["status"]
    assert payload(response) == sample_json(sample_id)


def test_rbc192_is_the_page_sample_exactly() -> None:
    """5001 sender IDs in one call answer the page's RBC192 envelope."""
    items = [(f"{i:06d}", "in") for i in range(5001)]
    response = create(make_state(), *items)
    assert response.status == SAMPLES["002-rbc192-failure"]["status"]
    assert payload(response) == sample_json("002-rbc192-failure")


def test_every_sample_is_covered() -> None:
    """Each sample in the fixture file is used above (a new sample needs a test)."""
    source = Path(__file__).read_text()
    assert [s for s in SAMPLES if f'"{s}"' not in source] == []


def send_json(endpoint: str, fields: dict[str, Any], **config: Any) -> Response:
    headers = {"api-key": DEFAULT_API_KEY, "content-type": "application/json"}
    path = f"/v1/{DEFAULT_SID}{endpoint}"
    return call(make_state(**config), "POST", path, body=fields, headers=headers, now=JULY_2025)


# -- the sandbox can disagree with the client ----------------------------------------------------


def client_for(sandbox: Sandbox) -> KaleyraClient:
    return KaleyraClient(
        sid=sandbox.sid,
        api_key=sandbox.api_key,
        base_url=sandbox.base_url,
        rate_limit=PodConfig(rate_per_s=10_000),
    )


async def test_a_client_sender_rule_broken_on_purpose_is_caught_by_the_sandbox(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the client's sender and DLT checks made to accept anything, a 7-letter sender to an
    Indian number goes out through the real client and the sandbox refuses it (E415): its rule
    is its own, not the client's."""
    monkeypatch.setattr(client_validate, "validate_sender", lambda value, **_: value)
    monkeypatch.setattr(send_checks, "check_dlt", lambda message: None)
    message = Message(body="Hello", sender="KLRHXAB", type="TXN", template_id=TEMPLATE_ID)
    async with client_for(sandbox) as client:
        with pytest.raises(RejectedError) as info:
            await client.send(message, ["+919876543210"])
    assert (info.value.status_code, info.value.kaleyra_code) == (400, "E415")
    assert "6 alphabetic characters" in str(info.value)
    assert sandbox.ledger_records() == []


async def test_a_client_india_rule_broken_on_purpose_is_caught_by_the_sandbox(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the client's message validation and DLT check bypassed, a message to an Indian
    number without a template id reaches the sandbox through the real client, which refuses it
    naming the DLT rule (E417)."""
    monkeypatch.setattr(send_checks, "validate_message", lambda message, **_: message)
    monkeypatch.setattr(send_checks, "check_dlt", lambda message: None)
    message = Message(body="Hello", sender="KLRHXA", type="TXN")
    async with client_for(sandbox) as client:
        with pytest.raises(RejectedError) as info:
            await client.send(message, ["+919876543210"])
    assert (info.value.status_code, info.value.kaleyra_code) == (400, "E417")
    assert "DLT" in str(info.value)
    assert sandbox.ledger_records() == []
