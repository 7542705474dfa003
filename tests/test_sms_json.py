"""Personalised rows as the nodes of ``/sms/json`` requests: the request's shape against the
page's sample, the client's method and its checks, the batcher's grouping, and whole runs
against the sandbox (every body reaches its own number; OTP rows stay alone on ``/sms``)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from conftest import bulk, cli_env, plan_line, rejects, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from kaleyra_async import KaleyraClient, Message, RecordSource, ValidationError, load_config
from kaleyra_async._batching import Batch, Batcher, PreparedRow
from kaleyra_async._config import Config, DispatchConfig, MessageDefaults, PodConfig, Secret
from kaleyra_async._exceptions import ConfigError
from kaleyra_async._limits import DEFAULT_JSON_BATCH_SIZE, MAX_JSON_NODES
from kaleyra_async._protocol import (
    NODE_FIELDS,
    TOP_LEVEL_FIELDS,
    build_send_json,
    fields_without_node,
)
from kaleyra_async.sandbox import Sandbox, SandboxConfig

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


async def test_a_node_without_an_id_in_an_accepted_answer_is_unknown_and_not_resent(
    tmp_path: Path,
) -> None:
    """The answer is read as /sms's: a number missing from data[] is unknown (no_message_id)."""
    calls: list[dict[str, Any]] = []

    def kaleyra(request: httpx.Request) -> httpx.Response:
        payload = orjson.loads(request.content)
        calls.append(payload)
        data = [
            {"message_id": f"r1:{n}", "recipient": node["to"][1:]}
            for n, node in enumerate(payload["sms"][1:], 2)
        ]
        return httpx.Response(202, json={"id": "r1", "data": data, "error": {}})

    records = [{"to": to, "name": f"N{i}"} for i, to in enumerate(numbers(3))]
    seen: list[Any] = []
    summary = await bulk(
        RecordSource(records),
        _config(body="Hi {name}"),
        on_results=seen.extend,
        transport=httpx.MockTransport(kaleyra),
    )
    assert len(calls) == 1 and len(calls[0]["sms"]) == 3
    by_row = {r.row: r for r in seen}
    assert (by_row[1].status, by_row[1].error_code) == ("unknown", "no_message_id")
    assert [by_row[n].status for n in (2, 3)] == ["sent", "sent"]
    assert summary.requests_by_endpoint == {"sms/json": 1}


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


# -- whole runs against the sandbox ----------------------------------------------------------------


def _config(sandbox: Sandbox | None = None, *, body: str | None = None, **dispatch: Any) -> Config:
    config = Config(
        sid=sandbox.sid if sandbox else "HX1",
        api_key=Secret(sandbox.api_key if sandbox else "k"),
        base_url=sandbox.base_url if sandbox else None,
        defaults=MessageDefaults(sender="KLRHXA", type="TXN", body=body, template_id=TEMPLATE),
    )
    rate = {"IN": PodConfig(rate_per_s=100_000, burst=1000)}
    return dataclasses.replace(
        config, pods=rate, dispatch=DispatchConfig(max_wait_ms=1.0, **dispatch)
    )


async def _run(sandbox_config: SandboxConfig, records: list[dict[str, str]], **dispatch: Any):  # type: ignore[no-untyped-def]
    async with Sandbox(sandbox_config) as sandbox:
        seen: list[Any] = []
        summary = await bulk(
            RecordSource(records), _config(sandbox, **dispatch), on_results=seen.extend
        )
        return seen, summary, sandbox.ledger_records()


bodies = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t{}€😀"),
    min_size=1,
    max_size=60,
).filter(lambda s: s.strip())


@settings(max_examples=25, deadline=None, database=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 30), bodies, st.booleans()), min_size=1, max_size=60),
    json_batch_size=st.integers(2, 12),
)
def test_every_personalised_body_reaches_the_ledger_for_exactly_its_number(
    rows: list[tuple[int, str, bool]], json_batch_size: int
) -> None:
    """Any bodies (braces, emoji, line breaks), repeated numbers, some OTP rows: each row's exact
    body is in the ledger once, for its own number, and an OTP was always a request alone."""
    records = [
        {"to": f"+9198765{n:05d}", "body": body, "type": "OTP" if otp else "TXN"}
        for n, body, otp in rows
    ]
    seen, _, ledger = anyio.run(
        functools.partial(_run, SandboxConfig(), records, json_batch_size=json_batch_size)
    )
    assert sorted(r.row for r in seen) == list(range(1, len(rows) + 1))
    by_id = {r.message_id: r for r in ledger}
    sent = [r for r in seen if _filled(records[r.row - 1]["body"].strip(), records[r.row - 1])]
    assert len(by_id) == len(ledger) == len(sent)
    for result in seen:
        record = records[result.row - 1]
        if not _filled(record["body"].strip(), record):  # a {placeholder} naming no column
            assert (result.status, result.error_code) == ("invalid", "invalid_body")
            continue
        assert result.status == "sent", result
        entry = by_id[result.message_id]
        # {name}-style braces in a body column are placeholders: fill them as the run did.
        assert entry.recipient == record["to"] and entry.type == record["type"]
        assert entry.body == _filled(record["body"].strip(), record)
    per_request: dict[str, list[Any]] = {}
    for entry in ledger:
        per_request.setdefault(entry.request_id, []).append(entry)
    for entries in per_request.values():
        if any(e.type == "OTP" for e in entries):
            assert len(entries) == 1
        assert len({e.recipient for e in entries}) == len(entries)
        assert len(entries) <= max(json_batch_size, 100)


