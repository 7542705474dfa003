"""The socket shell around the pure handler: an ``asyncio.Protocol`` that parses with httptools.

Chosen over uvicorn and granian serving the same handler ("Sandbox ceiling" in
docs/performance-notes.md): the request path is httptools' C parser, one call to
:func:`handle`, and one ``transport.write``.

HTTP behaviour: HTTP/1.1 keep-alive, pipelining (responses leave in request order, even when
some are delayed), ``Content-Length`` and chunked request bodies (httptools decodes chunks),
bodies above 1 MiB get 413 and the connection is closed, malformed requests get 400 and close.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any, Final

import httptools
import orjson

from ._callback_sender import CallbackSender
from ._callbacks import DeliveryTruth, SandboxCallbacks, plan_receipts
from ._config import SandboxConfig
from ._handler import handle
from ._ledger import LedgerWriter
from ._state import SandboxState
from ._stats import SandboxStats
from ._values import LedgerRecord, Request, Response

__all__ = ["Sandbox", "monotonic_wall_clock"]

logger = logging.getLogger(__name__)

MAX_REQUEST_BODY_BYTES: Final = 1 << 20

_STATUS_LINES: Final = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii") for s in HTTPStatus
}
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


def monotonic_wall_clock() -> Callable[[], float]:
    """A clock in epoch seconds that never jumps: the wall time at start plus monotonic time."""
    wall0 = time.time()
    mono0 = time.monotonic()
    monotonic = time.monotonic
    return lambda: wall0 + (monotonic() - mono0)


def _serialize(response: Response, keep_alive: bool) -> bytes:
    head = _STATUS_LINES.get(response.status) or f"HTTP/1.1 {response.status} \r\n".encode()
    extra = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in response.headers)
    return b"%scontent-type: application/json\r\ncontent-length: %d\r\n%s%s\r\n%s" % (
        head,
        len(response.body),
        extra,
        b"" if keep_alive else b"connection: close\r\n",
        response.body,
    )


class _Connection(asyncio.Protocol):
    """One client connection: feeds bytes to httptools and answers each complete request."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_bytes = 0
        #: The last delayed response not yet sent; later responses wait for it (pipelining).
        self._tail: asyncio.Task[None] | None = None

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._sandbox._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sandbox._connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError:
            self._fail(400, "malformed HTTP request")

    # -- httptools callbacks --

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes <= MAX_REQUEST_BODY_BYTES:
            self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        keep_alive = parser.should_keep_alive()
        if self._body_bytes > MAX_REQUEST_BODY_BYTES:
            self._fail(413, f"request body over {MAX_REQUEST_BODY_BYTES} bytes")
            return
        path, _, query = self._url.partition(b"?")
        request = Request(
            method=parser.get_method().decode("ascii"),
            path=path.decode("latin-1"),
            query=query.decode("latin-1"),
            headers=self._headers,
            body=b"".join(self._body),
        )
        response = self._sandbox._handle(request)
        tail = self._tail
        if response.delay_ms <= 0 and (tail is None or tail.done()):
            self._act(response, keep_alive)
        else:
            self._tail = self._sandbox._spawn(self._act_later(response, keep_alive, tail))

    # -- answering --

    async def _act_later(
        self, response: Response, keep_alive: bool, previous: asyncio.Task[None] | None
    ) -> None:
        if response.delay_ms > 0:
            await asyncio.sleep(response.delay_ms / 1000)
        if previous is not None:
            await asyncio.wait({previous})
        self._act(response, keep_alive)

    def _act(self, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if response.action == "reset":
            self._reset(transport)
            return
        transport.write(_serialize(response, keep_alive))
        if not keep_alive:
            transport.close()

    def _reset(self, transport: asyncio.Transport) -> None:
        """Close with a TCP RST: the client sees a connection reset, not a clean EOF."""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()

    def _fail(self, status: int, message: str) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        body = orjson.dumps(
            {"code": "E400", "message": message, "data": [], "error": {"message": message}}
        )
        transport.write(_serialize(Response(status=status, body=body), keep_alive=False))
        transport.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Sandbox:
    """A Kaleyra-compatible SMS server running in the current event loop.

    Use it as ``async with Sandbox(SandboxConfig(...)) as sandbox:``; it listens on
    ``config.host:config.port`` (a free port by default) until the block ends.

    Args:
        config: the behaviour; defaults to :class:`SandboxConfig`'s defaults.
        clock: epoch seconds for rate limiting, delivery statuses and timestamps; tests pass a
            fake one. Defaults to :func:`monotonic_wall_clock`.
        id_factory: makes request ids (default: UUID4s, seeded by ``config.seed``).
        callbacks: send delivery receipts for messages whose request (or ``/sms/json`` node)
            names a ``callback_profile_id`` (and answer ``/sms/status`` from the same fates).
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        id_factory: Callable[[], str] | None = None,
        callbacks: SandboxCallbacks | None = None,
    ) -> None:
        self.config = config or SandboxConfig()
        self.state = SandboxState(self.config, id_factory=id_factory)
        self._clock = clock or monotonic_wall_clock()
        self.callbacks: CallbackSender | None = None
        if callbacks is not None:
            self.state.delivery_truth = DeliveryTruth(callbacks, self.config.seed)
            self.callbacks = CallbackSender(
                callbacks, self._clock, keep_in_memory=self.config.keep_in_memory
            )
        self._server: asyncio.Server | None = None
        self._ledger: LedgerWriter | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._port: int | None = None
        self._closed = False

    # -- lifecycle --

    async def start(self) -> None:
        """Open the ledger and start listening. Raises ``OSError`` if the port is taken."""
        if self._closed or self._server is not None:
            raise RuntimeError("a Sandbox can be started once")
        config = self.config
        if config.ledger_path is not None:
            self._ledger = LedgerWriter(
                config.ledger_path, flush_interval_s=config.flush_interval_s
            )
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self), config.host, config.port, reuse_address=True
            )
        except BaseException:
            if self._ledger is not None:
                self._ledger.close()
            raise
        self._port = self._server.sockets[0].getsockname()[1]
        if self._ledger is not None:
            self._flusher = asyncio.create_task(self._ledger.run())
        if self.callbacks is not None:
            await self.callbacks.start()
        logger.info("sandbox listening on %s", self.base_url)

    async def aclose(self) -> None:
        """Stop listening, drop connections and pending responses, flush the ledger. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
        for task in [*self._tasks, *([self._flusher] if self._flusher else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._ledger is not None:
            self._ledger.close()
        if self.callbacks is not None:
            await self.callbacks.aclose()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- what tests and benchmarks read --

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        if self._port is None:
            raise RuntimeError("the sandbox is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port``: what a client uses as its base URL (``/v1/<SID>/...`` follows)."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def sid(self) -> str:
        return self.config.sid

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def stats(self) -> SandboxStats:
        """Request counts by status, faults, arrival times, the busiest second."""
        return self.state.stats

    def ledger_records(self) -> list[LedgerRecord]:
        """Every accepted recipient message since start (or the last reset), in order."""
        return self.state.ledger_records()

    def reset(self) -> None:
        """Forget statistics, sender IDs, issued messages and in-memory ledger records."""
        self.state.reset()

    # -- internals used by _Connection --

    def _handle(self, request: Request) -> Response:
        now_s = self._clock()
        response = handle(self.state, request, now_s)
        if response.acceptance is not None:
            if self._ledger is not None:
                self._ledger.append(response.acceptance)
            if self.callbacks is not None:
                response = self._plan_callbacks(response, now_s)
        return response

    def _plan_callbacks(self, response: Response, now_s: float) -> Response:
        """Schedule the receipts of an accepted request's messages that asked for them (as its
        route recorded on the acceptance); hold its answer back when they are to arrive first."""
        acceptance = response.acceptance
        truth = self.state.delivery_truth
        assert acceptance is not None and truth is not None and self.callbacks is not None
        if acceptance.receipts is None and acceptance.node_receipts is None:
            return response
        issued = self.state.issued.get(acceptance.request_id)
        planned, early = plan_receipts(
            truth,
            request_id=acceptance.request_id,
            asks=acceptance.receipt_asks(),
            failures=issued.failures if issued is not None else None,
            accepted_s=now_s,
        )
        if not planned:
            return response
        self.callbacks.schedule(planned)
        if not early:
            return response
        hold_ms = truth.config.early_hold_s * 1000
        return dataclasses.replace(response, delay_ms=response.delay_ms + hold_ms)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
