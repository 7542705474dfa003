"""Field rules from the Kaleyra SMS API spec, checked before any request is made (pure).

Every function returns the normalised value (or None) and raises
``ValidationError(field, rule, reason)`` naming the field and a stable rule name, so that a
result record can say exactly what was wrong. Where the spec is silent the stricter, safer
reading is taken and written down next to the rule.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

from ._exceptions import ValidationError
from ._limits import (
    ALPHANUMERIC_SENDER,
    DLT_HEADER,
    ENTITY_ID,
    MAX_BODY_CHARS,
    MAX_REF_CHARS,
    MAX_REF_CUSTOM_CHARS,
    MAX_REF_CUSTOM_VALUES,
    MAX_TEMPLATE_VALUE_CHARS,
    NUMERIC_SENDER,
    REF_FIELDS,
    TEMPLATE_ID,
    TYPES_BY_POD,
)
from ._models import Message, with_body
from ._protocol import fields_without_node
from ._schedule import validate_time

__all__ = [
    "blank_to_none",
    "validate_body",
    "validate_entity_id",
    "validate_flash",
    "validate_message",
    "validate_message_body",
    "validate_ref",
    "validate_ref_custom",
    "validate_sender",
    "validate_template_data",
    "validate_template_id",
    "validate_type",
    "validate_unicode",
]


# Control characters other than tab, line feed, form feed (GSM-7 has it) and carriage return.
_CONTROL: Final = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# Either of the two, found in one pass.
_BODY_SUSPECT: Final = re.compile(f"{_CONTROL.pattern}|{_SURROGATE.pattern}")
_TRUE: Final = frozenset({"1", "true"})
_FALSE: Final = frozenset({"0", "false"})


# -- message fields ------------------------------------------------------------------------------


def validate_type(value: str, *, pod: str) -> str:
    """Return the message type in upper case if ``pod`` accepts it.

    Raises:
        ValidationError: ``type`` / ``allowed_values``.
    """
    allowed = TYPES_BY_POD.get(pod.upper(), TYPES_BY_POD["SG"])
    normalised = value.strip().upper() if isinstance(value, str) else ""
    if normalised not in allowed:
        raise ValidationError(
            "type",
            "allowed_values",
            f"{value!r} is not a message type of the {pod.upper()} pod "
            f"(one of {', '.join(allowed)})",
        )
    return normalised


def validate_sender(value: str, *, pod: str) -> str:
    """Return the sender (the ``sender``/``from`` field) if it has a shape the pages allow.

    * a numeric sender: up to 15 digits, "+" allowed (a two-way number such as ``+17...4``);
    * an alphanumeric sender ID of 1-11 letters and digits (case kept: it is shown to the
      recipient as written); on the IN pod a 6-letter one is a DLT header and is upper-cased,
      as headers are registered.

    Messages to Indian numbers on the IN pod need a DLT header: see ``_india``.

    Raises:
        ValidationError: ``sender`` / ``format``.
    """
    text = value.strip() if isinstance(value, str) else ""
    if NUMERIC_SENDER.fullmatch(text):
        return text
    if ALPHANUMERIC_SENDER.fullmatch(text):
        return text.upper() if pod.upper() == "IN" and DLT_HEADER.fullmatch(text) else text
    raise ValidationError(
        "sender",
        "format",
        f"{value!r} is not a sender: 1-11 letters and digits (a sender ID), or up to 15 digits "
        "(a number, + allowed)",
    )


def validate_ref(value: str, *, field: str) -> str:
    """Return a ``ref``/``ref1``/``ref2`` value: up to 255 characters.

    Raises:
        ValidationError: ``<field>`` / ``max_length``.
    """
    if len(value) > MAX_REF_CHARS:
        raise ValidationError(
            field, "max_length", f"has {len(value)} characters; at most {MAX_REF_CHARS}"
        )
    return value


def validate_unicode(value: str | int | None) -> str | None:
    """Return the ``unicode`` parameter as "AUTO", "0" or "1"; None or "" leave it out.

    Accepts any case of "auto", the strings "0"/"1", the ints 0/1 and booleans.

    Raises:
        ValidationError: ``unicode`` / ``allowed_values``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value).strip().upper()
    if text == "":
        return None
    if text in ("AUTO", "0", "1"):
        return text
    raise ValidationError("unicode", "allowed_values", f"{value!r} is not one of AUTO, 0, 1")


def validate_flash(value: str | int | bool | None) -> bool:
    """Return the ``flash`` flag; accepts booleans, 0/1 and (any case) "0", "1", "true", "false".

    None and "" mean not flash.

    Raises:
        ValidationError: ``flash`` / ``allowed_values``.
    """
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE or text == "":
        return False
    raise ValidationError("flash", "allowed_values", f"{value!r} is not one of 0, 1, true, false")


