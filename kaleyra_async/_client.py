"""KaleyraClient: the awaitable API over one network seam.

Every request takes one path (``_request_path``): per attempt it waits for the rate limiter,
sends through the seam (``_http``), and reads the answer (``_responses``), under the retry
policy (``_retry``). Sends validate everything before the first attempt.

The ``api-key`` header is read from the :class:`~._config.Secret` in this module only (see
``_secrecy`` for how it is kept out of reprs, logs and exceptions).

Each method is a thin step over the request path; most of this module's length is the public
docstrings. The rules it applies live elsewhere (``_send_checks``, ``_request_rules``,
``_protocol``, ``_responses``, ``_limiter_setup``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Final, Unpack

import anyio

from ._attempts import Attempts, ValidatedJsonSend, ValidatedSend
from ._config import (
    Config,
    HttpConfig,
    PodConfig,
    RedisConfig,
    RetryPolicy,
    Secret,
    check_account,
)
from ._exceptions import (
    ConfigError,
    KaleyraError,
    ValidationError,
)
from ._http import HttpSeam
from ._limiter_setup import make_limiter
from ._limits import (
    MAX_SENDER_IDS_PER_CREATE,
    MAX_SENDER_IDS_PER_DELETE,
    MAX_STATUS_IDS,
    default_type,
    resolve_host,
)
from ._models import Message, MessageFields, MessageStatus, SenderId, SenderIdResult, SendResult
from ._phone import PhoneNormalizer
from ._protocol import (
    Endpoint,
    build_create_sender_ids,
    build_delete_sender_ids,
    build_send,
    build_send_json,
    build_status,
)
from ._request_path import RequestPath
from ._request_rules import chunked, validate_json_nodes, validate_recipients
from ._responses import parse_send, parse_sender_ids, parse_status
from ._secrecy import HeaderSecret, encrypted_or_local
from ._send_checks import check_nodes, check_send
from ._senders import validate_sender_ids, validate_sender_names
from ._version import __version__

if TYPE_CHECKING:
    import httpx

__all__ = ["KaleyraClient", "validated_send", "validated_send_json"]

logger = logging.getLogger(__name__)

USER_AGENT: Final = f"kaleyra_async/{__version__}"


class KaleyraClient:
    """An asyncio client for Kaleyra's SMS API.

    Use it as an async context manager (or call :meth:`aclose`). One client may be shared by
    many tasks; its rate limiter is created on first use, inside the running loop.

    Args:
        sid: the account SID (the ``/v1/<SID>`` part of every URL).
        api_key: the API key, sent as the ``api-key`` header.
        pod: ``IN``, ``SG``, ``EU`` or ``NA``; picks the host and the default message type.
        base_url: scheme and host to use instead of the pod's, e.g. a sandbox URL.
        http: network library, body encoding, timeouts and pool size.
        retry: when and how often to resend.
        rate_limit: the pod's request rate, burst, recipients budget and host.
        otp_share: the part of the request rate OTP requests may use (they overtake bulk).
        country_prefix: prefix for numbers written without a country code, e.g. ``"+91"``.
        httpx_client: send through this ``httpx.AsyncClient`` (its proxies, TLS and timeouts
            apply; it is not closed by :meth:`aclose`).
        transport: send through httpx with this transport (e.g. ``httpx.MockTransport``).
        redis: share the rate limit with every process using the same Redis, SID and pod: a
            ``redis://`` URL or a :class:`~._config.RedisConfig` (see ``_redis_limiter``).

    Raises:
        ConfigError: an argument is invalid.
    """

    def __init__(
        self,
        *,
        sid: str,
        api_key: str | Secret,
        pod: str = "IN",
        base_url: str | None = None,
        http: HttpConfig | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: PodConfig | None = None,
        otp_share: float = 0.2,
        country_prefix: str | None = None,
        httpx_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        redis: RedisConfig | str | None = None,
        _sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self.pod = check_account(sid=sid, api_key=key, pod=pod, base_url=base_url, section="")
        self.sid = sid
        self._key = key
        self._http = http or HttpConfig()
        self._retry = retry or RetryPolicy()
        self._rate = rate_limit or PodConfig()
        if not 0 <= otp_share < 1:
            raise ConfigError("otp_share: must be in [0, 1)")
        self._sleep = _sleep
        self.host = resolve_host(self.pod, base_url=base_url, pod_host=self._rate.host)
        if not encrypted_or_local(self.host):
            logger.warning(
                "%s is plain HTTP to another machine: the API key and every message travel "
                "unencrypted; use https://",
                self.host,
            )
        self._base_url = f"{self.host}/v1/{sid}"
        self._normalize = PhoneNormalizer(country_prefix)
        self._redis = RedisConfig(url=redis) if isinstance(redis, str) else redis
        self._warned_template_data = False
        self._closed = False
        self._seam = self._make_seam(httpx_client, transport)
        self._path = RequestPath(
            self._seam,
            base_url=self._base_url,
            headers=(
                ("api-key", HeaderSecret(key.reveal())),
                ("Accept", "application/json"),
                ("User-Agent", USER_AGENT),
            ),
            key=key,
            pod=self.pod,
            retry=self._retry,
            sleep=_sleep,
            make_limiter=lambda: make_limiter(
                self._rate, otp_share=otp_share, redis=self._redis, scope=f"{sid}:{self.pod}"
            ),
            check_open=self._check_open,
        )
        #: The one request path (``_request_path``).
        self._call = self._path.call

    def _make_seam(
        self, client: httpx.AsyncClient | None, transport: httpx.AsyncBaseTransport | None
    ) -> HttpSeam:
        if client is not None or transport is not None or self._http.transport == "httpx":
            from ._http_httpx import HttpxSeam

            return HttpxSeam(self._http, client=client, transport=transport)
        from ._http_aiohttp import AiohttpSeam

        return AiohttpSeam(self._http)

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        httpx_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> KaleyraClient:
        """Build a client from a loaded :class:`~._config.Config` (seams as in the constructor)."""
        return cls(
            sid=config.sid,
            api_key=config.api_key,
            pod=config.pod,
            base_url=config.base_url,
            http=config.http,
            retry=config.retry,
            rate_limit=config.pod_config,
            otp_share=config.dispatch.otp_share,
            country_prefix=config.defaults.country_prefix,
            httpx_client=httpx_client,
            transport=transport,
            redis=config.redis if config.redis.url else None,
        )

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<KaleyraClient sid={self.sid!r} pod={self.pod!r} host={self.host!r}{state}>"

    async def __aenter__(self) -> KaleyraClient:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections. Closing twice is safe; any call after it raises."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._seam.aclose()
        finally:
            if self._path.close_limiter is not None:
                await self._path.close_limiter()

    def _check_open(self) -> None:
        if self._closed:
            raise KaleyraError("the KaleyraClient is closed")

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self, message: Message, recipients: Sequence[str], *, endpoint: Endpoint = "sms"
    ) -> SendResult:
        """Send one message to 1..100 recipients in one request.

        Args:
            message: the payload; validated against the pod's rules first.
            recipients: phone numbers; normalised to E.164 first.
            endpoint: ``"sms"`` or the legacy ``"messages"``.

        Returns:
            The accepted request, with ``attempts`` set.

        Raises:
            ValidationError: before any request, when a number or field breaks a rule (India's
                DLT rules included, for Indian numbers on the IN pod), or for ``/messages`` on
                the NA pod.
            APIError: Kaleyra answered with an error (after any retries).
            TransportError: no answer was read (after any retries).
            KaleyraError: the client is closed.
        """
        self._check_open()
        numbers = [self._normalize(r) for r in recipients]
        message = check_send(message, numbers, pod=self.pod, endpoint=endpoint)
        if message.body and message.template_data and not self._warned_template_data:
            self._warned_template_data = True
            logger.warning(
                "a message has a body and template_data: Kaleyra sends the body and ignores "
                "the template data"
            )
        return await self._send_valid(message, numbers, endpoint=endpoint)

    async def send_sms(
        self, to: str | Sequence[str], *, type: str | None = None, **fields: Unpack[MessageFields]
    ) -> SendResult:
        """Send one SMS to one or more numbers on ``/sms``.

        ``type`` defaults to ``TXN`` on the IN pod and ``DEFAULT`` elsewhere; ``fields`` are
        :class:`~._models.Message`'s (``body``, ``sender``, ``template_id``, ...). Raises as
        :meth:`send`.
        """
        message = Message.of(type or default_type(self.pod), fields)
        return await self.send(message, [to] if isinstance(to, str) else to)

    async def send_message(
        self, to: str | Sequence[str], *, type: str | None = None, **fields: Unpack[MessageFields]
    ) -> SendResult:
        """Like :meth:`send_sms`, on the legacy ``/messages`` endpoint (adds ``source=API``)."""
        message = Message.of(type or default_type(self.pod), fields)
        return await self.send(message, [to] if isinstance(to, str) else to, endpoint="messages")

    async def send_otp(self, to: str, **fields: Unpack[MessageFields]) -> SendResult:
        """Send an OTP SMS to exactly one number; it overtakes queued bulk requests.

        Raises as :meth:`send`, and ValidationError if ``to`` is not one number.
        """
        if not isinstance(to, str):
            raise ValidationError(
                "to", "otp_single_recipient", "an OTP goes to exactly one number: pass one string"
            )
        return await self.send(Message.of("OTP", fields), [to])

    async def send_personalised(self, nodes: Sequence[tuple[str, Message]]) -> SendResult:
        """Send a different message to each number in one request (``POST /sms/json``).

        Each (number, message) pair is a node of the request's ``sms[]``: its sender (``from``
        there), body, template id, unicode and callback profile are its own; the other fields
        (``type``, ``time``) are the request's, so every message must share them; ``ref``,
        ``ref1`` and ``ref2`` are the node's. Per-recipient ``template_data``, ``flash`` and
        ``ref_custom`` have no node: send those by :meth:`send`. India's DLT rules apply to each
        node bound for an Indian number from the IN pod, as on ``/sms``.
        Kaleyra does not document this endpoint's answer: it is read as ``/sms``'s, each
        receipt matched to its node by number (:meth:`SendResult.message_ids`); a number
        without a message id in an accepted answer was maybe sent (never resent).

        Args:
            nodes: 1..1000 (number, message) pairs, each number once; no OTP message.

        Returns:
            The accepted request, with ``attempts`` set.

        Raises:
            ValidationError: before any request, naming the node (``sms[3].body``), when a
                number or field breaks a rule or the nodes cannot share one request.
            APIError, TransportError, KaleyraError: as :meth:`send`.
        """
        self._check_open()
        valid = check_nodes(nodes, pod=self.pod, normalize=self._normalize)
        return await self._send_json_valid(valid)

    async def _send_json_valid(
        self,
        nodes: Sequence[tuple[str, Message]],
        *,
        bodies: Sequence[str | None] | None = None,
        attempts: Attempts | None = None,
    ) -> SendResult:
        """Send validated nodes to E.164 numbers as one ``/sms/json`` request (the pipeline's
        entry point for personalised rows; ``bodies`` as in ``build_send_json``, checked by
        the pipeline); the request-level rules are checked here, always."""
        self._check_open()
        validate_json_nodes(nodes)
        request = build_send_json(nodes, bodies)
        result, made = await self._call(
            request, parse_send, otp=False, recipients=len(nodes), attempts=attempts
        )
        return result if made == 1 else dataclasses.replace(result, attempts=made)

    async def _send_valid(
        self,
        message: Message,
        recipients: Sequence[str],
        *,
        endpoint: Endpoint = "sms",
        attempts: Attempts | None = None,
    ) -> SendResult:
        """Send a validated message to E.164 numbers (the bulk pipeline's entry point).

        The recipient count and the OTP single-recipient rule are checked here, always.
        """
        self._check_open()
        validate_recipients(recipients, message_type=message.type)
        request = build_send(message, recipients, endpoint=endpoint, encoding=self._http.encoding)
        result, made = await self._call(
            request, parse_send, otp=message.is_otp, recipients=len(recipients), attempts=attempts
        )
        return result if made == 1 else dataclasses.replace(result, attempts=made)

    # -- sender IDs and status ---------------------------------------------------------------

    async def create_sender_ids(self, items: Sequence[SenderId]) -> list[SenderIdResult]:
        """Register sender IDs, in requests of up to 5,000.

        Returns:
            One result per request, in order.

        Raises:
            ValidationError: before any request, when an item breaks a rule.
            APIError, TransportError: as :meth:`send`; earlier chunks stay created.
        """
        self._check_open()
        valid = validate_sender_ids(items)
        return [
            (await self._call(build_create_sender_ids(chunk), parse_sender_ids))[0]
            for chunk in chunked(valid, MAX_SENDER_IDS_PER_CREATE)
        ]

    async def delete_sender_ids(self, names: Sequence[str]) -> list[SenderIdResult]:
        """Delete sender IDs by name, in requests of up to 100.

        Returns and raises as :meth:`create_sender_ids`.
        """
        self._check_open()
        valid = validate_sender_names(names)
        return [
            (await self._call(build_delete_sender_ids(chunk), parse_sender_ids))[0]
            for chunk in chunked(valid, MAX_SENDER_IDS_PER_DELETE)
        ]

    async def get_status(self, message_ids: Sequence[str]) -> list[MessageStatus]:
        """Look up delivery statuses (``GET /sms/status``), 100 ids per request.

        A status lookup sends no SMS, so even failures whose fate is unknown are retried.

        Raises:
            APIError, TransportError: as :meth:`send`.
        """
        self._check_open()
        policy = dataclasses.replace(self._retry, retry_ambiguous=True)
        statuses: list[MessageStatus] = []
        for chunk in chunked(list(message_ids), MAX_STATUS_IDS):
            found, _ = await self._call(build_status(chunk), parse_status, policy=policy)
            statuses.extend(found)
        return statuses


def validated_send(client: KaleyraClient) -> ValidatedSend:
    """The client's send for rows the bulk pipeline has validated already: it skips number and
    field validation but still checks the recipient count and the OTP rule, and reports each
    attempt to ``attempts`` so the pipeline can journal at the last moment."""

    async def send(
        message: Message, recipients: Sequence[str], *, attempts: Attempts | None = None
    ) -> SendResult:
        return await client._send_valid(message, recipients, attempts=attempts)

    return send


def validated_send_json(client: KaleyraClient) -> ValidatedJsonSend:
    """The client's ``/sms/json`` send for nodes the bulk pipeline has validated already (the
    request-level rules are still checked), reporting each attempt like :func:`validated_send`."""

    async def send(
        nodes: Sequence[tuple[str, Message]],
        *,
        bodies: Sequence[str | None] | None = None,
        attempts: Attempts | None = None,
    ) -> SendResult:
        return await client._send_json_valid(nodes, bodies=bodies, attempts=attempts)

    return send
