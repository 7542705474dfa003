"""Two small programs for the receipts step (``python -m benchmarks._receipt_load ...``):

* ``load URL SECONDS CONNECTIONS``: POST JSON receipts (a unique id each) over ``CONNECTIONS``
  keep-alive connections, 2 pipelined at a time, for ``SECONDS``; print
  ``{"ok", "other", "elapsed_s"}`` as JSON.
* ``empty``: an ``aiohttp.web`` server whose handler reads the body and answers 200, nothing
  else: the ceiling the receiver is compared with. Prints ``listening on http://HOST:PORT``.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time

import orjson

#: Requests written at once on each connection.
_PIPELINE = 2


async def _load(url: str, seconds: float, connections: int) -> dict[str, float]:
    host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
    ids = itertools.count()
    counts = {"ok": 0, "other": 0}
    deadline = time.monotonic() + seconds

    async def one_connection(worker: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < deadline:
                # A few requests written at once (HTTP/1.1 pipelining): a cheaper generator.
                requests = []
                for _ in range(_PIPELINE):
                    n = next(ids)
                    body = orjson.dumps(
                        {
                            "id": f"bench-{worker}-{n}:1",
                            "recipient": f"9198{n:08d}",
                            "status": "Delivered",
                            "status_trace": "DELIVRD",
                            "timestamp": "2025-04-17 18:35:20",
                            "ref": f"bench-{n // 100}",
                        }
                    )
                    requests.append(
                        b"POST /dlr HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json"
                        b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                writer.write(b"".join(requests))
                for _ in range(_PIPELINE):
                    status = int((await reader.readuntil(b"\r\n")).split()[1])
                    length = 0
                    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    await reader.readexactly(length)
                    counts["ok" if status == 200 else "other"] += 1
        finally:
            writer.close()

    started = time.monotonic()
    async with asyncio.TaskGroup() as tasks:
        for worker in range(connections):
            tasks.create_task(one_connection(worker))
    return {**counts, "elapsed_s": time.monotonic() - started}


async def _empty() -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"listening on http://{host}:{port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str]) -> int:
    if argv[:1] == ["load"]:
        url, seconds, connections = argv[1], float(argv[2]), int(argv[3])
        print(orjson.dumps(asyncio.run(_load(url, seconds, connections))).decode())
        return 0
    if argv[:1] == ["empty"]:
        asyncio.run(_empty())
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