async def test_rows_with_a_body_column_share_requests_by_payload() -> None:
    """A body column: rows whose bodies are equal still go 100 a request on /sms, the others in
    /sms/json, each node with its own body (those rows carry only their body apart)."""
    same = "Your statement is ready"
    records = [{"to": to, "body": same} for to in numbers(150)]
    records += [{"to": to, "body": f"Order {i} shipped"} for i, to in enumerate(numbers(50, 500))]
    seen, summary, ledger = await _run(SandboxConfig(), records)
    assert [r.status for r in seen].count("sent") == 200
    assert summary.requests_by_endpoint == {"sms": 2, "sms/json": 1}
    by_request: dict[str, list[Any]] = {}
    for entry in ledger:
        by_request.setdefault(entry.request_id, []).append(entry)
    assert sorted(len(e) for e in by_request.values()) == [50, 50, 100]
    body_of = {r["to"]: r["body"] for r in records}
    assert all(entry.body == body_of[entry.recipient] for entry in ledger)


def test_a_body_column_gives_each_row_its_own_message_however_many_rows() -> None:
    """Past the point where the preparer stops caching (every body its own), each row still
    gets exactly its message, a bad body is still named, and equal bodies equal messages."""
    from datetime import UTC, datetime

    from kaleyra_async._models import InputRow
    from kaleyra_async._phone import PhoneNormalizer
    from kaleyra_async._prepare import RowPlan, RowPreparer
    from kaleyra_async._validate import validate_message

    defaults = MessageDefaults(sender="KLRHXA", type="TXN", template_id=TEMPLATE)
    now = datetime.now(UTC)
    preparer = RowPreparer(
        RowPlan(pod="IN", defaults=defaults), normalize=PhoneNormalizer(), now=now
    )
    preparer.check_header(("to", "body"))
    count = 3 * 4096
    bodies = [f"Order {n} shipped" for n in range(count)] + ["bad \x1b body", "Order 7 shipped"]
    prepared = [
        preparer.prepare(InputRow(n, {"to": "+919876500001", "body": body}))
        for n, body in enumerate(bodies, 1)
    ]
    for n in (1, 4096, 8193, count):
        row = prepared[n - 1]
        assert isinstance(row, PreparedRow)
        expected = Message(body=bodies[n - 1], sender="KLRHXA", type="TXN", template_id=TEMPLATE)
        assert row.message == validate_message(expected, pod="IN", now=now)
    bad = prepared[count]
    assert not isinstance(bad, PreparedRow) and bad.error_code == "invalid_body"
    again, first = prepared[-1], prepared[7]
    assert isinstance(again, PreparedRow) and isinstance(first, PreparedRow)
    assert again.message == first.message


def _filled(body: str, record: dict[str, str]) -> str:
    """The body a row's {placeholders} make, "" when one names no column (the row is invalid)."""
    from kaleyra_async._cells import fill_placeholders

    try:
        return fill_placeholders(body, record)
    except ValidationError:
        return ""


