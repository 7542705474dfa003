"""India's DLT ``entity_id``: a node field of ``/sms/json`` only (the sample has it, no ``/sms``
page does), so a message that sets it always goes by ``/sms/json``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import bulk, cli_env, plan_line, rejects, run_cli

from kaleyra_async import KaleyraClient, Message, RecordSource, ValidationError
from kaleyra_async._batching import Batch, Batcher, PreparedRow
from kaleyra_async._config import Config, DispatchConfig, MessageDefaults, PodConfig, Secret
from kaleyra_async._exceptions import ConfigError
from kaleyra_async._protocol import build_send_json
from kaleyra_async._validate import validate_message
from kaleyra_async.sandbox import Sandbox

SAMPLE = orjson.loads((Path(__file__).parent / "data" / "sms_json" / "sample.json").read_bytes())
TEMPLATE = "1107161234567890123"
ENTITY = "1101234567890123456"


def message(**fields: Any) -> Message:
    values: dict[str, Any] = {
        "body": "Your statement is ready",
        "sender": "KLRHXA",
        "type": "TXN",
        "template_id": TEMPLATE,
        "entity_id": ENTITY,
    }
    return Message(**(values | fields))


def test_entity_id_goes_top_level_when_shared_and_in_its_node_otherwise() -> None:
    """The sample's places: top level as every node's default, or in the node."""
    shared = orjson.loads(
        build_send_json([("+919876500001", message()), ("+919876500002", message())]).content
    )
    assert shared["entity_id"] == ENTITY and all("entity_id" not in n for n in shared["sms"])
    other = "1101234567890000000"
    own = orjson.loads(
        build_send_json(
            [("+919876500001", message()), ("+919876500002", message(entity_id=other))]
        ).content
    )
    assert "entity_id" not in own and [n["entity_id"] for n in own["sms"]] == [ENTITY, other]
    assert all(set(n) <= set(SAMPLE["sms"][0]) for n in own["sms"])


def test_entity_id_rules() -> None:
    """12-30 digits; never on an OTP nor beside a field /sms/json has no place for."""
    assert validate_message(message(entity_id=" " + ENTITY), pod="IN").entity_id == ENTITY
    assert validate_message(message(entity_id=""), pod="IN").entity_id is None
    rejects(lambda: validate_message(message(entity_id="12AB"), pod="IN"), "entity_id", "format")
    rejects(lambda: validate_message(message(type="OTP"), pod="IN"), "entity_id", "json_only")
    rejects(lambda: validate_message(message(flash=True), pod="IN"), "entity_id", "json_only")


def test_an_sms_batch_can_never_carry_an_entity_id() -> None:
    """The guard lives in Batch: /sms has no place for it, so it would be silently dropped."""
    row = PreparedRow(1, "+919876500001", message(), 1, "GSM-7")
    rejects(lambda: Batch(message(), (row,)), "entity_id", "json_only")
    assert Batch(message(), (row,), "sms/json").endpoint == "sms/json"


@pytest.mark.parametrize("json_batch_size", [0, 100])
def test_rows_with_an_entity_id_go_by_sms_json_even_identical_or_alone(
    json_batch_size: int,
) -> None:
    """Identical payloads share one /sms/json request; a row alone is a one-node request (also
    when personalised rows would go one per /sms request)."""
    batcher = Batcher(json_batch_size=json_batch_size)
    rows = [PreparedRow(n, f"+9198765{n:05d}", message(), 1, "GSM-7") for n in range(1, 4)]
    rows.append(PreparedRow(4, "+919876500099", message(body="Yours alone"), 1, "GSM-7"))
    batches = [b for r in rows for b in batcher.add(r, 0.0)] + batcher.drain()
    assert {b.endpoint for b in batches} == {"sms/json"}
    assert sorted(len(b.rows) for b in batches) == [1, 3]


async def test_send_sms_refuses_it_and_send_personalised_sends_it(sandbox: Sandbox) -> None:
    """/sms has no place: refused before the network. /sms/json: accepted by the sandbox,
    which checks the node's entity_id."""
    client = KaleyraClient(sid=sandbox.sid, api_key=sandbox.api_key, base_url=sandbox.base_url)
    async with client:
        with pytest.raises(ValidationError) as info:
            await client.send(message(), ["+919876500001"])
        assert (info.value.field, info.value.rule) == ("entity_id", "json_only")
        assert sandbox.ledger_records() == []
        result = await client.send_personalised(
            [("+919876500001", message()), ("+919876500002", message(body="Other"))]
        )
    assert len(result.receipts) == 2 and len(sandbox.ledger_records()) == 2


