"""Sender-ID rules for the create and delete calls, checked before any request (pure)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Final

from ._exceptions import ValidationError
from ._limits import ALPHANUMERIC_SENDER, DLT_SENDER_ID, NUMERIC_SENDER
from ._models import SenderId
from ._validate import blank_to_none, validate_entity_id

__all__ = ["validate_sender_id", "validate_sender_ids", "validate_sender_names"]

_ISO_CODE: Final = re.compile(r"[A-Za-z]{2}")


def validate_sender_id(item: SenderId, *, index: int) -> SenderId:
    """Return a normalised sender ID to register; fields are named ``senders[<index>].<field>``.

    From the "Create Sender ID" page:

    * ``iso_code``: two letters, lower-cased;
    * ``description``: mandatory, not blank;
    * ``sender``: for India (``in``) 6 characters, letters and digits ("it can only be 6
      character", MSG134's text), upper-cased; elsewhere 1-11 letters and digits or a number;
    * ``entity_id`` (the DLT principal entity id): "Mandatory for India", 12-30 digits; optional
      elsewhere ("" means not given).

    Raises:
        ValidationError: ``senders[i].<field>`` / ``format`` or ``required``.
    """
    prefix = f"senders[{index}]"
    iso_code = item.iso_code.strip() if isinstance(item.iso_code, str) else ""
    if _ISO_CODE.fullmatch(iso_code) is None:
        raise ValidationError(
            f"{prefix}.iso_code", "format", f"{item.iso_code!r} is not a two-letter country code"
        )
    iso_code = iso_code.lower()
    sender = item.sender.strip() if isinstance(item.sender, str) else ""
    if iso_code == "in":
        if DLT_SENDER_ID.fullmatch(sender) is None:
            raise ValidationError(
                f"{prefix}.sender",
                "format",
                f"{item.sender!r} is not an Indian DLT sender ID: 6 letters and digits",
            )
        sender = sender.upper()
    elif ALPHANUMERIC_SENDER.fullmatch(sender) is None and NUMERIC_SENDER.fullmatch(sender) is None:
        raise ValidationError(
            f"{prefix}.sender",
            "format",
            f"{item.sender!r} is not 1-11 letters and digits or a number of up to 15 digits",
        )
    description = item.description.strip() if isinstance(item.description, str) else ""
    if not description:
        raise ValidationError(
            f"{prefix}.description", "required", "is required: describe what the sender is for"
        )
    entity_id = blank_to_none(item.entity_id)
    if entity_id is None and iso_code == "in":
        raise ValidationError(
            f"{prefix}.entity_id",
            "required",
            "is required for India: the DLT principal entity id (12 to 30 digits)",
        )
    if entity_id is not None:
        try:
            entity_id = validate_entity_id(entity_id)
        except ValidationError as exc:  # the same rule, named at this sender's field
            raise ValidationError(f"{prefix}.entity_id", exc.rule, exc.reason) from None
    return dataclasses.replace(
        item, sender=sender, description=description, iso_code=iso_code, entity_id=entity_id
    )


def validate_sender_ids(items: Iterable[SenderId]) -> list[SenderId]:
    """Validate sender IDs to create; at least one, no sender twice (after normalisation).

    There is no upper bound here: split the result with ``chunked(result,
    MAX_SENDER_IDS_PER_CREATE)`` (``_request_rules.chunked``).

    Raises:
        ValidationError: ``senders`` / ``required``; ``senders[i].sender`` / ``duplicate``; or
            any rule of :func:`validate_sender_id`.
    """
    result: list[SenderId] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        checked = validate_sender_id(item, index=index)
        if checked.sender in seen:
            raise ValidationError(
                f"senders[{index}].sender",
                "duplicate",
                f"{checked.sender!r} is already senders[{seen[checked.sender]}]",
            )
        seen[checked.sender] = index
        result.append(checked)
    if not result:
        raise ValidationError("senders", "required", "at least one sender ID is required")
    return result


def validate_sender_names(names: Iterable[str] | str) -> list[str]:
    """Validate sender names to delete: stripped, non-empty; repeats are dropped.

    No shape rule applies: a name registered under older rules must still be deletable. Asking
    twice to delete one name has one meaning, so repeats are removed (first one kept) rather
    than refused. A single string is one name.

    There is no upper bound here: split the result with ``chunked(result,
    MAX_SENDER_IDS_PER_DELETE)``.

    Raises:
        ValidationError: ``senders`` / ``required``; ``senders[i]`` / ``required``.
    """
    items = (names,) if isinstance(names, str) else names
    result: dict[str, None] = {}
    for index, name in enumerate(items):
        text = name.strip() if isinstance(name, str) else ""
        if not text:
            raise ValidationError(f"senders[{index}]", "required", "a sender name is empty")
        result.setdefault(text, None)
    if not result:
        raise ValidationError("senders", "required", "at least one sender name is required")
    return list(result)
