"""The sandbox's delivery callbacks: seeded fates shared with /sms/status, the receipts planned
for a request (duplicates, out of order, early), and sending them to a receiver with retries."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import aiohttp.web
import httpx
import orjson
import pytest

from kaleyra_async import KaleyraClient, Message
from kaleyra_async._delivery import normalize_status, verdict_of
from kaleyra_async._receipt_store import ReceiptReader
from kaleyra_async.sandbox import DEFAULT_SID, Sandbox, SandboxCallbacks, SandboxConfig
from kaleyra_async.sandbox._callbacks import DeliveryTruth, plan_receipts
from kaleyra_async.sandbox._values import ReceiptAsk
from tests.conftest import (
    TEMPLATE_ID,
    A,
    B,
    call,
    free_port,
    make_state,
    ok_fields,
    running_receiver,
    sandbox_sends,
)
from tests.conftest import send as send_fields

pytestmark = pytest.mark.timeout(60)

CONFIG = SandboxCallbacks(url="http://127.0.0.1:1/dlr", duplicate=0.2, out_of_order=0.2, early=0.1)
NUMBERS = tuple(f"9198765{n:05d}" for n in range(100))


def plan(request_id: str, seed: int = 7) -> tuple[list[dict[str, str]], bool]:
    planned, early = plan_receipts(
        DeliveryTruth(CONFIG, seed),
        request_id=request_id,
        asks=[ReceiptAsk(n, d, "KLRHXA", {"ref": "run-1"}) for n, d in enumerate(NUMBERS, 1)],
        failures=None,
        accepted_s=1000.0,
    )
    return [dict(p.fields, due=str(p.due_s)) for p in planned], early


def test_fates_are_seeded_and_cover_the_documented_outcomes() -> None:
    """The same seed gives the same fates; the mix holds every outcome with documented traces."""
    truth = DeliveryTruth(CONFIG, 7)
    fates = [truth.fate(f"req:{n}") for n in range(4000)]
    assert fates == [DeliveryTruth(CONFIG, 7).fate(f"req:{n}") for n in range(4000)]
    assert fates != [DeliveryTruth(CONFIG, 8).fate(f"req:{n}") for n in range(4000)]
    outcomes = collections.Counter(f.outcome for f in fates)
    assert set(outcomes) == {"delivered", "undelivered", "not_sent", "failed"}
    assert 0.8 < outcomes["delivered"] / 4000 < 0.95
    assert {f.trace for f in fates if f.outcome == "undelivered"} <= {
        "INV-NUMBER",
        "ABSENT-SUB",
        "HANDSET-ERR",
        "BARRED",
        "NET-ERR",
        "MEM-EXEC",
    }


def test_fail_rules_win_over_the_draw() -> None:
    fate = DeliveryTruth(CONFIG, 7).fate("req:1", ("NotSent", "KLR-INV-NUMBER"))
    assert (fate.outcome, fate.trace) == ("not_sent", "KLR-INV-NUMBER")


def test_plan_has_sent_and_final_per_message_with_duplicates_and_reordering() -> None:
    """Every message gets a Sent and a final; some finals twice; some finals before the Sent."""
    receipts, _ = plan("req-a")
    by_id: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
    for r in receipts:
        by_id[r["id"]].append(r)
    assert len(by_id) == 100
    duplicated = reordered = 0
    for items in by_id.values():
        states = [normalize_status(i["status"]) for i in items]
        assert states[0] == "sent" and states[1] in {
            "delivered",
            "undelivered",
            "not_sent",
            "failed",
        }
        duplicated += len(items) == 3
        reordered += float(items[1]["due"]) < float(items[0]["due"])
        assert {i["ref"] for i in items} == {"run-1"} and items[0]["recipient"] in NUMBERS
    assert duplicated and reordered


def test_some_requests_have_their_receipts_before_the_answer() -> None:
    early = [plan(f"req-{n}")[1] for n in range(200)]
    assert 0 < sum(early) < 200


def test_status_poll_tells_the_same_story() -> None:
    """Sent until the fate's delay has passed, then the fate, in the status API's spelling."""
    truth = DeliveryTruth(CONFIG, 7)
    fate = truth.fate("req:3")
    assert truth.status_at("req:3", None, fate.delay_s / 2) == ("Sent", "SENT")
    status, trace = truth.status_at("req:3", None, fate.delay_s + 0.01)
    assert (normalize_status(status), trace) == (fate.outcome, fate.trace)


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_an_sms_request_asks_receipts_for_every_recipient_with_its_refs(form: bool) -> None:
    """/sms: a callback profile asks receipts for every recipient, echoing the request's refs
    and sender; without one, none."""
    state = make_state()
    asked = send_fields(state, ok_fields(callback_profile_id="IN_x", ref="r1", ref2="z"), form=form)
    assert asked.acceptance is not None
    assert list(asked.acceptance.receipt_asks()) == [
        ReceiptAsk(n, digits, "KLRHXA", {"ref": "r1", "ref2": "z"})
        for n, digits in enumerate((A[1:], B[1:]), 1)
    ]
    silent = send_fields(state, ok_fields(ref="r1"), form=form)
    assert silent.acceptance is not None and list(silent.acceptance.receipt_asks()) == []


def json_node(n: int, **fields: str) -> dict[str, str]:
    return {"to": f"+9198765{n:05d}", "body": f"Hi {n}", "template_id": TEMPLATE_ID, **fields}


#: /sms/json nodes with their own refs and senders; only nodes 1 and 3 ask for receipts.
SOME_ASK = {
    "type": "TXN",
    "from": "KLRHXA",
    "ref1": "batch-7",
    "sms": [
        json_node(0, ref="row-0", callback_profile_id="IN_a"),
        json_node(1, ref="row-1"),
        json_node(2, ref="row-2", ref1="own", **{"from": "KLRHXB", "callback_profile_id": "IN_b"}),
        json_node(3),
    ],
}
#: A top-level callback profile and node-level refs: every node asks, each with its own ref.
ALL_ASK = {
    "type": "TXN",
    "from": "KLRHXA",
    "callback_profile_id": "IN_a",
    "sms": [json_node(n, ref=f"row-{n}") for n in range(3)],
}


def test_json_nodes_ask_receipts_each_with_their_own_refs_and_sender() -> None:
    """/sms/json: a node asks receipts when its profile or the top level's is set, with its
    own refs over the top level's and its own sender; the others ask none."""
    some = call(make_state(), "POST", f"/v1/{DEFAULT_SID}/sms/json", body=SOME_ASK).acceptance
    assert some is not None
    assert [(a.n, a.recipient, a.source, a.refs) for a in some.receipt_asks()] == [
        (1, "919876500000", "KLRHXA", {"ref": "row-0", "ref1": "batch-7"}),
        (3, "919876500002", "KLRHXB", {"ref": "row-2", "ref1": "own"}),
    ]
    every = call(make_state(), "POST", f"/v1/{DEFAULT_SID}/sms/json", body=ALL_ASK).acceptance
    assert every is not None
    assert [(a.n, a.refs) for a in every.receipt_asks()] == [
        (n + 1, {"ref": f"row-{n}"}) for n in range(3)
    ]
    none = {**SOME_ASK, "sms": [json_node(0, ref="a"), json_node(1, ref="b")]}
    silent = call(make_state(), "POST", f"/v1/{DEFAULT_SID}/sms/json", body=none).acceptance
    assert silent is not None and list(silent.receipt_asks()) == []


