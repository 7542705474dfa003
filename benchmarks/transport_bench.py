"""Loopback benchmark of the HTTP transports kaleyra_async can use.

Run::

    .venv/bin/python benchmarks/transport_bench.py [--seconds 3] [--concurrency 64]

A trivial, fast HTTP/1.1 server (a raw asyncio protocol answering every request with a canned
202 and a 100-receipt JSON body) runs in another process. For each client variant, in its own
process, ``--concurrency`` tasks POST a 100-recipient JSON send body in a loop for
``--seconds`` after a short warm-up, and the requests per second are printed:

* ``httpx-default-no-sniffio``: httpx's own transport with ``sniffio`` made unimportable
* ``httpx-default``: httpx's own transport (``sniffio`` installed, as we require)
* ``httpx-aiohttp``: httpx over the ``httpx-aiohttp`` package's ``AiohttpTransport``
* ``kaleyra-aiohttp``: our default network seam, ``kaleyra_async._http_aiohttp.AiohttpSeam``
* ``kaleyra-httpx``: our httpx seam, ``kaleyra_async._http_httpx.HttpxSeam``
* ``kaleyra-client``: the client's send path for validated rows, as the bulk pipeline uses it
  (limiter set out of reach, retry, parse) over the default seam
* ``bare-aiohttp``: ``aiohttp.ClientSession`` alone, for reference

``httpx-aiohttp`` comes with the ``bench`` extra. What the comparison found: "HTTP transport" and
"HTTP seam" in docs/performance-notes.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import time
from typing import Any

VARIANTS = (
    "httpx-default-no-sniffio",
    "httpx-default",
    "httpx-aiohttp",
    "kaleyra-aiohttp",
    "kaleyra-httpx",
    "kaleyra-client",
    "bare-aiohttp",
)
RECIPIENTS = [f"+9198765{i:05d}" for i in range(100)]


def _response() -> bytes:
    body = json.dumps(
        {
            "id": "bench",
            "type": "TXN",
            "totalCount": 100,
            "data": [
                {"message_id": f"bench:{i + 1}", "recipient": r[1:]}
                for i, r in enumerate(RECIPIENTS)
            ],
            "error": {},
        }
    ).encode()
    head = (
        "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


class _Server(asyncio.Protocol):
    RESPONSE = _response()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(self.RESPONSE)


def _serve(sock: socket.socket) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Server, sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


async def _client(variant: str, url: str, seconds: float, concurrency: int) -> float:
    if variant == "httpx-default-no-sniffio":
        sys.modules["sniffio"] = None  # type: ignore[assignment]
    import aiohttp
    import httpx

    from kaleyra_async._models import Message
    from kaleyra_async._protocol import build_send

    request = build_send(Message(body="Your order has shipped", type="TXN"), RECIPIENTS)
    headers = dict(request.headers)
    done = 0
    stop_at = 0.0
    post: Any

    client: Any = None
    session: Any = None
    seam: Any = None
    if variant.startswith("httpx-default"):
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(limits=limits))
    elif variant == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport as PackageTransport

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = httpx.AsyncClient(transport=PackageTransport(limits=limits))
    elif variant in ("kaleyra-aiohttp", "kaleyra-httpx"):
        from kaleyra_async._config import HttpConfig
        from kaleyra_async._http_aiohttp import AiohttpSeam
        from kaleyra_async._http_httpx import HttpxSeam

        http = HttpConfig(max_connections=concurrency)
        seam = AiohttpSeam(http) if variant == "kaleyra-aiohttp" else HttpxSeam(http)
    elif variant == "kaleyra-client":
        from kaleyra_async._client import KaleyraClient
        from kaleyra_async._config import HttpConfig, PodConfig

        client = KaleyraClient(
            sid="BENCH",
            api_key="bench-key",
            base_url=url.rsplit("/v1/", 1)[0],
            http=HttpConfig(max_connections=concurrency),
            rate_limit=PodConfig(rate_per_s=1e9, burst=1_000_000),
        )
    elif variant == "bare-aiohttp":
        connector = aiohttp.TCPConnector(limit=concurrency)
        session = aiohttp.ClientSession(connector=connector)
    else:
        raise SystemExit(f"unknown variant {variant}")

    message = Message(body="Your order has shipped", type="TXN")

    if variant == "kaleyra-client":
        from kaleyra_async._client import validated_send

        send = validated_send(client)

        async def post() -> None:
            result = await send(message, RECIPIENTS)
            assert len(result.receipts) == 100

    elif seam is not None:
        header_list = list(headers.items())

        async def post() -> None:
            answer = await seam.request("POST", url, header_list, request.content)
            assert answer.status == 202

    elif session is not None:

        async def post() -> None:
            async with session.post(url, data=request.content, headers=headers) as response:
                await response.read()
                assert response.status == 202

    else:

        async def post() -> None:
            response = await client.post(url, content=request.content, headers=headers)
            assert response.status_code == 202

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await post()
            done += 1

    stop_at = time.perf_counter() + 0.5  # warm-up: open the connections
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    done = 0
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if client is not None:
        await client.aclose()
    if seam is not None:
        await seam.aclose()
    if session is not None:
        await session.close()
    return done / elapsed


def _run_client(variant: str, url: str, seconds: float, concurrency: int, out: Any) -> None:
    out.put(asyncio.run(_client(variant, url, seconds, concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    server = ctx.Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}/v1/BENCH/sms"
    print(
        f"# {args.concurrency} tasks, {args.seconds:.0f} s each, 100-recipient JSON POST, "
        f"cpus={os.cpu_count()}"
    )
    try:
        for variant in args.variants:
            out = ctx.Queue()
            proc = ctx.Process(
                target=_run_client, args=(variant, url, args.seconds, args.concurrency, out)
            )
            proc.start()
            rate = out.get(timeout=args.seconds * 4 + 60)
            proc.join()
            print(f"{variant:26s} {rate:9.0f} req/s", flush=True)
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()
