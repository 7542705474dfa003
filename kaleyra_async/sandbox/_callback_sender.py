"""Sending the planned delivery receipts to ``--callback-url``, with retries, and the ledger of
receipts the receiver acknowledged.

A small HTTP/1.1 client over asyncio streams (the sandbox imports neither the client nor its
HTTP libraries): ``connections`` workers, each on one keep-alive connection, take receipts as
they fall due. A receipt answered 2xx is acknowledged: it is counted, kept in memory when asked,
and appended to the callback ledger (buffered like the send ledger, flushed every 0.1 s and on
close). Any other answer, or no answer, is tried again ``retries`` times, the spacing doubling
from ``retry_spacing_s``; then it is given up and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import logging
import os
from collections.abc import Callable
from typing import Any, BinaryIO, Final
from urllib.parse import urlencode, urlsplit

import orjson

from ._callbacks import PlannedReceipt, SandboxCallbacks

__all__ = ["CallbackSender", "CallbackStats"]

logger = logging.getLogger(__name__)

_EXCHANGE_TIMEOUT_S: Final = 5.0
_FLUSH_INTERVAL_S: Final = 0.1


@dataclasses.dataclass(slots=True)
class CallbackStats:
    """What the sender did."""

    planned: int = 0
    attempts: int = 0
    acknowledged: int = 0
    retried: int = 0
    given_up: int = 0


@dataclasses.dataclass(order=True, slots=True)
class _Due:
    due_s: float
    seq: int
    fields: dict[str, str] = dataclasses.field(compare=False)
    attempt: int = dataclasses.field(default=0, compare=False)


class CallbackSender:
    """Sends planned receipts when due; an object started and closed by the sandbox.

    Args:
        config: where and how to send.
        clock: epoch seconds (the sandbox's clock, so that due times agree with it).
        keep_in_memory: keep every acknowledged receipt in :attr:`acknowledged`.
    """

    def __init__(
        self, config: SandboxCallbacks, clock: Callable[[], float], *, keep_in_memory: bool
    ) -> None:
        self.config = config
        self.stats = CallbackStats()
        self.acknowledged: list[dict[str, Any]] | None = [] if keep_in_memory else None
        self._clock = clock
        parts = urlsplit(config.url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = parts.path or "/"
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._ready: asyncio.Queue[_Due] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._ledger: BinaryIO | None = None
        self._buffer: list[bytes] = []

    async def start(self) -> None:
        if self.config.ledger_path is not None:
            self._ledger = _open_ledger(self.config.ledger_path)
        self._tasks = [asyncio.create_task(self._dispatch())]
        self._tasks += [
            asyncio.create_task(self._work()) for _ in range(max(1, self.config.connections))
        ]
        if self._ledger is not None:
            self._tasks.append(asyncio.create_task(self._flush_periodically()))

    async def aclose(self) -> None:
        """Stop sending (receipts not yet acknowledged are dropped), flush the ledger."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._ledger is not None:
            self._flush()
            os.fsync(self._ledger.fileno())
            self._ledger.close()
            self._ledger = None

    def schedule(self, planned: list[PlannedReceipt]) -> None:
        """Queue receipts to send when each falls due."""
        for receipt in planned:
            heapq.heappush(self._heap, _Due(receipt.due_s, next(self._seq), receipt.fields))
        self.stats.planned += len(planned)
        if planned:
            self._idle.clear()
            self._wake.set()

    async def wait_idle(self) -> None:
        """Until every receipt scheduled so far is acknowledged or given up."""
        await self._idle.wait()

    # -- internals --

    def _check_idle(self) -> None:
        if not self._heap and self._ready.empty() and self._busy == 0:
            self._idle.set()

    async def _dispatch(self) -> None:
        heap = self._heap
        while True:
            self._wake.clear()
            now = self._clock()
            while heap and heap[0].due_s <= now:
                self._busy += 1
                self._ready.put_nowait(heapq.heappop(heap))
            wait_s = heap[0].due_s - now if heap else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()

    async def _work(self) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                item = await self._ready.get()
                try:
                    self.stats.attempts += 1
                    status = 0
                    try:
                        if conn is None:
                            conn = await asyncio.open_connection(self._host, self._port)
                        async with asyncio.timeout(_EXCHANGE_TIMEOUT_S):
                            status, keep = await self._exchange(conn, item.fields)
                        if not keep:
                            _close(conn)
                            conn = None
                    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                        _close(conn)
                        conn = None
                    if 200 <= status < 300:
                        self._acknowledge(item, status)
                    elif item.attempt < self.config.retries:
                        self.stats.retried += 1
                        spacing = self.config.retry_spacing_s * 2**item.attempt
                        item.attempt += 1
                        item.due_s = self._clock() + spacing
                        heapq.heappush(self._heap, item)
                        self._wake.set()
                    else:
                        self.stats.given_up += 1
                        logger.warning("callback for %s given up", item.fields.get("id"))
                finally:
                    self._busy -= 1
                    self._check_idle()
        finally:
            _close(conn)

    async def _exchange(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], fields: dict[str, str]
    ) -> tuple[int, bool]:
        reader, writer = conn
        method = self.config.method
        path, body, ctype = self._path, b"", ""
        if method == "get":
            path = f"{path}?{urlencode(fields)}"
        elif method == "json":
            body, ctype = orjson.dumps(fields), "application/json"
        else:
            body, ctype = urlencode(fields).encode(), "application/x-www-form-urlencoded"
        head = f"{'GET' if method == 'get' else 'POST'} {path} HTTP/1.1\r\nHost: {self._host}\r\n"
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length = 0
        keep = True
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
            elif name == "transfer-encoding":
                keep = False  # not expected from a receiver; read nothing more from it
        if length:
            await reader.readexactly(length)
        return status, keep

    def _acknowledge(self, item: _Due, status: int) -> None:
        self.stats.acknowledged += 1
        record = {**item.fields, "http_status": status, "attempt": item.attempt + 1}
        if self.acknowledged is not None:
            self.acknowledged.append(record)
        if self._ledger is not None:
            self._buffer.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def _flush(self) -> None:
        # A write of a few KiB into the page cache, like the send ledger's (see _ledger).
        if self._ledger is not None and self._buffer:
            self._ledger.write(b"".join(self._buffer))
            self._ledger.flush()
            self._buffer.clear()

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_INTERVAL_S)
            self._flush()


def _open_ledger(path: str) -> BinaryIO:
    # Appending, never truncating; opened once at start, like the send ledger (see _ledger).
    return open(path, "ab")


def _close(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    if conn is not None:
        conn[1].close()