async def json_receipts(
    tmp_path: Path, body: dict[str, Any]
) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """Post one /sms/json request to a sandbox sending receipts to a running receiver: the
    message ids accepted, and the receipts the receiver acknowledged, by message id."""
    async with running_receiver(tmp_path / "r.sqlite") as url:
        callbacks = SandboxCallbacks(url=f"{url}/dlr", max_delay_s=0.1, early=0)
        async with Sandbox(SandboxConfig(seed=5, fail_rules=()), callbacks=callbacks) as sandbox:
            async with httpx.AsyncClient(
                base_url=f"{sandbox.base_url}/v1/{sandbox.sid}",
                headers={"api-key": sandbox.api_key},
            ) as http:
                answer = await http.post("/sms/json", json=body)
            assert answer.status_code == 202, answer.text
            assert sandbox.callbacks is not None
            await asyncio.wait_for(sandbox.callbacks.wait_idle(), 20)
            acknowledged = sandbox.callbacks.acknowledged
    assert acknowledged is not None
    by_id: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for receipt in acknowledged:
        by_id[receipt["id"]].append(receipt)
    return [d["message_id"] for d in answer.json()["data"]], by_id


async def test_only_the_json_nodes_that_ask_get_receipts_each_with_its_ref_and_source(
    tmp_path: Path,
) -> None:
    """Nodes 1 and 3 name a callback profile: only their receipts arrive, each echoing its
    node's ref (ref1 from the node, else the top level) and its node's sender as source."""
    ids, receipts = await json_receipts(tmp_path, SOME_ASK)
    assert set(receipts) == {ids[0], ids[2]}
    want = {
        ids[0]: ("919876500000", "KLRHXA", "row-0", "batch-7"),
        ids[2]: ("919876500002", "KLRHXB", "row-2", "own"),
    }
    for message_id, items in receipts.items():
        assert len(items) >= 2  # a Sent and a final
        seen = {(r["recipient"], r["source"], r["ref"], r["ref1"]) for r in items}
        assert seen == {want[message_id]}


