"""The HTTP transport under httpx, and the one place transport errors are classified.

:func:`build_transport` returns either httpx's own ``AsyncHTTPTransport`` (``transport="httpx"``)
or :class:`AiohttpTransport` (``"aiohttp"``, the default): a lean ``httpx.AsyncBaseTransport``
over one ``aiohttp.ClientSession``. On loopback (``benchmarks/transport_bench.py``) it is several
times faster than httpx's pool, whose cost grows with concurrency (encode/httpcore#1035, #928),
and faster than the ``httpx-aiohttp`` package, whose transport also maps
``aiohttp.ClientConnectionError`` (the parent of ``ServerDisconnectedError`` and connection
resets) to ``httpx.ConnectTimeout``: a request that may have been sent would look "never sent"
and be retried, possibly sending SMS twice. Our transport maps aiohttp's errors itself.

:func:`classify_error` turns an httpx transport or decoding error into our tree:

* :class:`~._exceptions.ConnectError` (never sent, safe to retry): connection refused, DNS
  failure, TLS handshake failure, connect timeout, pool timeout, unsupported URL.
* :class:`~._exceptions.ResponseLostError` (maybe sent, fate unknown): everything else, among
  them read and write timeouts, resets and closes after the connection was up, protocol errors
  and bodies that cannot be decoded. When unsure, it is this one.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import httpx

from ._config import HttpConfig
from ._exceptions import ConnectError, ResponseLostError, TransportError

__all__ = ["AiohttpTransport", "build_transport", "classify_error"]

logger = logging.getLogger(__name__)

#: httpx errors raised before any byte of the request can have left.
_NEVER_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


def build_transport(http: HttpConfig) -> httpx.AsyncBaseTransport:
    """Build the transport ``http.transport`` names, sized by ``http.max_connections``."""
    if http.transport == "httpx":
        limits = httpx.Limits(
            max_connections=http.max_connections, max_keepalive_connections=http.max_connections
        )
        return httpx.AsyncHTTPTransport(limits=limits)
    return AiohttpTransport(max_connections=http.max_connections)


def classify_error(exc: httpx.RequestError, *, method: str, url: str) -> TransportError:
    """Translate an httpx transport error into ConnectError or ResponseLostError.

    The message names the error class and its text, never request headers.
    """
    detail = str(exc) or type(exc).__name__
    message = f"{type(exc).__name__}: {detail}"
    cls = ConnectError if isinstance(exc, _NEVER_SENT) else ResponseLostError
    return cls(message, method=method, url=url)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx over one ``aiohttp.ClientSession``: HTTP/1.1 with keep-alive, bodies read whole.

    The session is created on first use, inside the running loop. Timeouts come from httpx's
    per-request ``timeout`` extension: ``connect`` bounds the TCP/TLS connect, ``pool`` plus
    ``connect`` bounds getting a connection, ``read`` bounds each socket read. aiohttp has no
    write timeout; a stuck write ends at the read timeout. aiohttp never resends a POST on a
    dropped keep-alive connection (it retries idempotent methods only), so a POST is sent at most
    once per ``handle_async_request``.

    Args:
        max_connections: connections open at once to one host.
        session: an existing session to use (it is closed by :meth:`aclose`).
    """

    def __init__(
        self, *, max_connections: int = 64, session: aiohttp.ClientSession | None = None
    ) -> None:
        self._max_connections = max_connections
        self._session = session
        self._timeouts: dict[tuple[tuple[str, float | None], ...], aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            # httpx decodes the body by the Content-Encoding httpx itself negotiated.
            auto_decompress=False,
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        client_timeout = self._timeout(request.extensions.get("timeout", {}))
        headers = [
            (name, value)
            for name, value in request.headers.multi_items()
            # aiohttp computes these itself from the body it sends.
            if name.lower() not in ("content-length", "transfer-encoding")
        ]
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=request.content or None,
                allow_redirects=False,
                timeout=client_timeout,
            ) as response:
                content = await response.read()
                status = response.status
                raw_headers = response.raw_headers
                reason = response.reason
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _to_httpx(exc, request) from exc
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("latin-1", "replace")
        return httpx.Response(
            status_code=status,
            headers=raw_headers,
            content=content,
            request=request,
            extensions=extensions,
        )

    async def send_raw(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        content: bytes,
        timeouts: Mapping[str, float | None],
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request without building httpx objects: the client's hot path.

        Same connections, timeouts and error mapping as :meth:`handle_async_request` (errors
        are raised as the same ``httpx.TransportError`` subclasses), without the httpx
        ``Request``/``Response`` and header objects, which cost about a third of the CPU of a
        one-recipient send (``benchmarks/README.md``).

        Returns:
            The status, the response headers (case-insensitive) and the whole body.
        """
        session = self._session or self._open()
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=content or None,
                allow_redirects=False,
                timeout=self._timeout(timeouts),
            ) as response:
                body = await response.read()
                return response.status, response.headers, _decoded(response.headers, body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _to_httpx(exc, httpx.Request(method, url)) from exc

    def _timeout(self, timeout: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
        key = tuple(timeout.items())
        cached = self._timeouts.get(key)
        if cached is None:
            connect_s = timeout.get("connect")
            pool_s = timeout.get("pool")
            cached = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None,
                connect=None if pool_s is None or connect_s is None else pool_s + connect_s,
                sock_connect=connect_s,
                sock_read=timeout.get("read"),
            )
        return cached

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _decoded(headers: Mapping[str, str], body: bytes) -> bytes:
    """Undo the Content-Encoding we offered (httpx's default Accept-Encoding: gzip, deflate)."""
    encoding = headers.get("Content-Encoding", "").strip().lower()
    if not body or encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:  # some servers send raw deflate without the zlib header
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error as exc:
        # The answer came but cannot be read: whatever it said, the fate is unknown.
        raise httpx.RemoteProtocolError(f"cannot decode a {encoding} body: {exc}") from exc
    return body  # an encoding we did not offer: leave it to the parser to complain


def _to_httpx(exc: Exception, request: httpx.Request) -> httpx.TransportError:
    """Map an aiohttp (or OS) error onto the httpx error with the same meaning for us."""
    message = str(exc) or type(exc).__name__
    if type(exc) is aiohttp.ClientConnectorError:  # not its TLS subclasses: they need the detail
        # aiohttp names its ssl setting ("ssl:default") even for a plain-http URL.
        message = f"Cannot connect to host {exc.host}:{exc.port} [{exc.strerror}]"
    mapped: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        mapped = httpx.ConnectTimeout  # connecting, or waiting for a pooled connection
    elif isinstance(exc, aiohttp.ClientConnectorError):
        mapped = httpx.ConnectError  # refused, DNS, TLS handshake: nothing was sent
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        mapped = httpx.UnsupportedProtocol
    elif isinstance(exc, asyncio.TimeoutError):
        mapped = httpx.ReadTimeout  # aiohttp.SocketTimeoutError and any other timeout
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        mapped = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientOSError | OSError):
        mapped = httpx.ReadError  # reset or closed after the connection was up
    else:
        mapped = httpx.TransportError  # unknown: classify_error treats it as maybe sent
    return mapped(message, request=request)
