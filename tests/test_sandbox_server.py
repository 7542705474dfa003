"""The sandbox over a real loopback socket: HTTP framing, keep-alive, resets, ledger file."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from kaleyra_async.sandbox import FaultSpec, Sandbox, SandboxConfig
from tests.conftest import TEMPLATE_ID, A, B, FakeClock

SEND = {
    "to": f"{A},{B}",
    "body": "Hello",
    "type": "TXN",
    "sender": "KLRHXA",
    "template_id": TEMPLATE_ID,
}


def client_for(sandbox: Sandbox) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{sandbox.base_url}/v1/{sandbox.sid}",
        headers={"api-key": sandbox.api_key},
        timeout=5.0,
    )


async def test_send_over_http_is_202_and_in_the_ledger(sandbox: Sandbox) -> None:
    """A JSON send over a socket answers 202 and its recipients are in ledger_records()."""
    async with client_for(sandbox) as client:
        response = await client.post("/sms", json=SEND)
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    ids = [d["message_id"] for d in response.json()["data"]]
    assert [(r.message_id, r.recipient) for r in sandbox.ledger_records()] == list(
        zip(ids, [A, B], strict=True)
    )
    assert sandbox.base_url.startswith("http://127.0.0.1:")


async def test_form_send_over_http(sandbox: Sandbox) -> None:
    """Form-encoded sends work over the socket too."""
    async with client_for(sandbox) as client:
        response = await client.post("/messages", data={**SEND, "to": A, "body": "form"})
    assert (response.status_code, response.json()["body"]) == (202, "form")


async def test_chunked_request_bodies_are_accepted(sandbox: Sandbox) -> None:
    """A chunked request body (no Content-Length) is decoded and handled."""

    async def chunks() -> AsyncIterator[bytes]:
        body = orjson.dumps(SEND)
        yield body[:10]
        yield body[10:]

    async with client_for(sandbox) as client:
        response = await client.post(
            "/sms", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 202


async def test_keep_alive_serves_many_requests_on_one_connection(sandbox: Sandbox) -> None:
    """Several requests share one TCP connection."""
    peers = set()
    async with client_for(sandbox) as client:
        for _ in range(5):
            response = await client.post("/sms", json=SEND)
            assert response.status_code == 202
            stream = response.extensions["network_stream"]
            peers.add(stream.get_extra_info("client_addr"))
    assert len(peers) == 1
    assert sandbox.stats.requests_total == 5


async def read_responses(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    """Read `count` HTTP responses framed by Content-Length."""
    responses = []
    for _ in range(count):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(":")[1]) for line in lines if line.startswith("content-length")
        )
        responses.append((status, await reader.readexactly(length)))
    return responses


def raw_request(sandbox: Sandbox, path: str, body: dict[str, Any]) -> bytes:
    payload = orjson.dumps(body)
    return (
        f"POST /v1/{sandbox.sid}{path} HTTP/1.1\r\nhost: x\r\napi-key: {sandbox.api_key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    ).encode() + payload


async def test_pipelined_requests_are_answered_in_order(sandbox: Sandbox) -> None:
    """Requests written back to back on one connection get their answers in request order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sandbox.port)
    try:
        writer.write(
            raw_request(sandbox, "/sms", SEND)
            + raw_request(sandbox, "/sms", {"to": A})
            + raw_request(sandbox, "/messages", {"to": B, "sender": "KLRHXA", "body": "third"})
        )
        answers = await read_responses(reader, 3)
    finally:
        writer.close()
    assert [status for status, _ in answers] == [202, 400, 202]
    assert orjson.loads(answers[2][1])["body"] == "third"