async def test_a_top_level_profile_gives_every_json_node_receipts_with_its_own_ref(
    tmp_path: Path,
) -> None:
    ids, receipts = await json_receipts(tmp_path, ALL_ASK)
    assert set(receipts) == set(ids)
    for n, message_id in enumerate(ids):
        assert {r["ref"] for r in receipts[message_id]} == {f"row-{n}"}


async def test_send_personalised_receipts_carry_each_nodes_ref(tmp_path: Path) -> None:
    """Through the client: messages with their own refs and a callback profile; the receipts
    the receiver stores carry each node's ref (and reach the right number)."""
    db = tmp_path / "r.sqlite"
    nodes = [
        (
            f"+9198765{n:05d}",
            Message(
                body=f"Hi {n}",
                sender="KLRHXA",
                type="TXN",
                template_id=TEMPLATE_ID,
                callback_profile_id="IN_profile",
                ref=f"order-{n}",
            ),
        )
        for n in range(4)
    ]
    async with running_receiver(db) as url:
        callbacks = SandboxCallbacks(url=f"{url}/dlr", max_delay_s=0.1, early=0)
        async with Sandbox(SandboxConfig(seed=5, fail_rules=()), callbacks=callbacks) as sandbox:
            client = KaleyraClient(
                sid=sandbox.sid, api_key=sandbox.api_key, base_url=sandbox.base_url
            )
            async with client:
                result = await client.send_personalised(nodes)
            assert sandbox.callbacks is not None
            await asyncio.wait_for(sandbox.callbacks.wait_idle(), 20)
    ids = result.message_ids()
    with ReceiptReader(db) as reader:
        found = reader.by_message_id(ids.values())
    assert set(found) == set(ids.values())
    for n, (to, _) in enumerate(nodes):
        assert {(v.ref, v.recipient) for v in found[ids[to]]} == {(f"order-{n}", to[1:])}


async def send(sandbox: Sandbox, count: int, *, profile: bool = True) -> list[str]:
    """Send ``count`` requests of 5 recipients each; the message ids accepted."""
    pairs = await sandbox_sends(sandbox, count, 5, profile="IN_profile" if profile else None)
    return [message_id for message_id, _ in pairs]


