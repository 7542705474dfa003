"""The default network seam: one ``aiohttp.ClientSession`` (the only aiohttp import).

HTTP/1.1 with keep-alive; bodies are read whole and decompressed by aiohttp. Timeouts come from
:class:`~._config.HttpConfig`: ``connect`` bounds the TCP/TLS connect, ``pool + connect`` bounds
getting a connection, ``read`` bounds each socket read; aiohttp has no write timeout, so a stuck
write ends at the read timeout. aiohttp retries only idempotent methods on a dropped keep-alive
connection, so a POST is written at most once per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from ._config import HttpConfig
from ._exceptions import ConnectError, ResponseLostError, TransportError
from ._http import HttpAnswer

__all__ = ["AiohttpSeam"]


class AiohttpSeam:
    """:class:`~._http.HttpSeam` over aiohttp; the session is opened on first use, in the loop."""

    def __init__(self, http: HttpConfig) -> None:
        self._max_connections = http.max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=http.pool_timeout_s + http.connect_timeout_s,
            sock_connect=http.connect_timeout_s,
            sock_read=http.read_timeout_s,
        )
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        on_write: Callable[[], None] | None = None,
    ) -> HttpAnswer:
        session = self._session or self._open()
        data: bytes | _TimedBody | None = body or None
        if body and on_write is not None:
            data = _TimedBody(body, on_write)
        try:
            async with session.request(
                method, url, headers=headers, data=data, allow_redirects=False
            ) as response:
                return HttpAnswer(response.status, response.headers, await response.read())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _classified(exc, method, url) from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class _TimedBody(aiohttp.BytesPayload):
    """A body that calls ``on_write`` when aiohttp writes it (the headers go with it): on
    Python < 3.12 that is a task of its own, a loop iteration or more after the request began."""

    def __init__(self, body: bytes, on_write: Callable[[], None]) -> None:
        super().__init__(body)
        self._on_write: Callable[[], None] | None = on_write

    def _written(self) -> None:
        on_write, self._on_write = self._on_write, None
        if on_write is not None:
            on_write()

    async def write(self, writer: Any) -> None:  # aiohttp < 3.12 calls this one
        self._written()
        await super().write(writer)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        self._written()
        await super().write_with_length(writer, content_length)


def _classified(exc: Exception, method: str, url: str) -> TransportError:
    """ConnectError when nothing can have been sent, else ResponseLostError."""
    detail = str(exc) or type(exc).__name__
    never_sent = isinstance(
        exc,
        aiohttp.ConnectionTimeoutError  # connecting, or waiting for a pooled connection
        | aiohttp.ClientConnectorError  # refused, DNS, TLS handshake
        | aiohttp.InvalidURL
        | aiohttp.NonHttpUrlClientError,
    )
    if type(exc) is aiohttp.ClientConnectorError:  # not its TLS subclasses: they need the detail
        # aiohttp names its ssl setting ("ssl:default") even for a plain-http URL.
        detail = f"Cannot connect to host {exc.host}:{exc.port} [{exc.strerror}]"
    cls = ConnectError if never_sent else ResponseLostError
    return cls(f"{type(exc).__name__}: {detail}", method=method, url=url)
