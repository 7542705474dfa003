"""Kaleyra's rules as the sandbox reads them: limits, message types, shapes, the schedule window.

The sandbox states its own rules **on purpose**. It imports none of the client's
(``kaleyra_async._validate``): the sandbox is the other side of the wire, and a rule both sides
share can never show one of them misreading Kaleyra's pages. Where the two disagree, a test can
now say which one the pages support (issue 12). The sandbox shares nothing else with the client
package either; it depends only on the standard library, orjson and httptools.

Sources, Kaleyra's pages: "Send the First SMS" (``/messages``), "Send OTP SMS" (``/sms``),
"Create Sender ID", and Kaleyra's "Send Bulk SMS", "Schedule SMS" and "Delete Sender ID" pages as
quoted in the project's API digest. **(ours)** marks a reading where the pages are silent.

Pure: each check returns ``None`` or the reason a value breaks the rule; the routes turn the
reason into the sandbox's error code.
"""

from __future__ import annotations

import datetime as dt
import re
import types
from collections.abc import Mapping
from typing import Final, Literal

__all__ = [
    "E164_LIST",
    "E164_ONE",
    "FLASH_VALUES",
    "MAX_BODY_CHARS",
    "MAX_RECIPIENTS",
    "MAX_REF_CHARS",
    "MAX_REF_CUSTOM_CHARS",
    "MAX_REF_CUSTOM_VALUES",
    "MAX_SENDER_CREATE",
    "MAX_SENDER_DELETE",
    "MAX_STATUS_IDS",
    "MAX_TEMPLATE_VALUE_CHARS",
    "MIN_SCHEDULE_LEAD",
    "PREFIX",
    "SCHEDULE_HORIZON_MONTHS",
    "TEMPLATE_ID",
    "TYPES_BY_POD",
    "UNICODE_VALUES",
    "pod_default_type",
    "schedule_problem",
    "sender_id_problem",
    "sender_problem",
]

# -- limits --------------------------------------------------------------------------------------

#: Recipients per send request, ``/sms`` and ``/messages`` ("Send Bulk SMS").
MAX_RECIPIENTS: Final = 100
#: Characters in ``body``; E401 "SMS length is exceeding 4000 characters." ("Send the First SMS").
MAX_BODY_CHARS: Final = 4000
#: ``message_ids`` per status call **(ours)**: the pages give no limit.
MAX_STATUS_IDS: Final = 100
#: Sender IDs per create call; RBC192 beyond it ("Create Sender ID").
MAX_SENDER_CREATE: Final = 5000
#: Sender IDs per delete call ("Delete Sender ID").
MAX_SENDER_DELETE: Final = 100
#: Characters per ``template_data`` value ("Send the First SMS").
MAX_TEMPLATE_VALUE_CHARS: Final = 30
#: Values in ``ref_custom``, and characters per value ("Send the First SMS").
MAX_REF_CUSTOM_VALUES: Final = 5
MAX_REF_CUSTOM_CHARS: Final = 50
#: Characters in ``ref``, ``ref1`` and ``ref2`` (the GET reference page; "Send the First SMS"
#: says 255).
MAX_REF_CHARS: Final = 150

# -- fields --------------------------------------------------------------------------------------

#: ``type`` per pod: India has OTP, TXN, TXND and MKT; Europe, America and Singapore OTP and
#: DEFAULT ("Send the First SMS").
TYPES_BY_POD: Final[Mapping[str, frozenset[str]]] = types.MappingProxyType(
    {
        "IN": frozenset({"OTP", "TXN", "TXND", "MKT"}),
        "SG": frozenset({"OTP", "DEFAULT"}),
        "EU": frozenset({"OTP", "DEFAULT"}),
        "NA": frozenset({"OTP", "DEFAULT"}),
    }
)
#: ``unicode`` and ``flash`` values, compared in upper case ("Send the First SMS").
UNICODE_VALUES: Final = frozenset({"AUTO", "0", "1"})
FLASH_VALUES: Final = frozenset({"0", "1"})
#: A DLT template id: "12 to 30 digits" ("Send the First SMS", "Send OTP SMS").
TEMPLATE_ID: Final = re.compile(r"\d{12,30}")

# Recipients get an E.164 *shape* check, not a numbering-plan check: the client validates
# numbers fully, and doing that here would make the sandbox the bottleneck of every benchmark.
# E164_LIST checks a whole comma-separated ``to`` in one call; E164_ONE finds the culprit.
_E164: Final = r"\+?[1-9]\d{6,14}"
E164_ONE: Final = re.compile(_E164)
E164_LIST: Final = re.compile(rf"{_E164}(?:,{_E164})*")
#: A ``prefix`` country code, e.g. "+91" ("Send the First SMS").
PREFIX: Final = re.compile(r"\+?[1-9]\d{0,3}")

