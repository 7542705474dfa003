"""The one network seam of the client: a request in; status, headers and body out.

:class:`HttpSeam` is all the client knows of HTTP. Two implementations exist:
``_http_aiohttp.AiohttpSeam`` (the default) and ``_http_httpx.HttpxSeam`` (for a user who hands
in an ``httpx.AsyncClient`` or transport: proxies, custom TLS, respx in their own tests). The
client's tests run against both.

A seam raises our errors itself, once, from its library's:

* :class:`~._exceptions.ConnectError` when no byte of the request can have left (refused, DNS,
  TLS handshake, connect or pool timeout, unsupported URL): safe to send again;
* :class:`~._exceptions.ResponseLostError` for anything else (read timeout, reset after the
  connection was up, a malformed or undecodable answer): the request may have been accepted.
  When unsure, it is this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

__all__ = ["HttpAnswer", "HttpSeam"]


class HttpAnswer(NamedTuple):
    """A whole HTTP response."""

    status: int
    #: Case-insensitive response headers.
    headers: Mapping[str, str]
    body: bytes


class HttpSeam(Protocol):
    """Sends one request, reads the whole answer; closes its connections on :meth:`aclose`."""

    async def request(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        on_write: Callable[[], None] | None = None,
    ) -> HttpAnswer:
        """Send ``method url`` with ``headers`` and ``body`` (empty: none); read the answer.

        A POST is written at most once per call: the seam never resends it on its own.
        ``on_write`` is called right before the request's bytes are handed to the socket (after
        any connect), at most once; not at all if the library does not say (a mock transport).

        Raises:
            ConnectError: the request never left.
            ResponseLostError: the request may have left; no complete answer was read.
        """
        ...

    async def aclose(self) -> None:
        """Close the connections this seam opened. Closing twice is safe."""
        ...
