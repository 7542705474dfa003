"""The sandbox's ``/sms/json`` route through its pure handler: defaults and nodes, the node cap,
per-node rules named by node, the ledger's per-node bodies, and the same faults as ``/sms``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from kaleyra_async.sandbox import DEFAULT_API_KEY, DEFAULT_SID, SandboxConfig, parse_faults
from kaleyra_async.sandbox._handler import handle
from kaleyra_async.sandbox._ledger import LedgerWriter
from kaleyra_async.sandbox._state import SandboxState
from kaleyra_async.sandbox._values import Request, Response

NOW = 1_700_000_000.0
AUTH = {"api-key": DEFAULT_API_KEY, "content-type": "application/json"}
SAMPLE = orjson.loads((Path(__file__).parent / "data" / "sms_json" / "sample.json").read_bytes())


def post(state: SandboxState, body: Any) -> Response:
    request = Request(
        method="POST", path=f"/v1/{DEFAULT_SID}/sms/json", headers=AUTH, body=orjson.dumps(body)
    )
    return handle(state, request, NOW)


def state_with(**config: Any) -> SandboxState:
    return SandboxState(SandboxConfig(seed=3, **config))


TEMPLATE = "1107161234567890123"


def nodes(n: int) -> list[dict[str, str]]:
    return [
        {"to": f"+9198765{i:05d}", "body": f"Hi {i}", "from": "KLRHXA", "template_id": TEMPLATE}
        for i in range(n)
    ]


def error(response: Response) -> tuple[int, str, str | None]:
    """Status, code and the field the error names (its ``error`` is ``{field: reason}``)."""
    body = orjson.loads(response.body)
    (field,) = body["error"]
    return response.status, body["code"], field


def test_the_pages_sample_with_real_values_is_accepted_node_by_node() -> None:
    """The sample's keys with values that pass the rules: 202, one id per node, in node order."""
    request = {
        **SAMPLE,
        "prefix": "+91",
        "time": None,
        "from": "KLRHXA",
        "body": "default body",
        "template_id": "1107161234567890123",
        "entity_id": "110100001234",
        "unicode": "AUTO",
        "callback_profile_id": "IN_09b3dfa7",
        "sms": [
            {**SAMPLE["sms"][0], "to": "9876500001", "from": "KLRHXB", "body": "Hi Asha",
             "template_id": "1107161234567890124", "entity_id": "110100001234", "unicode": "0",
             "callback_profile_id": "IN_1"},
            {"to": "+919876500002"},
        ],
    }  # fmt: skip
    state = state_with()
    response = post(state, request)
    assert response.status == 202, response.body
    answer = orjson.loads(response.body)
    assert [d["recipient"] for d in answer["data"]] == ["919876500001", "919876500002"]
    assert [d["message_id"] for d in answer["data"]] == [f"{answer['id']}:{n}" for n in (1, 2)]
    records = state.ledger_records()
    assert [(r.recipient, r.sender, r.body, r.template_id) for r in records] == [
        ("+919876500001", "KLRHXB", "Hi Asha", "1107161234567890124"),
        ("+919876500002", "KLRHXA", "default body", "1107161234567890123"),
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"sms": []}, (400, "E402", "sms"), id="no-nodes"),
        pytest.param({"sms": [*nodes(2), {"to": "+919876500009"}]}, (400, "E406", "sms[2].body"),
                     id="node-without-body"),
        pytest.param({"sms": [*nodes(1), {"to": "12", "body": "x"}]}, (400, "E403", "sms[1].to"),
                     id="bad-number"),
        pytest.param({"sms": [{"to": "+919876500001,+919876500002", "body": "x"}]},
                     (400, "E403", "sms[0].to"), id="two-numbers-in-a-node"),
        pytest.param({"sms": [*nodes(1), {**nodes(2)[1], "body": "x" * 4001}]},
                     (400, "E401", "sms[1].body"), id="body-too-long"),
        pytest.param({"sms": [{**nodes(1)[0], "from": "TOOLONGSENDER"}]},
                     (400, "E415", "sms[0].from"), id="bad-sender"),
        pytest.param({"sms": [{"to": "+919876500001", "body": "x", "flash": "1"}]},
                     (400, "E400", "sms[0].flash"), id="flash-has-no-node"),
        pytest.param({"sms": [{"to": "+919876500001", "from": "KLRHXA", "template_id": "12"}]},
                     (400, "E407", "sms[0].template_id"), id="bad-template-id"),
        pytest.param({"sms": [*nodes(1), {"to": "+919876500009", "body": "x", "from": "KLRHXA"}]},
                     (400, "E417", "sms[1].template_id"), id="india-dlt-template"),
        pytest.param({"sms": [{"to": "+14155550123", "body": "x"}]}, (400, "E418", "sms[0].from"),
                     id="no-sender"),
        pytest.param({"type": "OTP", "sms": nodes(2)}, (400, "E404", "sms"), id="otp-two-nodes"),
        pytest.param({"type": "DEFAULT", "sms": nodes(1)}, (400, "E408", "type"), id="bad-type"),
        pytest.param({"sms": nodes(4)}, (400, "E405", "sms"), id="over-the-node-cap"),
    ],
)  # fmt: skip
def test_a_broken_node_refuses_the_request_naming_it(
    body: dict[str, Any], expected: tuple[int, str, str]
) -> None:
    """/sms's rules per node (merged over the defaults); nothing of the request is accepted."""
    state = state_with(json_max_nodes=3)
    response = post(state, body)
    assert error(response) == expected
    assert state.ledger_records() == []


def test_ledger_lines_carry_each_nodes_own_body(tmp_path: Path) -> None:
    """The ledger file's lines, one per node, each with its own body and message id."""
    state = state_with()
    response = post(state, {"sms": nodes(3)})
    assert response.acceptance is not None
    ledger = LedgerWriter(tmp_path / "ledger.ndjson")
    ledger.append(response.acceptance)
    ledger.close()
    lines = [orjson.loads(x) for x in (tmp_path / "ledger.ndjson").read_bytes().splitlines()]
    assert [(x["recipient"], x["body"]) for x in lines] == [
        (f"+9198765{i:05d}", f"Hi {i}") for i in range(3)
    ]
    assert [x["message_id"].rsplit(":", 1)[1] for x in lines] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("fault", "status", "accepted"),
    [
        pytest.param("503=1.0", 503, False, id="503"),
        pytest.param("500_after_accept=1.0", 500, True, id="500-after-accept"),
        pytest.param("reset_after_accept=1.0", 0, True, id="reset-after-accept"),
    ],
)
def test_faults_are_the_same_as_on_sms(fault: str, status: int, accepted: bool) -> None:
    """Injected faults hit /sms/json as they hit /sms; after-accept ones still record every node."""
    state = state_with(faults=parse_faults(fault))
    response = post(state, {"sms": nodes(3)})
    assert response.status == status
    assert len(state.ledger_records()) == (3 if accepted else 0)