def _config(sandbox: Sandbox | None, **dispatch: Any) -> Config:
    config = Config(
        sid=sandbox.sid if sandbox else "HX1",
        api_key=Secret(sandbox.api_key if sandbox else "k"),
        base_url=sandbox.base_url if sandbox else None,
        defaults=MessageDefaults(sender="KLRHXA", type="TXN", template_id=TEMPLATE),
    )
    return dataclasses.replace(
        config,
        pods={"IN": PodConfig(rate_per_s=100_000, burst=1000)},
        dispatch=DispatchConfig(max_wait_ms=1.0, **dispatch),
    )


async def test_an_entity_id_column_sends_by_sms_json_and_names_the_rows_it_cannot(
    sandbox: Sandbox,
) -> None:
    """Identical rows with an entity id: /sms/json, not /sms; an OTP or flash row with one is
    invalid, naming why; rows without one keep /sms."""
    records = [{"to": f"+9198765{n:05d}", "body": "Same", "entity_id": ENTITY} for n in range(150)]
    records.append({"to": "+919876599990", "body": "1234 is your code", "type": "OTP",
                    "entity_id": ENTITY})  # fmt: skip
    records.append({"to": "+919876599991", "body": "Same", "flash": "1", "entity_id": ENTITY})
    records += [{"to": f"+9198764{n:05d}", "body": "Same"} for n in range(100)]
    rows = [{"type": "", "flash": "", "entity_id": "", **r} for r in records]
    seen: list[Any] = []
    summary = await bulk(RecordSource(rows), _config(sandbox), on_results=seen.extend)
    by_row = {r.row: r for r in seen}
    assert [by_row[n].error_code for n in (151, 152)] == ["invalid_entity_id"] * 2
    assert all(by_row[n].status == "sent" for n in by_row if n not in (151, 152))
    assert summary.requests_by_endpoint == {"sms/json": 2, "sms": 1}
    assert len(sandbox.ledger_records()) == 250


async def test_without_sms_json_an_entity_id_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    """personalised = "single": a default or a column entity id is a configuration error."""

    def kaleyra(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    records = [{"to": "+919876500001", "body": "Hi", "entity_id": ENTITY}]
    with pytest.raises(ConfigError, match="entity_id goes only in /sms/json"):
        await bulk(RecordSource(records), _config(None, personalised="single"),
                   transport=httpx.MockTransport(kaleyra))  # fmt: skip
    source = tmp_path / "in.csv"
    source.write_text("to\n+919876500001\n")
    run = await run_cli(
        "send-bulk", source, "--sender", "KLRHXA", "--body", "Hi", "--template-id", TEMPLATE,
        "--entity-id", ENTITY, "--personalised", "single", "--dry-run",
        env=cli_env(KALEYRA_SID="HX1", KALEYRA_API_KEY="k"),
    )  # fmt: skip
    assert run.returncode == 2 and b"entity_id goes only in /sms/json" in run.stderr


async def test_the_entity_id_option_reaches_every_request(sandbox: Sandbox, tmp_path: Path) -> None:
    """send-bulk --entity-id: identical rows go as /sms/json requests carrying it."""
    source = tmp_path / "in.csv"
    source.write_text("to\n" + "".join(f"+9198765{n:05d}\n" for n in range(120)))
    out = tmp_path / "out.ndjson"
    args = ("send-bulk", source, "--base-url", sandbox.base_url, "--sender", "KLRHXA", "--body",
            "Hi", "--template-id", TEMPLATE, "--entity-id", ENTITY)  # fmt: skip
    dry = await run_cli(*args, "--dry-run", env=cli_env(sandbox))
    assert dry.returncode == 0, dry.stderr.decode()
    assert plan_line(dry.stderr.decode()) == {"sms/json": 2}
    run = await run_cli(*args, "--out", out, env=cli_env(sandbox))
    assert run.returncode == 0, run.stderr.decode()
    results = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["status"] for r in results] == ["sent"] * 120
    assert len({r["request_id"] for r in results}) == 2
