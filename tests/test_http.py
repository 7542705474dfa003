"""Both network seams over a real loopback socket: success, and how each failure is classified.

"Never sent" failures must become ConnectError (safe to retry); anything that may have reached
the server must become ResponseLostError (fate unknown). A tiny asyncio server plays each part.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import httpx
import pytest

from kaleyra_async._client import KaleyraClient
from kaleyra_async._config import HttpConfig, PodConfig, RetryPolicy
from kaleyra_async._exceptions import ConnectError, KaleyraError, ResponseLostError
from kaleyra_async._http_aiohttp import AiohttpSeam
from kaleyra_async._http_httpx import HttpxSeam
from kaleyra_async._models import Message
from tests.conftest import free_port

A = "+919876543210"
MESSAGE = Message(body="hello", type="TXN", sender="KLRHXA", template_id="1107161234567890123")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TRANSPORTS = [pytest.param("aiohttp", id="aiohttp"), pytest.param("httpx", id="httpx")]


def ok_body(recipient: str = A) -> bytes:
    return json.dumps(
        {"id": "r", "data": [{"message_id": "r:1", "recipient": recipient[1:]}], "error": {}}
    ).encode()


def http_response(body: bytes, *extra_headers: str, status: str = "202 Accepted") -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *extra_headers]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            await read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            break
        writer.write(http_response(ok_body()))
        await writer.drain()
    writer.close()


async def answer_gzip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(http_response(gzip.compress(ok_body()), "Content-Encoding: gzip"))
    await writer.drain()
    writer.close()


async def answer_bad_gzip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(http_response(b"not gzip at all", "Content-Encoding: gzip"))
    await writer.drain()
    writer.close()


async def close_before_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def close_after_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.close()


async def close_mid_response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(http_response(ok_body())[:-5])
    await writer.drain()
    writer.close()


async def garbage_response(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"this is not HTTP at all\r\n\r\n")
    await writer.drain()
    writer.close()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.Event().wait()  # until the test's server is closed


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(handler: Handler) -> str:
        async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)  # type: ignore[arg-type]
            try:
                await handler(reader, writer)
            except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for task in tasks:
        task.cancel()
    for server in servers:
        server.close()
        await server.wait_closed()


def make_client(
    base_url: str, transport: Literal["aiohttp", "httpx"], **http: Any
) -> KaleyraClient:
    config = HttpConfig(transport=transport, **http)
    return KaleyraClient(
        sid="SID",
        api_key="k",
        base_url=base_url,
        http=config,
        retry=RetryPolicy(max_attempts=1),
        rate_limit=PodConfig(rate_per_s=1e6, burst=1000),
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_success_and_keepalive(serve: Any, transport: Any) -> None:
    """A normal answer is parsed; several requests share the connection."""
    url = await serve(answer_ok)
    async with make_client(url, transport) as client:
        for _ in range(3):
            result = await client.send(MESSAGE, [A])
            assert result.message_ids() == {A: "r:1"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_gzip_body_is_decoded(serve: Any, transport: Any) -> None:
    """A gzip-encoded answer is decoded once (httpx decodes; aiohttp does not double-decode)."""
    url = await serve(answer_gzip)
    async with make_client(url, transport) as client:
        result = await client.send(MESSAGE, [A])
    assert result.request_id == "r"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(answer_bad_gzip, id="undecodable-gzip-body"),
        pytest.param(close_before_reading, id="closed-before-reading"),
        pytest.param(close_after_reading, id="closed-after-reading"),
        pytest.param(close_mid_response, id="closed-mid-response"),
        pytest.param(garbage_response, id="not-http"),
    ],
)
async def test_connection_lost_after_connect_is_fate_unknown(
    serve: Any, transport: Any, handler: Handler
) -> None:
    """Once connected, any loss may mean the request was read: ResponseLostError."""
    url = await serve(handler)
    async with make_client(url, transport) as client:
        with pytest.raises(ResponseLostError) as info:
            await client.send(MESSAGE, [A])
    assert info.value.fate_unknown
    assert info.value.method == "POST"
    assert info.value.url == f"{url}/v1/SID/sms"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_read_timeout_is_fate_unknown(serve: Any, transport: Any) -> None:
    """A server that never answers: ResponseLostError after the read timeout."""
    url = await serve(never_answer)
    async with make_client(url, transport, read_timeout_s=0.1) as client:
        with pytest.raises(ResponseLostError, match="Timeout"):
            await client.send(MESSAGE, [A])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connection_refused_is_never_sent(transport: Any) -> None:
    """A closed port: ConnectError, safe to retry; for a plain-http URL the message does not
    speak of TLS (aiohttp's own says "ssl:default")."""
    async with make_client(f"http://127.0.0.1:{free_port()}", transport) as client:
        with pytest.raises(ConnectError) as info:
            await client.send(MESSAGE, [A])
    assert info.value.safe_to_retry
    assert not info.value.fate_unknown
    assert "ssl" not in str(info.value)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_pool_timeout_is_never_sent(serve: Any, transport: Any) -> None:
    """With the only connection busy, waiting too long for one is ConnectError."""
    serving = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        serving.set()
        await asyncio.Event().wait()  # until the test's server is closed

    url = await serve(hold)
    # A generous connect timeout so that a slow first connect on a busy machine still gets the
    # connection; aiohttp bounds the pool wait by pool + connect, so keep the sum small.
    async with make_client(
        url, transport, max_connections=1, pool_timeout_s=0.05, connect_timeout_s=0.5
    ) as client:
        busy = asyncio.create_task(client.send(MESSAGE, [A]))
        await asyncio.wait_for(serving.wait(), timeout=10)  # the first request holds the one
        with pytest.raises(ConnectError):
            await client.send(MESSAGE, [A])
        assert not busy.done()
        busy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await busy


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        pytest.param(httpx.ConnectError("x"), ConnectError, id="connect-error"),
        pytest.param(httpx.ConnectTimeout("x"), ConnectError, id="connect-timeout"),
        pytest.param(httpx.PoolTimeout("x"), ConnectError, id="pool-timeout"),
        pytest.param(httpx.UnsupportedProtocol("x"), ConnectError, id="unsupported-protocol"),
        pytest.param(httpx.ReadTimeout("x"), ResponseLostError, id="read-timeout"),
        pytest.param(httpx.WriteTimeout("x"), ResponseLostError, id="write-timeout"),
        pytest.param(httpx.ReadError("x"), ResponseLostError, id="read-error"),
        pytest.param(httpx.WriteError("x"), ResponseLostError, id="write-error"),
        pytest.param(httpx.RemoteProtocolError("x"), ResponseLostError, id="protocol-error"),
        pytest.param(httpx.LocalProtocolError("x"), ResponseLostError, id="local-protocol"),
        pytest.param(httpx.CloseError("x"), ResponseLostError, id="close-error"),
        pytest.param(httpx.ProxyError("x"), ResponseLostError, id="proxy-error-unsure"),
        pytest.param(httpx.DecodingError("x"), ResponseLostError, id="undecodable-body"),
    ],
)
async def test_httpx_seam_classifies_every_error(
    exc: httpx.HTTPError, cls: type[KaleyraError]
) -> None:
    """The httpx seam's one mapping: never-sent errors are ConnectError, the rest
    ResponseLostError, naming the method, the URL and httpx's error."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    seam = HttpxSeam(HttpConfig(), transport=httpx.MockTransport(fail))
    with pytest.raises(cls) as info:
        await seam.request("POST", "http://h/v1/S/sms", [], b"{}")
    assert type(info.value) is cls
    assert (info.value.method, info.value.url) == ("POST", "http://h/v1/S/sms")
    assert type(exc).__name__ in str(info.value)
    await seam.aclose()


async def test_a_users_httpx_client_is_used_and_left_open(serve: Any) -> None:
    """A KaleyraClient given an httpx.AsyncClient sends through it (its hooks run) and does not
    close it; redirects are not followed even when that client would."""
    url = await serve(answer_ok)
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [hook]}, follow_redirects=True) as own:
        async with KaleyraClient(
            sid="SID", api_key="k", base_url=url, httpx_client=own,
            rate_limit=PodConfig(rate_per_s=1e6, burst=1000),
        ) as client:  # fmt: skip
            result = await client.send(MESSAGE, [A])
        assert result.message_ids() == {A: "r:1"}
        assert seen == ["/v1/SID/sms"]
        assert not own.is_closed


async def test_a_redirect_is_refused_not_followed() -> None:
    """A 307 to another URL is an error of its own: a followed POST could be sent twice."""
    calls: list[str] = []

    def redirect(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(307, headers={"Location": "http://elsewhere/v1/SID/sms"})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(redirect), follow_redirects=True
    ) as own:
        client = KaleyraClient(sid="SID", api_key="k", base_url="http://h", httpx_client=own)
        with pytest.raises(KaleyraError, match="307"):
            await client.send(MESSAGE, [A])
        await client.aclose()
    assert calls == ["http://h/v1/SID/sms"]


@pytest.mark.parametrize("seam", [AiohttpSeam, HttpxSeam])
async def test_a_seam_closes_twice_harmlessly(serve: Any, seam: Any) -> None:
    """Closing a seam before first use, after use, and again, is harmless."""
    await seam(HttpConfig()).aclose()
    url = await serve(answer_ok)
    used = seam(HttpConfig())
    answer = await used.request("POST", f"{url}/x", [("Content-Type", "application/json")], b"{}")
    assert answer.status == 202
    assert orjson_id(answer.body) == "r"
    await used.aclose()
    await used.aclose()


def orjson_id(body: bytes) -> str:
    return str(json.loads(body)["id"])


@pytest.mark.parametrize("seam", [AiohttpSeam, HttpxSeam])
async def test_a_seam_says_when_the_request_is_written_and_only_then(serve: Any, seam: Any) -> None:
    """``on_write`` runs once, after the connection is up and before the answer is read (what
    the shared limiter logs as the request's moment); a request that never left never calls it."""
    url = await serve(answer_ok)
    used = seam(HttpConfig())
    events: list[str] = []
    answer = await used.request(
        "POST", f"{url}/x", [("Content-Type", "application/json")], b"{}",
        on_write=lambda: events.append("written"),
    )  # fmt: skip
    events.append(f"answered {answer.status}")
    with pytest.raises(ConnectError):
        await used.request(
            "POST", f"http://127.0.0.1:{free_port()}/x", [], b"{}",
            on_write=lambda: events.append("refused but written"),
        )  # fmt: skip
    await used.aclose()
    assert events == ["written", "answered 202"]
