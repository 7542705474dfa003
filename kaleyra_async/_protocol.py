"""Kaleyra's wire format, requests side: values in, a :class:`WireRequest` out (pure, sans-I/O).

A :class:`WireRequest` holds the method, the path relative to ``/v1/<SID>`` (query included),
the request's own headers and the encoded body. The client adds the host, the SID and the
``api-key`` header, so no value built here ever holds the key. Answers are read by
``_responses``. orjson is used here as well as by the results writer: JSON encoding is on the
per-request hot path.
"""

from __future__ import annotations

import dataclasses
import operator
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import orjson

from ._limits import REF_FIELDS
from ._models import Message, SenderId

__all__ = [
    "NODE_FIELDS",
    "TOP_LEVEL_FIELDS",
    "Encoding",
    "Endpoint",
    "WireRequest",
    "build_create_sender_ids",
    "build_delete_sender_ids",
    "build_send",
    "build_send_json",
    "build_status",
    "fields_only_in_json",
    "fields_without_node",
    "top_level",
]

Endpoint = Literal["sms", "messages"]
Encoding = Literal["json", "form"]

_JSON: Final = (("Content-Type", "application/json"),)
_FORM: Final = (("Content-Type", "application/x-www-form-urlencoded"),)


@dataclasses.dataclass(frozen=True, slots=True)
class WireRequest:
    """One HTTP request, without host, SID or credentials.

    Attributes:
        method: the HTTP method.
        path: relative to ``/v1/<SID>``, with its query string if any, e.g. ``"/sms"``.
        headers: request-specific headers (Content-Type); the client adds the rest.
        content: the encoded body.
    """

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    content: bytes = b""


def build_send(
    message: Message,
    recipients: Sequence[str],
    *,
    endpoint: Endpoint = "sms",
    encoding: Encoding = "json",
) -> WireRequest:
    """Build a send request: one body to every recipient (``POST /sms`` or ``POST /messages``).

    Unset fields are left out. ``flash`` and ``unicode`` are strings, as the parameter tables
    type them (``flash`` is sent as ``"1"``, only when true). ``/messages`` (the "send your
    first SMS" variant) takes the same fields plus ``source="API"``.

    Encodings differ only where a field is not a plain string:

    * ``template_data``: a JSON object in JSON mode; in form mode the same object serialised as
      a JSON string in one field (the pages do this for ``url_data``; no form sample exists).
    * ``ref_custom``: a JSON array in JSON mode; a repeated ``ref_custom`` field in form mode.

    Args:
        message: the payload; it is not validated here (see ``_validate``).
        recipients: E.164 numbers; they are joined with commas into ``to``.
        endpoint: ``"sms"`` (recommended by Kaleyra) or ``"messages"`` (legacy).
        encoding: ``"json"`` or ``"form"`` (``application/x-www-form-urlencoded``).
    """
    fields: dict[str, Any] = {"to": ",".join(recipients)}
    if message.sender is not None:
        fields["sender"] = message.sender
    fields["type"] = message.type
    if message.body is not None:
        fields["body"] = message.body
    if message.template_id is not None:
        fields["template_id"] = message.template_id
    if message.template_data:
        fields["template_data"] = dict(message.template_data)
    if message.unicode is not None:
        fields["unicode"] = message.unicode
    if message.flash:
        fields["flash"] = "1"
    if message.time is not None:
        fields["time"] = message.time
    if message.ref_custom:
        fields["ref_custom"] = list(message.ref_custom)
    if message.callback_profile_id is not None:
        fields["callback_profile_id"] = message.callback_profile_id
    for name in REF_FIELDS:
        value = getattr(message, name)
        if value is not None:
            fields[name] = value
    if endpoint == "messages":
        fields["source"] = "API"
    path = "/messages" if endpoint == "messages" else "/sms"
    if encoding == "json":
        return WireRequest("POST", path, _JSON, orjson.dumps(fields))
    return WireRequest("POST", path, _FORM, _form_encode(fields))


#: The message fields an ``/sms/json`` node carries, and their names there (the sender is
#: ``from``). Everything else is top-level: shared by every node of a request.
NODE_FIELDS: Final = (
    ("sender", "from"),
    ("body", "body"),
    ("template_id", "template_id"),
    ("unicode", "unicode"),
    ("callback_profile_id", "callback_profile_id"),
    *((name, name) for name in REF_FIELDS),
    ("entity_id", "entity_id"),
)
_NO_NODE_VALUES: Final[dict[str, Any]] = {name: None for name, _ in NODE_FIELDS}
#: A message's node field values, in ``NODE_FIELDS`` order.
_node_values: Final = operator.attrgetter(*(name for name, _ in NODE_FIELDS))
_BODY: Final = [name for name, _ in NODE_FIELDS].index("body")
#: The other fields: what every node of one request shares.
TOP_LEVEL_FIELDS: Final = tuple(
    f.name for f in dataclasses.fields(Message) if f.name not in _NO_NODE_VALUES
)


