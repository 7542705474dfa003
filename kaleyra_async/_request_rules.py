"""Request-shape rules, checked before any request is made (pure): how many recipients one
``/sms`` request takes (and OTP's one), what the nodes of one ``/sms/json`` request must share,
and how lists are cut into requests. The fields of each message are ``_validate``'s."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Final, TypeVar

from ._exceptions import ValidationError
from ._limits import MAX_JSON_NODES, MAX_RECIPIENTS
from ._models import Message
from ._phone import all_e164, is_e164
from ._protocol import TOP_LEVEL_FIELDS, fields_without_node

__all__ = ["chunked", "validate_json_nodes", "validate_recipients"]

T = TypeVar("T")


def validate_recipients(recipients: Sequence[str], *, message_type: str) -> None:
    """Check the recipients of one request: 1 to 100 E.164 numbers, exactly 1 for OTP.

    Numbers must already be normalised (see ``PhoneNormalizer``); only their shape is checked.

    Raises:
        ValidationError: ``to`` / ``required``, ``max_recipients`` or ``otp_single_recipient``
            (Kaleyra's E404); ``to[i]`` / ``format``.
    """
    count = len(recipients)
    if count == 0:
        raise ValidationError("to", "required", "at least one recipient is required")
    if message_type.upper() == "OTP" and count != 1:
        raise ValidationError(
            "to",
            "otp_single_recipient",
            f"an OTP request takes exactly one recipient, not {count} (E404)",
        )
    if count > MAX_RECIPIENTS:
        raise ValidationError(
            "to",
            "max_recipients",
            f"has {count} recipients; at most {MAX_RECIPIENTS} per request",
        )
    for i, number in enumerate(recipients):
        if not isinstance(number, str) or not is_e164(number):
            raise ValidationError(
                f"to[{i}]", "format", f"{number!r} is not an E.164 number like +919876543210"
            )


def validate_json_nodes(nodes: Sequence[tuple[str, Message]]) -> None:
    """Check the nodes of one ``/sms/json`` request (their messages are validated already).

    1 to ``MAX_JSON_NODES`` nodes, each an E.164 number given once; no OTP (an OTP request
    has exactly one recipient, on ``/sms``); every message sets only fields that have a node
    or are top-level, and shares the top-level ones (``type``, ``time``) with the first node.

    Raises:
        ValidationError: ``sms`` / ``required`` or ``max_nodes``; ``sms[i].to`` / ``format``
            or ``duplicate``; ``sms[i].type`` / ``otp_not_in_json``; ``sms[i].<field>`` /
            ``no_node_field`` or ``same_top_level``.
    """
    count = len(nodes)
    if count == 0:
        raise ValidationError("sms", "required", "at least one node is required")
    if count > MAX_JSON_NODES:
        raise ValidationError(
            "sms", "max_nodes", f"has {count} nodes; at most {MAX_JSON_NODES} per request"
        )
    first = nodes[0][1]
    if first.is_otp:
        raise ValidationError(
            "sms[0].type",
            "otp_not_in_json",
            "an OTP goes to one recipient per /sms request, never in /sms/json",
        )
    missing = fields_without_node(first)
    if missing:
        raise ValidationError(
            f"sms[0].{missing[0]}",
            "no_node_field",
            "/sms/json has no place for it: send this message by /sms",
        )
    # Every node shares node 0's top-level fields, so none is OTP or sets a field without a node.
    shared = _top_level(first)
    # The common case in three C-level passes; the loop below names the first node at fault.
    numbers = [number for number, _ in nodes]
    messages = [message for _, message in nodes]
    if (
        all_e164(numbers)
        and len(set(numbers)) == count
        # One message object shared by every node (a personalised batch's bodies come apart)
        # shares its top-level fields: known by identity alone.
        and (
            len(set(map(id, messages))) == 1
            or list(map(_top_level, messages)).count(shared) == count
        )
    ):
        return
    seen: set[str] = set()
    for i, (number, message) in enumerate(nodes):
        if not isinstance(number, str) or not is_e164(number):
            raise ValidationError(
                f"sms[{i}].to", "format", f"{number!r} is not an E.164 number like +919876543210"
            )
        if number in seen:
            raise ValidationError(
                f"sms[{i}].to", "duplicate", f"{number} is in the request twice (one node each)"
            )
        seen.add(number)
        if message is not first and _top_level(message) != shared:
            name = next(n for n in TOP_LEVEL_FIELDS if getattr(message, n) != getattr(first, n))
            raise ValidationError(
                f"sms[{i}].{name}",
                "same_top_level",
                f"differs from node 0's; every node of a request shares its {name}",
            )


_top_level: Final = operator.attrgetter(*TOP_LEVEL_FIELDS)


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of ``items`` of at most ``size`` elements (none when empty).

    Raises:
        ValueError: ``size`` < 1.
    """
    if size < 1:
        raise ValueError("size must be >= 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]