#: A scheduled ``time`` is at least this far after the request...
MIN_SCHEDULE_LEAD: Final = dt.timedelta(minutes=15)
#: ...and at most this many calendar months after it ("Schedule SMS").
SCHEDULE_HORIZON_MONTHS: Final = 3

_LETTERS_6: Final = re.compile(r"[A-Za-z]{6}")
_DIGITS_6: Final = re.compile(r"[0-9]{6}")
_DIGITS_15: Final = re.compile(r"[0-9]{1,15}")
_ALNUM_11: Final = re.compile(r"[A-Za-z0-9]{1,11}")
_ISO_CODE: Final = re.compile(r"[A-Za-z]{2}")
_ENTITY_ID: Final = re.compile(r"[0-9]{12,30}")


def pod_default_type(pod: str) -> str:
    """The ``type`` of a send request without one **(ours)**: TXN on IN, DEFAULT elsewhere."""
    return "TXN" if pod == "IN" else "DEFAULT"


def sender_problem(sender: str, pod: str) -> str | None:
    """Why ``sender`` cannot send on ``pod``, or None.

    IN: a DLT header of exactly 6 letters ("a string of 6 alphabetic characters") or a numeric
    sender of up to 15 digits; other pods: 1-11 letters and digits or up to 15 digits. Spaces
    around it are ignored.
    """
    text = sender.strip()
    if pod == "IN":
        if _LETTERS_6.fullmatch(text) or _DIGITS_15.fullmatch(text):
            return None
        expected = "exactly 6 letters (a DLT header) or up to 15 digits (a numeric sender)"
    else:
        if _ALNUM_11.fullmatch(text) or _DIGITS_15.fullmatch(text):
            return None
        expected = "1-11 letters and digits (a sender ID) or up to 15 digits (a numeric sender)"
    return f"{sender!r} is not a valid sender on the {pod} pod: {expected}"


def sender_id_problem(sender: str, iso_code: str, entity_id: str | None) -> str | None:
    """Why a sender ID cannot be created, as ``"<field>: <why>"``, or None.

    ``iso_code`` is two letters; for ``in`` the ``sender`` is exactly 6 letters or 6 digits,
    elsewhere 1-11 letters and digits or up to 15 digits; ``entity_id``, when given, is 12-30
    digits ("Create Sender ID"). Spaces around each value are ignored; a blank ``entity_id`` is
    not given.
    """
    iso = iso_code.strip()
    if _ISO_CODE.fullmatch(iso) is None:
        return f"iso_code: {iso_code!r} is not a two-letter country code"
    name = sender.strip()
    if iso.lower() == "in":
        if _LETTERS_6.fullmatch(name) is None and _DIGITS_6.fullmatch(name) is None:
            return f"sender: {sender!r} is not an Indian DLT header: exactly 6 letters or 6 digits"
    elif _ALNUM_11.fullmatch(name) is None and _DIGITS_15.fullmatch(name) is None:
        return f"sender: {sender!r} is not 1-11 letters and digits or up to 15 digits"
    entity = entity_id.strip() if entity_id is not None else ""
    if entity and _ENTITY_ID.fullmatch(entity) is None:
        return f"entity_id: {entity_id!r} is not 12 to 30 digits"
    return None


def schedule_problem(value: str, now_s: float) -> tuple[Literal["format", "window"], str] | None:
    """Why ``value`` cannot be a scheduled ``time`` at ``now_s``, or None.

    ISO-8601 with a UTC offset ("Z" too), from 15 minutes to 3 calendar months after now; 3
    calendar months is the same day and time three months on, clamped to the month's last day
    (30 Nov -> 28/29 Feb).
    """
    now = dt.datetime.fromtimestamp(now_s, dt.UTC)
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return "format", f"{value!r} is not an ISO-8601 date and time"
    if when.tzinfo is None or when.utcoffset() is None:
        return "format", f"{value!r} has no UTC offset; write it like 2024-07-13T12:58:00+05:30"
    if when < now + MIN_SCHEDULE_LEAD:
        return "window", f"{value!r} is less than 15 minutes after now ({_iso(now)})"
    if when > _add_months(now, SCHEDULE_HORIZON_MONTHS):
        return "window", (
            f"{value!r} is more than {SCHEDULE_HORIZON_MONTHS} months after now ({_iso(now)})"
        )
    return None


def _iso(when: dt.datetime) -> str:
    return when.replace(microsecond=0).isoformat()


def _add_months(when: dt.datetime, months: int) -> dt.datetime:
    """The same day and time ``months`` later, on the month's last day if that day is missing."""
    month_index = when.month - 1 + months
    year, month = when.year + month_index // 12, month_index % 12 + 1
    next_month = dt.datetime(year + month // 12, month % 12 + 1, 1)
    last_day = (next_month - dt.timedelta(days=1)).day
    return when.replace(year=year, month=month, day=min(when.day, last_day))
