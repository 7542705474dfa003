"""Personalised campaigns by /sms/json end to end: whole runs against the sandbox (every body
reaches the ledger for its number), mixed files, and the configuration that plans them; the
request shape, the client and grouping are in test_sms_json.py.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from conftest import bulk, cli_env, plan_line, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from kaleyra_async import Message, RecordSource, ValidationError, load_config
from kaleyra_async._batching import PreparedRow
from kaleyra_async._config import Config, DispatchConfig, MessageDefaults, PodConfig, Secret
from kaleyra_async._exceptions import ConfigError
from kaleyra_async.sandbox import Sandbox, SandboxConfig
from tests.test_sms_json import TEMPLATE, numbers

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
