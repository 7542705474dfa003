"""The delivery-receipt receiver on ``aiohttp.web`` (the only aiohttp.web import).

Every request is one receipt (any path; GET query, JSON POST or form POST). The answer is 200
only once the receipt is committed and synced (:class:`~._receipt_store.ReceiptStore`), 503
when it could not be stored (the sender retries), and 4xx, storing nothing, for a request that
is not a receipt we can read. A shared secret, when configured, is compared in constant time and
never logged. Stopping drains: no new connections, in-flight receipts are finished, then the
store commits what it holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import Final

import aiohttp.web as web

from ._config import Secret
from ._exceptions import StoreError
from ._receipt_fields import (
    DEFAULT_FIELD_NAMES,
    MAX_RECEIPT_BODY_BYTES,
    ReceiptRefused,
    receipt_from_request,
)
from ._receipt_store import ReceiptStore

__all__ = ["ReceiverSettings", "make_app", "serve_receipts"]

logger = logging.getLogger(__name__)

_OK: Final = b'{"ok":true}'
_STORE: Final = web.AppKey("store", ReceiptStore)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverSettings:
    """How the receiver listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = 8788
    #: Our field name -> the callback's variable name.
    names: Mapping[str, str] = dataclasses.field(default_factory=lambda: DEFAULT_FIELD_NAMES)
    secret_header: str | None = None
    secret: Secret | None = None
    #: A body not read in full within this long gets 408 (a slow or stalled client).
    body_timeout_s: float = 10.0
    #: On SIGTERM / SIGINT, how long in-flight receipts may take to finish.
    drain_timeout_s: float = 10.0
    #: How long a commit waits for another process's lock on the database before the 503.
    busy_timeout_s: float = 5.0
    clock: Callable[[], float] = time.time


_SETTINGS: Final = web.AppKey("settings", ReceiverSettings)


def _answer(status: int, reason: str | None = None) -> web.Response:
    if reason is None:
        return web.Response(status=status, body=_OK, content_type="application/json")
    return web.json_response({"ok": False, "error": reason}, status=status)


async def _receive(request: web.Request) -> web.Response:
    settings = request.app[_SETTINGS]
    if settings.secret is not None and settings.secret_header is not None:
        given = request.headers.get(settings.secret_header, "")
        expected = settings.secret.reveal()
        if not hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), expected.encode("utf-8")
        ):
            return _answer(401, "missing or wrong shared secret")
    if request.method not in ("GET", "POST"):
        return _answer(405, f"method {request.method} not allowed (GET or POST)")
    try:
        if request.content.is_eof():  # the usual case: all of it came with the headers
            body = await request.read()
        else:
            async with asyncio.timeout(settings.body_timeout_s):
                body = await request.read()
    except TimeoutError:
        stalled = _answer(408, f"body not received within {settings.body_timeout_s:g} s")
        stalled.force_close()  # the rest of the body is not waited for
        return stalled
    try:
        record = receipt_from_request(
            method=request.method,
            content_type=request.content_type if body else "",
            query=request.query_string,
            body=body,
            names=settings.names,
            now_s=settings.clock(),
        )
    except ReceiptRefused as refused:
        return _answer(refused.status, refused.reason)
    try:
        await request.app[_STORE].add([record])
    except StoreError as exc:
        response = _answer(503, str(exc))
        response.headers["Retry-After"] = "5"
        return response
    return _answer(200)


def make_app(store: ReceiptStore, settings: ReceiverSettings) -> web.Application:
    """The receiver as an ``aiohttp.web`` application over an open store."""
    app = web.Application(client_max_size=MAX_RECEIPT_BODY_BYTES)
    app[_STORE] = store
    app[_SETTINGS] = settings
    app.router.add_route("*", "/{tail:.*}", _receive)
    return app


async def serve_receipts(
    db_path: str,
    settings: ReceiverSettings,
    *,
    stop: asyncio.Event,
    ready: Callable[[str], None],
) -> None:
    """Open the store, listen until ``stop`` is set, drain, commit and close.

    Args:
        db_path: the SQLite file.
        settings: where to listen and what to accept.
        stop: set it to stop (the CLI sets it on SIGTERM / SIGINT).
        ready: called with ``http://HOST:PORT`` once the socket listens.
    """
    async with ReceiptStore(db_path, busy_timeout_s=settings.busy_timeout_s) as store:
        runner = web.AppRunner(
            make_app(store, settings),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=settings.drain_timeout_s,
            # After a refusal, the unread rest of a body is waited for at most this long.
            lingering_time=1.0,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
            await site.start()
            host, port = runner.addresses[0][:2]
            shown = f"[{host}]" if ":" in host else host
            ready(f"http://{shown}:{port}")
            await stop.wait()
            logger.info("stopping: draining in-flight receipts")
        finally:
            await runner.cleanup()
