"""Personalised rows as the nodes of ``/sms/json`` requests: the request's shape against the
page's sample, the client's method and its checks, the batcher's grouping (whole runs are in
test_sms_json_runs.py)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import rejects

from kaleyra_async import KaleyraClient, Message, ValidationError
from kaleyra_async._batching import Batch, Batcher, PreparedRow
from kaleyra_async._limits import DEFAULT_JSON_BATCH_SIZE, MAX_JSON_NODES
from kaleyra_async._protocol import (
    NODE_FIELDS,
    TOP_LEVEL_FIELDS,
    build_send_json,
    fields_without_node,
)
from kaleyra_async.sandbox import Sandbox

SAMPLE = orjson.loads((Path(__file__).parent / "data" / "sms_json" / "sample.json").read_bytes())
TEMPLATE = "1107161234567890123"


def numbers(n: int, start: int = 0) -> list[str]:
    return [f"+9198765{i:05d}" for i in range(start, start + n)]


def personal(name: str, **fields: Any) -> Message:
    values = {
        "body": f"Hi {name}, your order has shipped",
        "sender": "KLRHXA",
        "type": "TXN",
        "template_id": TEMPLATE,
    }
    return Message(**(values | fields))


def client_for(sandbox: Sandbox, **kwargs: Any) -> KaleyraClient:
    return KaleyraClient(
        sid=sandbox.sid, api_key=sandbox.api_key, base_url=sandbox.base_url, **kwargs
    )


# -- the request -----------------------------------------------------------------------------------


def test_request_has_the_samples_shape() -> None:
    """Top-level keys and node keys are the sample's; the sender is `from`; type is top-level."""
    nodes = [
        ("+919876500001", personal("Asha", unicode="AUTO", callback_profile_id="IN_1",
                                   template_id=None)),
        ("+919876500002", personal("Ravi", sender="KLRHXB")),
    ]  # fmt: skip
    request = build_send_json(nodes)
    assert (request.method, request.path) == ("POST", "/sms/json")
    assert ("Content-Type", "application/json") in request.headers
    body = orjson.loads(request.content)
    sample_node_keys = set(SAMPLE["sms"][0])
    assert set(body) <= set(SAMPLE), set(body) - set(SAMPLE)
    for node in body["sms"]:
        assert set(node) <= sample_node_keys, set(node) - sample_node_keys
    assert "sender" not in body and all("sender" not in node for node in body["sms"])
    assert body["type"] == "TXN" and body["channel"] == SAMPLE["channel"]
    assert [n["to"] for n in body["sms"]] == [to for to, _ in nodes]
    assert [n["body"] for n in body["sms"]] == [m.body for _, m in nodes]
    assert [n.get("from") for n in body["sms"]] == ["KLRHXA", "KLRHXB"]
    assert [n.get("template_id") for n in body["sms"]] == [None, TEMPLATE]
    assert [n.get("unicode") for n in body["sms"]] == ["AUTO", None]
    assert [n.get("callback_profile_id") for n in body["sms"]] == ["IN_1", None]


def test_every_message_field_has_a_place_in_the_request_or_keeps_the_row_on_sms() -> None:
    """A node field, a top-level one (type, time), or one that has no node and keeps a message
    on /sms: a new Message field must be given one of these before it can be silently dropped."""
    node = {name for name, _ in NODE_FIELDS}
    no_node = {"template_data", "flash", "ref_custom"}
    assert no_node == set(fields_without_node(Message(template_data=(("a", "b"),), flash=True,
                                                      ref_custom=("c",))))  # fmt: skip
    assert {f.name for f in dataclasses.fields(Message)} == node | {"type", "time"} | no_node
    assert set(TOP_LEVEL_FIELDS) == {"type", "time"} | no_node


def test_refs_are_node_fields() -> None:
    """ref, ref1 and ref2 go with their node; a shared one once, top-level."""
    nodes = [
        ("+919876500001", personal("A", ref="order-1", ref2="same")),
        ("+919876500002", personal("B", ref="order-2", ref2="same")),
    ]
    body = orjson.loads(build_send_json(nodes).content)
    assert [n["ref"] for n in body["sms"]] == ["order-1", "order-2"]
    assert body["ref2"] == "same" and "ref1" not in body


