"""A delivery callback's request -> a :class:`ReceiptRecord`, or why it is refused (pure).

Kaleyra's callback profile chooses the method (GET or POST) and the variable names; the
documented sample names are :data:`~._delivery.RECEIPT_FIELDS`. A POST body is JSON or a form;
a GET carries the query. ``id`` and ``status`` are required; nothing else is.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl

import orjson

from ._delivery import RECEIPT_FIELDS, ReceiptRecord

__all__ = [
    "DEFAULT_FIELD_NAMES",
    "MAX_RECEIPT_BODY_BYTES",
    "MAX_RECEIPT_VALUE_CHARS",
    "ReceiptRefused",
    "receipt_from_request",
]

#: A receipt is a few hundred bytes; anything near this is not one (413, stored nothing).
MAX_RECEIPT_BODY_BYTES: Final = 64 * 1024
#: Longest value of any one field (``ref`` is at most 255 by Kaleyra's pages).
MAX_RECEIPT_VALUE_CHARS: Final = 1024
#: Our name -> the callback's variable name, when the profile keeps the documented names.
DEFAULT_FIELD_NAMES: Final[Mapping[str, str]] = types.MappingProxyType(
    {name: name for name in RECEIPT_FIELDS}
)
_REQUIRED: Final = ("id", "status")
_FORM: Final = "application/x-www-form-urlencoded"


class ReceiptRefused(Exception):
    """A request that is not a receipt we can store: answered ``status``, nothing stored."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def receipt_from_request(
    *,
    method: str,
    content_type: str,
    query: str,
    body: bytes,
    names: Mapping[str, str] = DEFAULT_FIELD_NAMES,
    source: str = "callback",
    now_s: float = 0.0,
) -> ReceiptRecord:
    """Read one receipt from a callback request.

    Args:
        method: ``GET`` (fields in the query) or ``POST`` (JSON or form body; the query when
            the body is empty).
        content_type: the request's media type, without parameters.
        query: the raw query string.
        body: the raw body.
        names: our field name -> the profile's variable name.
        source: recorded with the receipt (``callback``).
        now_s: when it arrived, epoch seconds.

    Raises:
        ReceiptRefused: 405 for another method, 415 for another body type, 400 for a body
            that does not parse, 413 for an oversized one, 422 for a missing or overlong field.
    """
    if method == "GET":
        fields = _form(query.encode("utf-8", "surrogateescape"))
    elif method == "POST":
        if len(body) > MAX_RECEIPT_BODY_BYTES:
            raise ReceiptRefused(413, f"body over {MAX_RECEIPT_BODY_BYTES} bytes")
        if not body.strip():
            fields = _form(query.encode("utf-8", "surrogateescape"))
        elif content_type == "application/json" or content_type.endswith("+json"):
            fields = _json(body)
        elif content_type in (_FORM, ""):
            fields = _form(body)
        else:
            raise ReceiptRefused(415, f"unsupported content type {content_type!r}")
    else:
        raise ReceiptRefused(405, f"method {method} not allowed (GET or POST)")
    values: dict[str, str] = {}
    for ours in RECEIPT_FIELDS:
        value = fields.get(names.get(ours, ours), "")
        if len(value) > MAX_RECEIPT_VALUE_CHARS:
            raise ReceiptRefused(422, f"{ours}: longer than {MAX_RECEIPT_VALUE_CHARS} characters")
        values[ours] = value.strip()
    for ours in _REQUIRED:
        if not values[ours]:
            raise ReceiptRefused(422, f"missing field {names.get(ours, ours)!r}")
    return ReceiptRecord(
        message_id=values["id"],
        status=values["status"],
        recipient=values["recipient"],
        status_trace=values["status_trace"],
        description=values["description"],
        timestamp=values["timestamp"],
        ref=values["ref"],
        ref1=values["ref1"],
        ref2=values["ref2"],
        source=source,
        received_s=now_s,
    )


def _form(raw: bytes) -> dict[str, str]:
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise ReceiptRefused(400, "form fields are not valid UTF-8") from None
    return dict(pairs)


def _json(raw: bytes) -> dict[str, str]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ReceiptRefused(400, "body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ReceiptRefused(400, "body is not a JSON object")
    fields: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, str):
            fields[key] = item
        elif isinstance(item, int | float) and not isinstance(item, bool):
            fields[key] = str(item)
        # Objects, lists, booleans and nulls are no documented field's shape: ignored.
    return fields