def seed_for(pattern: list[bool], probability: float) -> int:
    """A seed whose first draws fault (True) or not (False) as in `pattern`."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if [rng.random() < probability for _ in pattern] == pattern:
            return seed
    raise AssertionError("no seed found")


async def test_a_delayed_answer_holds_back_later_pipelined_ones() -> None:
    """When the first answer is slow, the second still waits for it (in-order pipelining)."""
    config = SandboxConfig(
        faults=FaultSpec((("slow", 0.5),)), seed=seed_for([True, False], 0.5), slow_ms=30
    )
    async with Sandbox(config) as sandbox:
        reader, writer = await asyncio.open_connection("127.0.0.1", sandbox.port)
        try:
            writer.write(
                raw_request(sandbox, "/sms", {**SEND, "to": A, "body": "first"})
                + raw_request(sandbox, "/sms", {"to": B, "sender": "KLRHXA", "body": "second"})
            )
            answers = await read_responses(reader, 2)
        finally:
            writer.close()
    assert [orjson.loads(body)["body"] for _, body in answers] == ["first", "second"]
    assert sandbox.stats.faults == {"slow": 1}


async def test_rate_limit_answers_429_with_retry_after() -> None:
    """Over --rate within one second (fake clock) the sandbox answers 429 with Retry-After."""
    clock = FakeClock()
    async with (
        Sandbox(SandboxConfig(rate_per_s=2), clock=clock) as sandbox,
        client_for(sandbox) as client,
    ):
        statuses = [(await client.post("/sms", json=SEND)).status_code for _ in range(2)]
        throttled = await client.post("/sms", json=SEND)
        clock.now_s += 1.0
        after = await client.post("/sms", json=SEND)
    assert statuses == [202, 202]
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "1"
    assert throttled.json()["code"] == "E429"
    assert after.status_code == 202
    assert len(sandbox.ledger_records()) == 6


async def test_reset_before_closes_without_accepting() -> None:
    """reset_before drops the connection and puts nothing in the ledger."""
    config = SandboxConfig(faults=FaultSpec((("reset_before", 1.0),)))
    async with Sandbox(config) as sandbox, client_for(sandbox) as client:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.post("/sms", json=SEND)
    assert sandbox.ledger_records() == []
    assert sandbox.stats.by_status == {"reset": 1}


async def test_reset_after_accept_closes_but_the_recipients_are_accepted() -> None:
    """reset_after_accept drops the connection, yet the recipients ARE in the ledger."""
    config = SandboxConfig(faults=FaultSpec((("reset_after_accept", 1.0),)))
    async with Sandbox(config) as sandbox, client_for(sandbox) as client:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.post("/sms", json=SEND)
    assert [(r.recipient, r.fault) for r in sandbox.ledger_records()] == [
        (A, "reset_after_accept"),
        (B, "reset_after_accept"),
    ]


async def test_500_after_accept_answers_500_and_accepts() -> None:
    """500_after_accept answers a 500 envelope although the recipients were accepted."""
    config = SandboxConfig(faults=FaultSpec((("500_after_accept", 1.0),)))
    async with Sandbox(config) as sandbox, client_for(sandbox) as client:
        response = await client.post("/sms", json=SEND)
    assert (response.status_code, response.json()["code"]) == (500, "E500")
    assert len(sandbox.ledger_records()) == 2


async def test_slow_fault_makes_client_read_timeouts_fire() -> None:
    """A slow answer outlasts a short client read timeout; the message was still accepted."""
    config = SandboxConfig(faults=FaultSpec((("slow", 1.0),)), slow_ms=10_000)
    async with Sandbox(config) as sandbox, client_for(sandbox) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/sms", json=SEND, timeout=httpx.Timeout(5.0, read=0.05))
    assert len(sandbox.ledger_records()) == 2


async def test_stats_endpoint_reports_the_sliding_window_max() -> None:
    """GET /_sandbox/stats gives the busiest sliding second by the sandbox's own clock."""
    clock = FakeClock()
    async with Sandbox(SandboxConfig(), clock=clock) as sandbox, client_for(sandbox) as client:
        for step in (0.0, 0.3, 0.3, 0.3, 0.5, 0.5):
            clock.now_s += step
            await client.post("/sms", json=SEND)
        stats = (await client.get(f"{sandbox.base_url}/_sandbox/stats")).json()
        await client.post(f"{sandbox.base_url}/_sandbox/reset")
        after_reset = (await client.get(f"{sandbox.base_url}/_sandbox/stats")).json()
    # Arrivals at 0, .3, .6, .9, 1.4, 1.9: the first four share a second, no later four do.
    assert stats["max_requests_in_1s"] == 4
    assert stats["requests_total"] == 6
    assert stats["accepted_recipients"] == 12
    assert stats["mean_rate_per_s"] == pytest.approx(5 / 1.9)
    assert after_reset["requests_total"] == 0
    assert sandbox.ledger_records() == []


async def test_latency_delays_answers_without_blocking_others() -> None:
    """With latency, concurrent requests overlap instead of queueing behind each other."""
    async with Sandbox(SandboxConfig(latency_ms=500)) as sandbox, client_for(sandbox) as client:
        loop = asyncio.get_running_loop()
        handled_at_first_answer: list[int] = []

        async def post() -> httpx.Response:
            response = await client.post("/sms", json=SEND)
            if not handled_at_first_answer:
                handled_at_first_answer.append(sandbox.stats.requests_total)
            return response

        started = loop.time()
        responses = await asyncio.gather(*(post() for _ in range(10)))
        elapsed = loop.time() - started
    assert {r.status_code for r in responses} == {202}
    # Causality, not speed: all ten were handled before the first answer left, which a server
    # that queued each request behind the previous one's latency could never do.
    assert handled_at_first_answer == [10]
    assert elapsed >= 0.5  # and the latency was applied


async def test_malformed_http_gets_400_and_close(sandbox: Sandbox) -> None:
    """Garbage on the socket is answered with 400 and the connection is closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sandbox.port)
    try:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        data = await reader.read()
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in data


async def test_ledger_file_is_flushed_on_close(tmp_path: Path) -> None:
    """With ledger_path, every accepted recipient is a line in the file once the sandbox stops."""
    ledger = tmp_path / "ledger.ndjson"
    config = SandboxConfig(ledger_path=str(ledger), flush_interval_s=3600)
    async with Sandbox(config) as sandbox, client_for(sandbox) as client:
        await client.post("/sms", json=SEND)
        await client.post("/sms", json={"to": A})  # rejected: not in the ledger
    lines = [orjson.loads(line) for line in ledger.read_bytes().splitlines()]
    assert [line["recipient"] for line in lines] == [A, B]
    assert lines == [r.to_dict() for r in sandbox.ledger_records()]


async def test_closing_twice_is_safe() -> None:
    """aclose() is idempotent and a closed sandbox cannot be restarted."""
    sandbox = Sandbox()
    await sandbox.start()
    await sandbox.aclose()
    await sandbox.aclose()
    with pytest.raises(RuntimeError):
        await sandbox.start()