def test_values_every_node_shares_are_sent_once_as_top_level_defaults() -> None:
    """A shared sender, template id or time is top-level only; bodies that differ stay in nodes."""
    when = "2026-12-24T10:00:00+05:30"
    nodes = [
        (to, personal(name, template_id=TEMPLATE, time=when))
        for to, name in zip(numbers(3), "ABC", strict=True)
    ]
    body = orjson.loads(build_send_json(nodes).content)
    assert (body["from"], body["template_id"], body["time"]) == ("KLRHXA", TEMPLATE, when)
    assert "body" not in body
    assert [set(node) for node in body["sms"]] == [{"to", "body"}] * 3


# -- the client ------------------------------------------------------------------------------------


async def test_send_personalised_reaches_each_number_with_its_own_body(sandbox: Sandbox) -> None:
    """One request; each receipt matched to its node by number; the ledger has each node's body."""
    nodes = [(to, personal(f"N{i}")) for i, to in enumerate(numbers(5))]
    async with client_for(sandbox) as client:
        result = await client.send_personalised(nodes)
    assert sandbox.stats.requests_total == 1
    ids = result.message_ids()
    assert set(ids) == {to for to, _ in nodes}
    ledger = {r.message_id: r for r in sandbox.ledger_records()}
    for to, message in nodes:
        record = ledger[ids[to]]
        assert (record.recipient, record.body, record.sender) == (to, message.body, "KLRHXA")


@pytest.mark.parametrize(
    ("nodes", "field", "rule"),
    [
        pytest.param([("+919876500001", personal("A", type="OTP"))], "sms[0].type",
                     "otp_not_in_json", id="otp"),
        pytest.param([("+919876500001", personal("A")), ("+919876500001", personal("B"))],
                     "sms[1].to", "duplicate", id="number-twice"),
        pytest.param([("+919876500001", personal("A")),
                      ("+919876500002", personal("B", type="MKT"))],
                     "sms[1].type", "same_top_level", id="other-type"),
        pytest.param([("+919876500001", personal("A")),
                      ("+919876500002", personal("B", time="2099-01-01T00:00:00+00:00"))],
                     "sms[1].time", "too_late", id="time-checked-per-node"),
        pytest.param([("+919876500001", personal("A", template_data={"n": "A"}))],
                     "sms[0].template_data", "no_node_field", id="template-data"),
        pytest.param([("+919876500001", personal("A", flash=True))], "sms[0].flash",
                     "no_node_field", id="flash"),
        pytest.param([("+919876500001", personal("A")), ("+919876500002", personal("B" * 4001))],
                     "sms[1].body", "max_length", id="body-too-long"),
        pytest.param([("+919876500001", personal("A")), ("12", personal("B"))],
                     "sms[1].to", "missing_country_code", id="bad-number"),
        pytest.param([("+919876500001", personal("A")),
                      ("+919876500002", personal("B", template_id=None))],
                     "sms[1].template_id", "missing_template_id", id="india-dlt-per-node"),
        pytest.param([], "sms", "required", id="no-nodes"),
        pytest.param([(to, personal("A")) for to in numbers(MAX_JSON_NODES + 1)], "sms",
                     "max_nodes", id="too-many-nodes"),
    ],
)  # fmt: skip
async def test_every_node_is_checked_before_the_network(
    sandbox: Sandbox, nodes: list[tuple[str, Any]], field: str, rule: str
) -> None:
    """/sms's rules per node plus the request's own, named by node; nothing is sent."""
    nodes = [(to, _message(m)) for to, m in nodes]
    async with client_for(sandbox) as client:
        with pytest.raises(ValidationError) as info:
            await client.send_personalised(nodes)
    assert (info.value.field, info.value.rule) == (field, rule), info.value
    assert sandbox.stats.requests_total == 0


def _message(message: Message) -> Message:
    # template_data given as a dict in the table: Message.of's conversion, as a caller's would be.
    data: Any = message.template_data
    if isinstance(data, dict):
        return dataclasses.replace(message, template_data=tuple(data.items()))
    return message