async def test_a_mixed_file_keeps_the_otp_guard_and_plans_requests_per_endpoint(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Bulk, personalised and OTP rows in one CSV through the CLI: bulk on /sms 100 a request,
    personalised on /sms/json, each OTP a /sms request of its own; the dry run says so."""
    lines = ["to,body,type"]
    for i, to in enumerate(numbers(600)):
        if i % 3 == 0:
            lines.append(f"{to},Same for all,TXN")
        elif i % 50 == 1:
            lines.append(f"{to},Your code is {i:04d},OTP")
        else:
            lines.append(f"{to},Hi {i},TXN")
    source = tmp_path / "mixed.csv"
    source.write_text("\n".join(lines) + "\n")
    config = tmp_path / "c.toml"
    config.write_text(
        f'[account]\npod = "IN"\nbase_url = "{sandbox.base_url}"\n[pods.IN]\nrate_per_s = 5000.0\n'
        '[defaults]\nsender = "KLRHXA"\ntemplate_id = "1107161234567890123"\n'
    )
    args = ("send-bulk", source, "--config", config, "--max-wait-ms", "1")
    dry = await run_cli(*args, "--dry-run", env=cli_env(sandbox))
    assert dry.returncode == 0, dry.stderr.decode()
    planned = plan_line(dry.stderr.decode())
    otp_rows = sum(1 for i in range(600) if i % 3 and i % 50 == 1)
    assert planned["sms"] >= 2 + otp_rows and planned["sms/json"] >= 4
    out = tmp_path / "results.ndjson"
    run = await run_cli(*args, "--out", out, env=cli_env(sandbox))
    assert run.returncode == 0, run.stderr.decode()
    ledger = sandbox.ledger_records()
    assert len(ledger) == 600
    requests: dict[str, list[Any]] = {}
    for entry in ledger:
        requests.setdefault(entry.request_id, []).append(entry)
    otp_requests = [e for e in requests.values() if any(x.type == "OTP" for x in e)]
    assert len(otp_requests) == otp_rows and all(len(e) == 1 for e in otp_requests)
    shared = [e for e in requests.values() if {x.body for x in e} == {"Same for all"}]
    assert sorted(len(e) for e in shared) == [100, 100]
    personal_requests = [e for e in requests.values() if len({x.body for x in e}) > 1]
    assert sum(len(e) for e in personal_requests) == 600 - 200 - otp_rows
    assert len(requests) < 20


async def test_personalised_single_falls_back_to_one_sms_request_per_row() -> None:
    """personalised = "single": every personalised row is an /sms request of its own."""
    records = [{"to": to, "body": f"Hi {i}"} for i, to in enumerate(numbers(30))]
    seen, summary, ledger = await _run(SandboxConfig(), records, personalised="single")
    assert summary.requests_by_endpoint == {"sms": 30}
    assert len({e.request_id for e in ledger}) == 30
    assert all(r.status == "sent" for r in seen)


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"json_batch_size": 0}, "dispatch.json_batch_size", id="zero"),
        pytest.param({"json_batch_size": 1001}, "dispatch.json_batch_size", id="over-1000"),
        pytest.param({"personalised": "batch"}, "dispatch.personalised", id="unknown-mode"),
    ],
)
def test_config_refuses_what_kaleyra_cannot_take(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    """json_batch_size is 1..1000 and personalised is json or single, from a config file too."""
    path = tmp_path / "c.toml"
    ((key, value),) = values.items()
    path.write_text(f"[account]\nsid = 'HX1'\napi_key = 'k'\n[dispatch]\n{key} = {value!r}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


async def test_cli_options_reach_the_plan(tmp_path: Path) -> None:
    """--json-batch-size and --personalised change the dry run's requests per endpoint."""
    source = tmp_path / "p.csv"
    source.write_text("to,body\n" + "".join(f"{to},Hi {i}\n" for i, to in enumerate(numbers(50))))
    config = tmp_path / "c.toml"
    config.write_text(
        f'[account]\npod = "IN"\n[defaults]\nsender = "KLRHXA"\ntemplate_id = "{TEMPLATE}"\n'
    )
    base = ("send-bulk", source, "--config", config, "--dry-run")
    plans = {}
    for extra in ((), ("--json-batch-size", "20"), ("--personalised", "single")):
        done = await run_cli(*base, *extra)
        assert done.returncode == 0, done.stderr.decode()
        plans[extra] = plan_line(done.stderr.decode())
    assert plans[()] == {"sms/json": 1}
    assert plans[("--json-batch-size", "20")] == {"sms/json": 3}
    assert plans[("--personalised", "single")] == {"sms": 50}


async def test_a_run_reference_reaches_every_node_that_asks_for_receipts() -> None:
    """With a callback profile, a personalised request gets the run's ka-<run>-<n> reference in
    every node (shared, so sent once as the top-level default), and each row's result has it."""
    calls: list[dict[str, Any]] = []

    def kaleyra(request: httpx.Request) -> httpx.Response:
        payload = orjson.loads(request.content)
        calls.append(payload)
        data = [
            {"message_id": f"r1:{n}", "recipient": node["to"][1:]}
            for n, node in enumerate(payload["sms"], 1)
        ]
        return httpx.Response(202, json={"id": "r1", "data": data, "error": {}})

    config = _config(body="Hi {name}")
    config = dataclasses.replace(
        config, defaults=dataclasses.replace(config.defaults, callback_profile_id="IN_1")
    )
    records = [{"to": to, "name": f"N{i}"} for i, to in enumerate(numbers(3))]
    seen: list[Any] = []
    await bulk(
        RecordSource(records),
        config,
        on_results=seen.extend,
        transport=httpx.MockTransport(kaleyra),
    )
    assert len(calls) == 1 and len(calls[0]["sms"]) == 3
    ref = calls[0]["ref"]
    assert ref.startswith("ka-") and calls[0]["callback_profile_id"] == "IN_1"
    assert [r.ref for r in seen] == [ref] * 3
    assert all(r.status == "sent" for r in seen)
