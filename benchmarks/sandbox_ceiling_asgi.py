"""The sandbox's pure handler behind ASGI, only to measure uvicorn and granian against our server.

Not used by the sandbox itself; see "Sandbox ceiling" in docs/performance-notes.md.
"""

from __future__ import annotations

from typing import Any

from kaleyra_async.sandbox import SandboxConfig
from kaleyra_async.sandbox._handler import handle
from kaleyra_async.sandbox._server import monotonic_wall_clock
from kaleyra_async.sandbox._state import SandboxState
from kaleyra_async.sandbox._values import Request

_state = SandboxState(SandboxConfig(keep_in_memory=False))
_clock = monotonic_wall_clock()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    request = Request(
        method=scope["method"],
        path=scope["path"],
        query=scope["query_string"].decode("latin-1"),
        headers=headers,
        body=body,
    )
    response = handle(_state, request, _clock())
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [
                (b"content-type", b"application/json"),
                *((k.encode(), v.encode()) for k, v in response.headers),
            ],
        }
    )
    await send({"type": "http.response.body", "body": response.body})