def validate_body(body: str | None, *, template_id: str | None) -> None:
    """Check the body: required unless there is a template id, at most 4000 characters, no
    control characters but tab, line feed, form feed and carriage return.

    A body of only whitespace counts as missing. Length is counted in characters (code points);
    Kaleyra does not say how it counts, and emoji are rare in bodies this long.

    Raises:
        ValidationError: ``body`` / ``required``, ``max_length`` (Kaleyra's E401) or
            ``control_character``.
    """
    if body is None or body.strip() == "":
        if not template_id:
            raise ValidationError("body", "required", "is required when there is no template_id")
        return
    if len(body) > MAX_BODY_CHARS:
        raise ValidationError(
            "body",
            "max_length",
            f"has {len(body)} characters; at most {MAX_BODY_CHARS} are allowed (E401)",
        )
    control = _CONTROL.search(body)
    if control is not None:
        # A NUL or an escape in a body is corrupt or binary input, never text meant for a phone.
        raise ValidationError(
            "body",
            "control_character",
            f"contains the control character U+{ord(control.group()):04X} "
            f"at position {control.start() + 1}",
        )


def validate_template_id(value: str) -> str:
    """Return a DLT template id: 12 to 30 digits.

    Raises:
        ValidationError: ``template_id`` / ``format``.
    """
    text = value.strip() if isinstance(value, str) else ""
    if TEMPLATE_ID.fullmatch(text) is None:
        raise ValidationError("template_id", "format", f"{value!r} is not 12 to 30 digits")
    return text


def validate_entity_id(value: str) -> str:
    """Return India's DLT principal entity id: 12 to 30 digits (the sender-ID page's rule).

    Raises:
        ValidationError: ``entity_id`` / ``format``.
    """
    text = value.strip() if isinstance(value, str) else ""
    if ENTITY_ID.fullmatch(text) is None:
        raise ValidationError("entity_id", "format", f"{value!r} is not 12 to 30 digits")
    return text


def _check_json_only(message_type: str, message: Message) -> None:
    """A message with an ``entity_id`` goes by ``/sms/json``, the one request with a place for
    it: it must be able to.

    Raises:
        ValidationError: ``entity_id`` / ``json_only``: an OTP (one recipient, by /sms), or a
            field /sms/json has no place for (``template_data``, ``flash``, ``ref_custom``).
    """
    if message_type == "OTP":
        raise ValidationError(
            "entity_id", "json_only", "only /sms/json carries it, and an OTP goes by /sms"
        )
    if unplaced := fields_without_node(message):
        raise ValidationError(
            "entity_id",
            "json_only",
            f"only /sms/json carries it, and /sms/json has no place for {unplaced[0]}",
        )


