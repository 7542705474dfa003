"""Kaleyra's wire format, answers side: ``(status, headers, body)`` in, values or errors out
(pure, sans-I/O).

Parsers return result values or raise the :class:`~._exceptions.APIError` subclass that
:func:`error_from_response` picks. Where Kaleyra's pages are silent the safe reading is chosen:

* ``/sms`` success bodies were never captured; they are read like ``/messages`` ones
  (``id``, ``data[].message_id``/``recipient``, an empty ``error``).
* ``/sms/status`` bodies were never captured; both the legacy ``campaign_id`` items and
  ``message_id`` items are accepted.
* A 2xx whose ``error`` is not empty is an error (community clients test exactly that).
"""

from __future__ import annotations

import contextlib
import email.utils
import http
import math
import re
import time
from collections.abc import Mapping
from typing import Any, Final

import orjson

from ._exceptions import (
    APIError,
    AuthenticationError,
    RateLimitError,
    RejectedError,
    ServerError,
)
from ._models import MessageStatus, Receipt, SenderIdResult, SendResult

__all__ = [
    "error_from_response",
    "parse_retry_after",
    "parse_send",
    "parse_sender_ids",
    "parse_status",
]

#: Longest piece of a response body quoted in an exception message.
_SNIPPET_CHARS: Final = 200


def parse_send(
    status: int, headers: Mapping[str, str], content: bytes, *, pod: str | None
) -> SendResult:
    """Read a send response.

    Returns:
        The :class:`SendResult`, with one :class:`Receipt` per ``data[]`` entry and the
        recipient given back its ``+``.

    Raises:
        APIError: the subclass :func:`error_from_response` picks, for a non-2xx status, a 2xx
            with a non-empty ``error`` and no message ids, or a 2xx body that is not a JSON
            object (both fate unknown).
    """
    body = _decode(content) if 200 <= status < 300 else None
    if not isinstance(body, dict) or (body.get("error") and not _has_ids(body.get("data"))):
        raise error_from_response(status, headers, content, pod=pod)
    # A 2xx with an error *and* message ids is a partial failure (undocumented): recipients with
    # an id were accepted; the caller records those without one as unknown, never as failed.
    data = body.get("data")
    receipts = _receipts(data) if isinstance(data, list) else ()
    total = body.get("totalCount")
    return SendResult(
        request_id=str(body.get("id") or ""),
        receipts=tuple(receipts),
        sender=_str_or_none(body.get("sender")),
        type=_str_or_none(body.get("type")),
        body=_str_or_none(body.get("body")),
        created=_str_or_none(body.get("createdDateTime")),
        total_count=total if isinstance(total, int) else len(receipts),
        raw=body,
    )


def _has_ids(data: Any) -> bool:
    return isinstance(data, list) and any(
        isinstance(item, dict) and item.get("message_id") for item in data
    )


def _receipts(data: list[Any]) -> tuple[Receipt, ...]:
    """One receipt per ``data[]`` item, the recipient given back its ``+`` (the hot path)."""
    receipts: list[Receipt] = []
    append = receipts.append
    for item in data:
        try:
            message_id = item["message_id"]
            recipient = item["recipient"]
        except (KeyError, TypeError):
            return _receipts_slow(data)
        if type(message_id) is not str or type(recipient) is not str or not recipient:
            return _receipts_slow(data)
        append(Receipt(message_id, recipient if recipient[0] == "+" else "+" + recipient))
    return tuple(receipts)


def _receipts_slow(data: list[Any]) -> tuple[Receipt, ...]:
    """Tolerant reading: skip items without a message id, stringify odd values."""
    receipts = []
    for item in data:
        if isinstance(item, dict) and item.get("message_id") is not None:
            recipient = str(item.get("recipient") or "")
            if recipient and not recipient.startswith("+"):
                recipient = "+" + recipient
            receipts.append(Receipt(str(item["message_id"]), recipient))
    return tuple(receipts)