# -- grouping --------------------------------------------------------------------------------------


def _row(n: int, to: str, message: Message) -> PreparedRow:
    return PreparedRow(n, to, message, 1, "GSM-7")


def _batch_all(batcher: Batcher, rows: Sequence[PreparedRow]) -> list[Batch]:
    out: list[Batch] = []
    for row in rows:
        out += batcher.add(row, 0.0)
    return out + batcher.drain()


def test_identical_payloads_stay_on_sms_and_personalised_ones_share_json_requests() -> None:
    """Bulk rows: /sms, 100 a request; personalised: /sms/json, json_batch_size a request."""
    bulk_message = Message(body="Same for all", sender="KLRHXA", type="TXN")
    rows = [_row(n, to, bulk_message) for n, to in enumerate(numbers(150), 1)]
    rows += [_row(n, to, personal(str(n))) for n, to in enumerate(numbers(250, 1000), 151)]
    batches = _batch_all(Batcher(json_batch_size=DEFAULT_JSON_BATCH_SIZE), rows)
    sms = [b for b in batches if b.endpoint == "sms"]
    json_ = [b for b in batches if b.endpoint == "sms/json"]
    assert sorted(len(b.rows) for b in sms) == [50, 100]
    assert all(b.message == bulk_message for b in sms)
    assert sorted(len(b.rows) for b in json_) == [50, 100, 100]
    assert sorted(r.row for b in batches for r in b.rows) == list(range(1, 401))


def test_otp_time_type_and_fields_without_a_node_keep_json_apart() -> None:
    """OTP alone on /sms; other type or time: another request; template_data or flash: /sms."""
    later = "2026-12-24T10:00:00+05:30"
    kinds = {
        "otp": lambda n: personal(n, type="OTP"),
        "txn": lambda n: personal(n),
        "mkt": lambda n: personal(n, type="MKT"),
        "later": lambda n: personal(n, time=later),
        "data": lambda n: personal(n, template_id=TEMPLATE, template_data=(("n", n),)),
        "flash": lambda n: personal(n, flash=True),
    }
    kind_of: dict[int, str] = {}
    rows = []
    for n, (kind, to) in enumerate(zip(itertools.cycle(kinds), numbers(60), strict=False), 1):
        kind_of[n] = kind
        rows.append(_row(n, to, kinds[kind](str(n))))
    batches = _batch_all(Batcher(json_batch_size=100), rows)
    assert sorted(r.row for b in batches for r in b.rows) == list(range(1, 61))
    for batch in batches:
        (kind,) = {kind_of[r.row] for r in batch.rows}
        if kind in ("otp", "data", "flash"):
            assert (batch.endpoint, len(batch.rows)) == ("sms", 1), kind
        else:
            assert (batch.endpoint, len(batch.rows)) == ("sms/json", 10), kind


def test_a_number_is_never_twice_in_one_request() -> None:
    """A repeated number closes the open /sms/json request and starts the next."""
    to = numbers(3)
    rows = [_row(n, to[n % 3], personal(str(n))) for n in range(1, 10)]
    batches = _batch_all(Batcher(json_batch_size=100), rows)
    assert all(len({r.to for r in b.rows}) == len(b.rows) for b in batches)
    assert [len(b.rows) for b in batches] == [3, 3, 3]


def test_batches_refuse_otp_in_json_and_too_many_nodes() -> None:
    """The Batch value itself keeps OTP rows and more than 1000 nodes out of /sms/json."""
    top = Message(type="TXN")
    otp = [
        _row(1, "+919876500001", personal("A", type="OTP")),
        _row(2, "+919876500002", personal("B")),
    ]
    rejects(lambda: Batch(top, tuple(otp), "sms/json"), "type", "otp_not_in_json")
    many = tuple(_row(n, to, personal(str(n))) for n, to in enumerate(numbers(MAX_JSON_NODES + 1)))
    rejects(lambda: Batch(top, many, "sms/json"), "sms", "max_nodes")
    assert len(Batch(top, many[:MAX_JSON_NODES], "sms/json").rows) == MAX_JSON_NODES