def validate_template_data(
    pairs: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """Return template variables as ordered ``(name, value)`` pairs, each value <= 30 characters.

    Raises:
        ValidationError: ``template_data`` / ``name_required`` or ``duplicate``;
            ``template_data.<name>`` / ``type`` or ``max_length``.
    """
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    result: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in items:
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("template_data", "name_required", "a variable has no name")
        if name in seen:
            raise ValidationError("template_data", "duplicate", f"{name!r} is given twice")
        seen.add(name)
        field = f"template_data.{name}"
        if not isinstance(value, str):
            raise ValidationError(field, "type", f"must be a string, not {type(value).__name__}")
        if len(value) > MAX_TEMPLATE_VALUE_CHARS:
            raise ValidationError(
                field,
                "max_length",
                f"has {len(value)} characters; at most {MAX_TEMPLATE_VALUE_CHARS} are allowed",
            )
        result.append((name, value))
    return tuple(result)


def validate_ref_custom(values: Iterable[str] | str) -> tuple[str, ...]:
    """Return the ``ref_custom`` values: at most 5, each at most 50 characters.

    A single string is one value (not a sequence of characters).

    Raises:
        ValidationError: ``ref_custom`` / ``max_items``; ``ref_custom[i]`` / ``type`` or
            ``max_length``.
    """
    items = (values,) if isinstance(values, str) else tuple(values)
    if len(items) > MAX_REF_CUSTOM_VALUES:
        raise ValidationError(
            "ref_custom",
            "max_items",
            f"has {len(items)} values; at most {MAX_REF_CUSTOM_VALUES} are allowed",
        )
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ValidationError(f"ref_custom[{i}]", "type", "must be a string")
        if len(item) > MAX_REF_CUSTOM_CHARS:
            raise ValidationError(
                f"ref_custom[{i}]",
                "max_length",
                f"has {len(item)} characters; at most {MAX_REF_CUSTOM_CHARS} are allowed",
            )
    return items


def validate_message(message: Message, *, pod: str, now: datetime | None = None) -> Message:
    """Run every field rule on ``message`` and return its normalised copy.

    Empty strings in the optional fields (``sender``, ``template_id``, ``unicode``, ``time``)
    mean "not given" and become None. ``time`` is only checked when set.

    Args:
        message: the message to check.
        pod: "IN", "SG", "EU" or "NA": the message types and sender shapes depend on it.
        now: the current time for the ``time`` rule; default ``datetime.now(UTC)``.

    Raises:
        ValidationError: the first rule the message breaks.
    """
    message_type = validate_type(message.type, pod=pod)
    sender = blank_to_none(message.sender)
    template_id = blank_to_none(message.template_id)
    time = blank_to_none(message.time)
    if sender is None:
        raise ValidationError(
            "sender", "required", "is required: every SMS carries a sender ID (Kaleyra's checklist)"
        )
    if template_id is not None:
        template_id = validate_template_id(template_id)
    validate_body(message.body, template_id=template_id)
    _check_encodable(message)
    entity_id = blank_to_none(message.entity_id)
    if entity_id is not None:
        entity_id = validate_entity_id(entity_id)
        _check_json_only(message_type, message)
    refs = {name: blank_to_none(getattr(message, name)) for name in REF_FIELDS}
    return dataclasses.replace(
        message,
        entity_id=entity_id,
        type=message_type,
        sender=validate_sender(sender, pod=pod),
        template_id=template_id,
        template_data=validate_template_data(message.template_data),
        unicode=validate_unicode(message.unicode),
        flash=validate_flash(message.flash),
        time=None if time is None else validate_time(time, now=now or datetime.now(UTC)),
        ref_custom=validate_ref_custom(message.ref_custom),
        **{name: None if v is None else validate_ref(v, field=name) for name, v in refs.items()},
    )


def validate_message_body(message: Message, body: str | None) -> Message:
    """``message``, validated already, with another ``body``, checked by the rules that read the
    body: :func:`validate_message` would give the same answer (a row's own body is the one
    thing a personalised campaign changes, so the other fields are checked once, not per row).

    Raises:
        ValidationError: as :func:`check_own_body`.
    """
    check_own_body(message, body)
    return with_body(message, body)


def check_own_body(message: Message, body: str | None, *, gsm_text: bool = False) -> None:
    """Check ``body`` as ``message``'s (validated already) by the rules that read the body.
    ``gsm_text``: the body is known to hold GSM 03.38 characters only, none of which is a
    control character these rules refuse nor a surrogate (the scan for them is skipped).

    Raises:
        ValidationError: ``body`` / ``required``, ``max_length``, ``control_character`` or
            ``not_text``.
    """
    if (
        body is None
        or len(body) > MAX_BODY_CHARS
        # Printable text has no control character nor surrogate (isprintable is the quicker).
        or (not gsm_text and not body.isprintable() and _BODY_SUSPECT.search(body))
        or not body.strip()
    ):
        # Something may be wrong: the rules themselves say what (the common case skips them).
        validate_body(body, template_id=message.template_id)
        _check_text("body", body)


# -- helpers -------------------------------------------------------------------------------------


def _check_encodable(message: Message) -> None:
    """Refuse a lone surrogate in a free-text field: it is not Unicode text, cannot be encoded
    for the wire and would fail the whole request (a Python str from a record may hold one).

    Raises:
        ValidationError: ``<field>`` / ``not_text``.
    """
    texts = [
        ("body", message.body),
        ("callback_profile_id", message.callback_profile_id),
        *((name, getattr(message, name)) for name in REF_FIELDS),
        *((f"template_data.{name}", value) for name, value in message.template_data),
        *((f"ref_custom[{i}]", value) for i, value in enumerate(message.ref_custom)),
    ]
    for field, text in texts:
        _check_text(field, text)


def _check_text(field: str, text: str | None) -> None:
    if isinstance(text, str) and (found := _SURROGATE.search(text)) is not None:
        raise ValidationError(
            field,
            "not_text",
            f"holds a lone surrogate (U+{ord(found.group()):04X}) at position "
            f"{found.start() + 1}: not valid Unicode text",
        )


def blank_to_none(value: str | None) -> str | None:
    """An optional text field as given, stripped; empty or blank means not given (None)."""
    if value is None:
        return None
    text = value.strip()
    return text or None