def fields_without_node(message: Message) -> list[str]:
    """The fields ``message`` sets that the ``/sms/json`` page gives no place (it goes by /sms)."""
    names = []
    if message.template_data:
        names.append("template_data")
    if message.flash:
        names.append("flash")
    if message.ref_custom:
        names.append("ref_custom")
    return names


def fields_only_in_json(message: Message) -> list[str]:
    """The fields ``message`` sets that only an ``/sms/json`` node carries (``/sms``'s page has
    no ``entity_id``): such a message goes by /sms/json, even alone."""
    return ["entity_id"] if message.entity_id is not None else []


def top_level(message: Message) -> Message:
    """What an ``/sms/json`` request's nodes must share: the message without its node fields."""
    return dataclasses.replace(message, **_NO_NODE_VALUES)


def build_send_json(
    nodes: Sequence[tuple[str, Message]], bodies: Sequence[str | None] | None = None
) -> WireRequest:
    """Build ``POST /sms/json``: top-level fields plus one ``sms[]`` node per recipient.

    ``type`` and ``time`` (and ``channel``/``source``, as on the page's sample) are top-level;
    a node field whose value is the same in every node is sent once, as the top-level default,
    and the others in each node that sets them. Always JSON: the endpoint is named for it.

    Args:
        nodes: (E.164 number, message) pairs that share :func:`top_level`; not validated here
            (see ``_request_rules.validate_json_nodes``).
        bodies: per node, a body sent instead of its message's (None in it: the message's).
    """
    first = nodes[0][1]
    fields: dict[str, Any] = {"channel": "SMS", "type": first.type, "source": "API"}
    if first.time is not None:
        fields["time"] = first.time
    messages = [message for _, message in nodes]
    # One column of values per node field: a column of equal values is a top-level default,
    # the others go in the nodes that set them.
    columns: list[Sequence[Any]]
    if len(set(map(id, messages))) == 1:  # one message for all: one value per field
        columns = [(value,) for value in _node_values(first)]
    else:  # a transpose in C
        columns = list(zip(*map(_node_values, messages), strict=True))
    if bodies is not None:
        columns[_BODY] = (
            bodies
            if None not in bodies
            else [m.body if b is None else b for m, b in zip(messages, bodies, strict=True)]
        )
    per_node: list[tuple[str, Sequence[Any]]] = []
    sms: list[dict[str, Any]]
    for (_, wire), column in zip(NODE_FIELDS, columns, strict=True):
        value = column[0]
        if column.count(value) == len(column):
            if value is not None:
                fields[wire] = value
        else:
            per_node.append((wire, column))
    if len(per_node) == 1 and None not in per_node[0][1]:  # bodies alone: one pass
        wire, column = per_node[0]
        sms = [{"to": to, wire: value} for (to, _), value in zip(nodes, column, strict=True)]
    else:
        sms = [{"to": to} for to, _ in nodes]
        for wire, column in per_node:
            for node, value in zip(sms, column, strict=True):
                if value is not None:
                    node[wire] = value
    fields["sms"] = sms
    return WireRequest("POST", "/sms/json", _JSON, orjson.dumps(fields))


def _form_encode(fields: Mapping[str, Any]) -> bytes:
    pairs: list[tuple[str, str]] = []
    for key, value in fields.items():
        if isinstance(value, dict):
            pairs.append((key, orjson.dumps(value).decode()))
        elif isinstance(value, list):
            pairs.extend((key, str(item)) for item in value)
        else:
            pairs.append((key, str(value)))
    return urllib.parse.urlencode(pairs).encode("ascii")


def _sender_path(endpoint: Endpoint) -> str:
    return "/messages/sender" if endpoint == "messages" else "/sms/sender"


def build_create_sender_ids(
    items: Sequence[SenderId], *, endpoint: Endpoint = "sms"
) -> WireRequest:
    """Build ``POST /sms/sender`` (legacy ``/messages/sender``) registering sender IDs.

    ``entity_id`` is left out of an item when it is None.
    """
    data = []
    for item in items:
        entry = {"sender": item.sender, "description": item.description, "iso_code": item.iso_code}
        if item.entity_id is not None:
            entry["entity_id"] = item.entity_id
        data.append(entry)
    return WireRequest("POST", _sender_path(endpoint), _JSON, orjson.dumps({"data": data}))


def build_delete_sender_ids(names: Sequence[str], *, endpoint: Endpoint = "sms") -> WireRequest:
    """Build ``DELETE /sms/sender`` (legacy ``/messages/sender``) with ``{"sender": [...]}``."""
    return WireRequest(
        "DELETE", _sender_path(endpoint), _JSON, orjson.dumps({"sender": list(names)})
    )


def build_status(message_ids: Sequence[str], *, legacy: bool = False) -> WireRequest:
    """Build ``GET /sms/status`` (legacy ``/messages/status``) for comma-joined message ids.

    The pages require ``Content-Type: application/json`` on this GET ("the only allowed value").
    """
    path = "/messages/status" if legacy else "/sms/status"
    query = urllib.parse.urlencode({"message_ids": ",".join(message_ids)})
    return WireRequest("GET", f"{path}?{query}", _JSON)