@pytest.mark.parametrize("method", ["get", "json", "form"])
async def test_receipts_reach_the_receiver_and_match_the_truth(tmp_path: Path, method: str) -> None:
    """Every acknowledged receipt is stored; each message's verdict is its fate; /sms/status
    agrees once the fates are known; requests without a profile get none."""
    db = tmp_path / "r.sqlite"
    ledger = tmp_path / "callbacks.ndjson"
    async with running_receiver(db) as url:
        callbacks = SandboxCallbacks(
            url=f"{url}/dlr",
            method=method,
            max_delay_s=0.2,  # type: ignore[arg-type]
            duplicate=0.2,
            out_of_order=0.2,
            early=0.2,
            ledger_path=str(ledger),
        )
        async with Sandbox(SandboxConfig(seed=3, fail_rules=()), callbacks=callbacks) as sandbox:
            ids = await send(sandbox, 20)
            await send(sandbox, 2, profile=False)
            assert sandbox.callbacks is not None
            await asyncio.wait_for(sandbox.callbacks.wait_idle(), 30)
            stats = sandbox.callbacks.stats
            assert stats.given_up == 0 and stats.acknowledged == stats.planned
            truth = sandbox.state.delivery_truth
            assert truth is not None
            async with httpx.AsyncClient(
                base_url=f"{sandbox.base_url}/v1/{sandbox.sid}",
                headers={"api-key": sandbox.api_key},
            ) as http:
                polled = (
                    await http.get("/sms/status", params={"message_ids": ",".join(ids[:50])})
                ).json()
    acked = [orjson.loads(line) for line in ledger.read_bytes().splitlines()]
    assert len(acked) == stats.acknowledged
    with ReceiptReader(db) as reader:
        stored = {(r.message_id, r.status, r.timestamp) for r in reader.all()}
        assert {(a["id"], a["status"], a["timestamp"]) for a in acked} <= stored
        found = reader.by_message_id(ids)
    assert set(found) == set(ids)
    for message_id in ids:
        assert verdict_of(found[message_id]).state == truth.fate(message_id).outcome
    for item in polled["data"]:
        assert normalize_status(item["status"]) == truth.fate(item["message_id"]).outcome


async def test_refused_receipts_are_retried(tmp_path: Path) -> None:
    """A receiver that answers 503 twice per receipt still gets each one, on the third try."""
    seen: collections.Counter[str] = collections.Counter()

    async def flaky(request: aiohttp.web.Request) -> aiohttp.web.Response:
        key = (await request.read()).decode()
        seen[key] += 1
        return aiohttp.web.Response(status=200 if seen[key] >= 3 else 503)

    app = aiohttp.web.Application()
    app.router.add_post("/dlr", flaky)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        callbacks = SandboxCallbacks(
            url=f"http://127.0.0.1:{port}/dlr",
            retry_spacing_s=0.01,
            max_delay_s=0.05,
            duplicate=0,
            early=0,
        )
        async with Sandbox(SandboxConfig(seed=1), callbacks=callbacks) as sandbox:
            await send(sandbox, 1)
            assert sandbox.callbacks is not None
            await asyncio.wait_for(sandbox.callbacks.wait_idle(), 20)
            assert sandbox.callbacks.stats.acknowledged == 10
            assert sandbox.callbacks.stats.retried == 20
    finally:
        await runner.cleanup()
    assert set(seen.values()) == {3}


@pytest.mark.parametrize("profile", [True, 7], ids=["true", "number"])
def test_an_sms_request_s_callback_profile_must_be_text(profile: object) -> None:
    """/sms refuses a callback profile that is not text (E400, nothing accepted), as /sms/json
    does: a JSON true or number is no profile id."""
    state = make_state()
    refused = send_fields(state, ok_fields(callback_profile_id=profile))
    assert refused.status == 400 and refused.acceptance is None
    assert b"callback_profile_id must be a string" in refused.body
