r"""Kaleyra's rules as the sandbox reads them: limits, message types, shapes, the schedule window.

The sandbox states its own rules **on purpose**. It imports none of the client's
(``kaleyra_async._validate``): the sandbox is the other side of the wire, and a rule both sides
share can never show one of them misreading Kaleyra's pages. Where the two disagree, a test can
now say which one the pages support (issue 12). The sandbox shares nothing else with the client
package either; it depends only on the standard library, orjson and httptools.

Sources, Kaleyra's pages: the checklist, "Send the First SMS" (``/messages``), "Send OTP SMS"
(``/sms``), "Create Sender ID", and Kaleyra's "Send Bulk SMS", "Schedule SMS" and "Delete Sender
ID" pages as quoted in the project's API digest; where the digest and a page disagree, the page
wins. **(ours)** marks a reading where the pages are silent. Patterns use ``[0-9]``, never
``\d``, which would also match non-ASCII digits.

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
    "INDIA_CODE",
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
    "NATIONAL",
    "PREFIX",
    "SCHEDULE_HORIZON_MONTHS",
    "TEMPLATE_ID",
    "TEXTS",
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
#: Characters in ``ref``, ``ref1`` and ``ref2`` ("Send the First SMS", Optional Parameters: "a
#: maximum of 255 characters"; the digest's 150 comes from an older GET page).
MAX_REF_CHARS: Final = 255

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
TEMPLATE_ID: Final = re.compile(r"[0-9]{12,30}")

# Recipients get an E.164 *shape* check, not a numbering-plan check: the client validates
# numbers fully, and doing that here would make the sandbox the bottleneck of every benchmark.
# A number carries its country code when it starts with "+" or, without "+", has 11 to 15
# digits (the checklist's "918888888888") **(ours)**: the big markets' national numbers have at
# most 10 digits. E164_LIST checks a whole comma-separated ``to`` in one call; E164_ONE and
# NATIONAL sort out the rest one number at a time.
_E164: Final = r"(?:\+[1-9][0-9]{6,14}|[1-9][0-9]{10,14})"
E164_ONE: Final = re.compile(_E164)
E164_LIST: Final = re.compile(rf"{_E164}(?:,{_E164})*")
#: A number without its country code: 6 to 10 digits after an optional trunk prefix 0.
NATIONAL: Final = re.compile(r"0?[1-9][0-9]{5,9}")
#: A ``prefix`` country code, e.g. "+91" ("Send the First SMS").
PREFIX: Final = re.compile(r"\+?[1-9][0-9]{0,3}")
#: India's country code: on the IN pod a request to such a number follows India's DLT rules.
INDIA_CODE: Final = "91"

#: A scheduled ``time`` is at least this far after the request...
MIN_SCHEDULE_LEAD: Final = dt.timedelta(minutes=15)
#: ...and at most this many calendar months after it ("Schedule SMS").
SCHEDULE_HORIZON_MONTHS: Final = 3

_LETTERS_6: Final = re.compile(r"[A-Za-z]{6}")
_ALNUM_6: Final = re.compile(r"[A-Za-z0-9]{6}")
#: A numeric sender, "+" allowed: the two-way sender "+17XXXXXXXX4" ("Send the First SMS").
_NUMERIC: Final = re.compile(r"\+?[0-9]{1,15}")
_ALNUM_11: Final = re.compile(r"[A-Za-z0-9]{1,11}")
_ISO_CODE: Final = re.compile(r"[A-Za-z]{2}")
_ENTITY_ID: Final = re.compile(r"[0-9]{12,30}")

#: The pages' own texts, verbatim, for the answers they show.
TEXTS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        # "Send the First SMS", Failure Response.
        "E401": "SMS length is exceeding 4000 characters.",
        # "Send OTP SMS", Failure Response.
        "E404": "If Type is OTP then only one mobile number is allowed.",
        # "Create Sender ID", Failure Response and Success Response.
        "MSG134": "Sender IDs not created",
        "MSG134_EXISTS": "Sender ID Already exist.",
        "MSG134_LENGTH": "Sender ID has to be registered and it can only be 6 character",
        "MSG106": (
            "Your Sender ID is submitted and will be verified by a Kaleyra Support Team member."
        ),
        "RBC192": "Exceeded max capacity of 5000 senders",
    }
)


def pod_default_type(pod: str) -> str:
    """The ``type`` of a send request without one **(ours)**: TXN on IN, DEFAULT elsewhere."""
    return "TXN" if pod == "IN" else "DEFAULT"


def sender_problem(sender: str, pod: str, *, to_india: bool) -> str | None:
    """Why ``sender`` cannot send, or None.

    Numeric senders (up to 15 digits, "+" allowed: the two-way sender "+17XXXXXXXX4") send
    anywhere. On the IN pod, to an Indian number, an alphabetic sender is a DLT header: "a
    string of 6 alphabetic characters" (the checklist), any case. Elsewhere (other pods, or
    from an IN account to other countries, which the checklist allows) 1-11 letters and digits
    **(ours**: the pages give no length; 11 is GSM's limit for an alphanumeric sender). Spaces
    around it are ignored.
    """
    text = sender.strip()
    if _NUMERIC.fullmatch(text):
        return None
    if pod == "IN" and to_india:
        if _LETTERS_6.fullmatch(text):
            return None
        expected = "6 alphabetic characters (a DLT header) or a numeric sender"
        return f"{sender!r} is not a valid sender for India: {expected}"
    if _ALNUM_11.fullmatch(text):
        return None
    expected = "1-11 letters and digits (a sender ID) or a numeric sender of up to 15 digits"
    return f"{sender!r} is not a valid sender: {expected}"


def sender_id_problem(item: Mapping[str, object]) -> tuple[str, str] | None:
    """Why one item of a create call is refused, as ``(field, reason)``, or None.

    "Create Sender ID" marks every field mandatory: ``sender``, ``description``, ``iso_code``
    (two letters **(ours)**: "a valid ISO code") and ``entity_id`` ("Mandatory for India",
    12-30 digits, a Number in the table, so a JSON number is accepted too). For ``in`` the
    ``sender`` has exactly 6 characters, letters or digits (the page's own "ABCF01"; a longer
    one gets the page's text "Sender ID has to be registered and it can only be 6 character");
    elsewhere 1-11 letters and digits or a numeric sender **(ours)**. ``entity_id`` is optional
    outside India **(ours)**. Spaces around each value are ignored.
    """
    sender, description = item.get("sender"), item.get("description")
    iso_code, entity = item.get("iso_code"), item.get("entity_id")
    if not isinstance(sender, str) or not sender.strip():
        return "sender", "sender is mandatory"
    if not isinstance(description, str) or not description.strip():
        return "description", "description is mandatory"
    if not isinstance(iso_code, str) or _ISO_CODE.fullmatch(iso_code.strip()) is None:
        return "iso_code", f"iso_code {iso_code!r} is not a valid two-letter ISO code"
    india = iso_code.strip().lower() == "in"
    name = sender.strip()
    if india:
        if _ALNUM_6.fullmatch(name) is None:
            return "sender", TEXTS["MSG134_LENGTH"]
    elif _ALNUM_11.fullmatch(name) is None and _NUMERIC.fullmatch(name) is None:
        return "sender", f"{sender!r} is not 1-11 letters and digits or a numeric sender"
    if isinstance(entity, int) and not isinstance(entity, bool):
        entity = str(entity)
    if entity is not None and not isinstance(entity, str):
        return "entity_id", "entity_id must be a string of 12 to 30 digits"
    entity_text = (entity or "").strip()
    if not entity_text:
        return (
            ("entity_id", "entity_id is mandatory for India (the DLT entity id)") if india else None
        )
    if _ENTITY_ID.fullmatch(entity_text) is None:
        return "entity_id", f"entity_id {entity!r} is not 12 to 30 digits"
    return None


def schedule_problem(value: str, now_s: float) -> tuple[Literal["format", "window"], str] | None:
    """Why ``value`` cannot be a scheduled ``time`` at ``now_s``, or None.

    ISO-8601 with a UTC offset: the page's ``YYYY-MM-DDTHH:MM:SS+HH:MM``, and also "Z" and
    fractions of a second **(ours**: ISO-8601 allows both, the page shows neither), from 15
    minutes to 3 calendar months after now; 3 calendar months is the same day and time three
    months on, clamped to the month's last day (30 Nov -> 28/29 Feb).
    """
    now = dt.datetime.fromtimestamp(now_s, dt.UTC)
    try:
        if not value.isascii():  # fromisoformat's rules may change; digits here are ASCII
            raise ValueError(value)
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