def parse_sender_ids(
    status: int, headers: Mapping[str, str], content: bytes, *, pod: str | None
) -> SenderIdResult:
    """Read a sender-ID create or delete response (e.g. ``MSG106`` / ``MSG108``).

    ``senders`` lists the sender names found in ``data`` (strings or objects with ``sender``);
    the delete sample returns ``data: []``, so it may be empty.

    Raises:
        APIError: as for :func:`parse_send` (``MSG134`` / ``RBC192`` reasons go to ``details``).
    """
    body = _ok_body(status, headers, content, pod)
    senders: list[str] = []
    data = body.get("data")
    for item in data if isinstance(data, list) else [data] if isinstance(data, dict) else []:
        if isinstance(item, str):
            senders.append(item)
        elif isinstance(item, dict) and item.get("sender") is not None:
            senders.append(str(item["sender"]))
    return SenderIdResult(
        code=_str_or_none(body.get("code")),
        message=str(body.get("message") or ""),
        senders=tuple(senders),
        raw=body,
    )


def parse_status(
    status: int, headers: Mapping[str, str], content: bytes, *, pod: str | None
) -> list[MessageStatus]:
    """Read a Status API response.

    The legacy ``/messages/status`` body is ``{"data": [{"campaign_id", "status",
    "status_details"}], "error": {}}``. The ``/sms/status`` body is undocumented, so items may
    name the id ``campaign_id`` or ``message_id``, the detail ``status_details``,
    ``status_trace`` or ``detail``, and ``data`` may be a list, one object, or an object keyed
    by message id.

    Raises:
        APIError: as for :func:`parse_send`.
    """
    body = _ok_body(status, headers, content, pod)
    data = body.get("data")
    items: list[tuple[str | None, Any]]
    if isinstance(data, list):
        items = [(None, item) for item in data]
    elif isinstance(data, dict) and not ({"campaign_id", "message_id", "status"} & data.keys()):
        items = list(data.items())
    elif isinstance(data, dict):
        items = [(None, data)]
    else:
        items = []
    statuses = []
    for key, item in items:
        if not isinstance(item, dict):
            continue
        message_id = item.get("message_id") or item.get("campaign_id") or key
        if message_id is None:
            continue
        detail = item.get("status_details") or item.get("status_trace") or item.get("detail")
        statuses.append(
            MessageStatus(
                message_id=str(message_id),
                status=str(item.get("status") or ""),
                detail=_str_or_none(detail),
                raw=item,
            )
        )
    return statuses


def _ok_body(status: int, headers: Mapping[str, str], content: bytes, pod: str | None) -> Any:
    """The decoded body of a successful response, or raise the right APIError."""
    if 200 <= status < 300:
        body = _decode(content)
        if isinstance(body, dict) and not body.get("error"):
            return body
    raise error_from_response(status, headers, content, pod=pod)


def _decode(content: bytes) -> Any:
    if not content:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def error_from_response(
    status: int, headers: Mapping[str, str], content: bytes, *, pod: str | None
) -> APIError:
    """Classify an error response into the exception tree (returned, not raised).

    Reads Kaleyra's envelope ``{"code", "message", "data", "error"}`` where ``error`` may be
    ``{}``, a dict with ``message`` (and maybe ``code``), or a list like ``[{"params": ...}]``.
    Per-item reasons (``MSG134`` names one per sender ID) go to ``details`` as ``(item, reason)``.

    * 401 / 403 → :class:`AuthenticationError`
    * 429 → :class:`RateLimitError` with ``retry_after_s`` from ``Retry-After``
    * 5xx → :class:`ServerError`
    * any other 4xx or 3xx → :class:`RejectedError`
    * a 2xx that is not a clean success (not a JSON object, or an ``error`` without message
      ids) → :class:`ServerError`: Kaleyra took the request and we cannot tell what it sent,
      so its fate is unknown (a resend could duplicate).

    A body that is not JSON (an HTML error page from a proxy) is quoted as a short snippet with
    tags and control characters removed. Request headers are never part of the message.
    """
    body = _decode(content)
    envelope: Mapping[str, Any] | None = body if isinstance(body, dict) else None
    kaleyra_code: str | None = None
    message = ""
    details: list[tuple[str, str]] = []
    if envelope is not None:
        error = envelope.get("error")
        kaleyra_code = _str_or_none(envelope.get("code"))
        message = _text(envelope.get("message"))
        if isinstance(error, dict):
            kaleyra_code = kaleyra_code or _str_or_none(error.get("code"))
            message = message or _text(error.get("message"))
        if not message and isinstance(error, str):
            message = _text(error)
        details = _details(error) + _details(envelope.get("data"))
        if not message and details:
            message = details[0][1]
    elif content:
        message = _snippet(content)
    if not message:
        message = _reason(status)

    retry_after_s = None
    if status == 429:
        retry_after_s = parse_retry_after(headers)
    cls: type[APIError]
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 429:
        cls = RateLimitError
    elif status >= 500 or 200 <= status < 300:
        cls = ServerError
    else:
        cls = RejectedError
    return cls(
        message,
        status_code=status,
        kaleyra_code=kaleyra_code,
        details=details,
        retry_after_s=retry_after_s,
        pod=pod,
        body=envelope,
    )


