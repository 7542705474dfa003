"""The httpx network seam, for a user's own ``httpx.AsyncClient`` or transport (the only httpx
import).

With a user's client, its own settings apply (proxies, TLS, timeouts, event hooks) and it is not
closed here; redirects are never followed, whatever it says, as a followed POST could be sent
twice. Without one, a client of our own is built from :class:`~._config.HttpConfig` around the
given transport (or httpx's own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import httpx

from ._config import HttpConfig
from ._exceptions import ConnectError, ResponseLostError
from ._http import HttpAnswer

__all__ = ["HttpxSeam"]

#: httpx errors raised before any byte of the request can have left.
_NEVER_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


class HttpxSeam:
    """:class:`~._http.HttpSeam` over an ``httpx.AsyncClient``."""

    def __init__(
        self,
        http: HttpConfig,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._owned = client is None
        if client is None:
            limits = httpx.Limits(
                max_connections=http.max_connections,
                max_keepalive_connections=http.max_connections,
            )
            client = httpx.AsyncClient(
                transport=transport or httpx.AsyncHTTPTransport(limits=limits),
                timeout=httpx.Timeout(
                    connect=http.connect_timeout_s,
                    read=http.read_timeout_s,
                    write=http.write_timeout_s,
                    pool=http.pool_timeout_s,
                ),
                trust_env=False,
            )
        self._client = client

    async def request(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        on_write: Callable[[], None] | None = None,
    ) -> HttpAnswer:
        extensions = {} if on_write is None else {"trace": _headers_sent(on_write)}
        try:
            response = await self._client.request(
                method,
                url,
                headers=headers,
                content=body or None,
                follow_redirects=False,
                extensions=extensions,
            )
        except (httpx.TransportError, httpx.DecodingError) as exc:
            cls = ConnectError if isinstance(exc, _NEVER_SENT) else ResponseLostError
            detail = str(exc) or type(exc).__name__
            raise cls(f"{type(exc).__name__}: {detail}", method=method, url=url) from exc
        return HttpAnswer(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()


def _headers_sent(on_write: Callable[[], None]) -> Callable[[str, object], Awaitable[None]]:
    """An httpcore ``trace`` hook calling ``on_write`` as the request's headers go out."""

    async def trace(event: str, info: object) -> None:
        if event.endswith(".send_request_headers.started"):
            on_write()

    return trace