_ITEM_KEYS: Final = ("sender", "params", "param", "field", "recipient", "to", "message_id")
_REASON_KEYS: Final = ("message", "reason", "error", "description", "msg")


def _details(value: Any) -> list[tuple[str, str]]:
    """Per-item ``(item, reason)`` pairs from an ``error`` or ``data`` value of any shape."""
    if isinstance(value, list):
        out = []
        for entry in value:
            if isinstance(entry, dict):
                item = next((entry[k] for k in _ITEM_KEYS if entry.get(k) is not None), "")
                reason = next((entry[k] for k in _REASON_KEYS if entry.get(k) is not None), "")
                if item or reason:
                    out.append((_text(item), _text(reason)))
            elif isinstance(entry, str):
                out.append(("", _text(entry)))
        return out
    if isinstance(value, dict):
        out = []
        for key, entry in value.items():
            if isinstance(entry, dict):
                # MSG134: {"0": {"sender": "<reason>", "sender_name": "ABCF01"}, ...}, keyed by
                # the item's index; the reason sits under the field it is about.
                item = entry.get("sender_name", key)
                reason = next(
                    (v for k, v in entry.items() if k != "sender_name" and isinstance(v, str)), ""
                )
                out.append((_text(item), _text(reason)))
            elif key not in ("code", "message") and isinstance(entry, str | int | float):
                # {"body": "SMS length is exceeding 4000 characters."}: field to reason.
                out.append((_text(key), _text(entry)))
        return out
    return []


def parse_retry_after(headers: Mapping[str, str], *, now_s: float | None = None) -> float | None:
    """The ``Retry-After`` delay in seconds (delta-seconds or an HTTP-date), clamped at 0.

    An HTTP-date is measured from the response's ``Date`` header when there is one (so a skewed
    local clock does not matter), else from ``now_s`` (default: the wall clock). Returns None when
    the header is absent or unreadable.
    """
    value = _header(headers, "retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    reference = now_s if now_s is not None else time.time()
    date = _header(headers, "date")
    if date is not None:
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            reference = email.utils.parsedate_to_datetime(date).timestamp()
    return max(0.0, when - reference)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # Plain dicts are case-sensitive; httpx.Headers is not.
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


_TAG: Final = re.compile(r"<[^>]*>")
_SPACE: Final = re.compile(r"\s+")
_UNPRINTABLE: Final = re.compile(r"[^\x20-\x7e\u00a0-\uffff]")


def _snippet(content: bytes) -> str:
    text = content[: _SNIPPET_CHARS * 8].decode("utf-8", "replace")
    text = _SPACE.sub(" ", _TAG.sub(" ", text))
    return _text(_UNPRINTABLE.sub("", text))


def _text(value: Any) -> str:
    """A value as a one-line string of at most ``_SNIPPET_CHARS`` characters."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 1] + "…"


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "unexpected HTTP status"


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
