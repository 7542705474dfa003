"""Reading a request's fields and checking them against :mod:`._rules`; a broken rule raises
:class:`~._replies.Reject` with the sandbox's error code for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson

from ._replies import Reject
from ._rules import (
    E164_LIST,
    E164_ONE,
    INDIA_CODE,
    MAX_RECIPIENTS,
    MAX_REF_CHARS,
    MAX_REF_CUSTOM_CHARS,
    MAX_REF_CUSTOM_VALUES,
    MAX_TEMPLATE_VALUE_CHARS,
    NATIONAL,
    PREFIX,
    schedule_problem,
)
from ._values import Request

__all__ = [
    "check_ref_custom",
    "check_refs",
    "check_template_data",
    "check_time",
    "flag",
    "json_body",
    "opt_str",
    "read_body",
    "receipt_refs",
    "recipients",
]


def read_body(request: Request) -> dict[str, Any]:
    """The send body as a dict, from JSON or form fields."""
    content_type = request.headers.get("content-type", "").lower()
    if "application/x-www-form-urlencoded" in content_type:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("E400", "form body is not UTF-8") from None
        fields: dict[str, Any] = {}
        for name, value in parse_qsl(text, keep_blank_values=True):
            # A repeated `to` adds recipients, each `ref_custom` is one value (the client's form
            # encoding: a "," or "[" in a value is text, not a separator); any other repeated
            # field keeps the last value.
            if name == "to" and fields.get("to"):
                fields["to"] = f"{fields['to']},{value}"
            elif name == "ref_custom":
                fields.setdefault(name, []).append(value)
            else:
                fields[name] = value
        return fields
    if content_type and "json" not in content_type:
        raise Reject(
            "E400",
            f"unsupported Content-Type {content_type!r} (application/json is the only one the "
            "pages allow; form fields are taken too)",
            status=415,
        )
    fields = json_body(request)
    if not isinstance(fields, dict):
        raise Reject("E400", "body must be a JSON object")
    return fields


_REFS: Final = ("ref", "ref1", "ref2")

# Mistakes in Kaleyra's own samples, recognised so that the refusal names them (error path only).
_FORM_LIKE: Final = re.compile(rb"\s*[A-Za-z_][A-Za-z0-9_]*=")
_TRAILING_COMMA: Final = re.compile(rb",\s*[}\]]")
_OPEN_KEY: Final = re.compile(rb'"([A-Za-z_]+): "')


def json_body(request: Request) -> Any:
    """The request body parsed as JSON; E400 names the mistake when it is one of the pages'."""
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise Reject("E400", "body is not valid JSON" + _json_hint(request.body)) from None


def _json_hint(body: bytes) -> str:
    """Why a body is not JSON, when it is a mistake that Kaleyra's own samples make."""
    if _FORM_LIKE.match(body):
        return (
            ": it holds form fields (name=value&...) under Content-Type application/json, as "
            "the curl samples of 'Send OTP SMS' do (curl -d); send a JSON object, or form "
            "fields with Content-Type application/x-www-form-urlencoded"
        )
    key = _OPEN_KEY.search(body)
    if key is not None:
        name = key.group(1).decode()
        return (
            f': the key "{name}: " lacks its closing quote, as in the sample of \'Send the '
            f'First SMS\' (write "{name}": ...)'
        )
    if _TRAILING_COMMA.search(body):
        return (
            ": a comma before a closing } or ], as in the sample of 'Create Sender ID' "
            '("entity_id" : "123456789012", }); JSON allows none'
        )
    if not body.rstrip().endswith((b"}", b"]")):
        return ": it ends before its closing brace"
    return ""


def opt_str(fields: Mapping[str, Any], name: str, *, allow_int: bool = False) -> str | None:
    """A text field; None when missing or empty, E400 when it is not a string (or an int)."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise Reject("E400", f"{name} must be a string", field=name)


def recipients(fields: Mapping[str, Any], pod: str) -> tuple[str, ...]:
    """The recipients as digits with their country code, no "+", after the count and shape checks.

    A number with its country code ("+" first, or 11-15 digits) is kept as it is; ``prefix`` is
    put in front only of a number without one ("Send the First SMS": "If the mobile number does
    not have a country code"). Without a prefix, a 10-digit number on the IN pod is Indian
    (the checklist: for India the country code "may or may not be applied"); anywhere else a
    number without its country code is refused, never guessed.
    """
    to = fields.get("to")
    if isinstance(to, list):
        if not all(isinstance(item, str) for item in to):
            raise Reject("E403", "to must hold strings", field="to")
        to = ",".join(to)
    elif to is not None and not isinstance(to, str):
        raise Reject("E403", "to must be a string or an array of strings", field="to")
    if not to:
        raise Reject("E402", "to is required", field="to")
    if to.count(",") >= MAX_RECIPIENTS:
        raise Reject("E405", f"at most {MAX_RECIPIENTS} recipients per request", field="to")
    prefix = opt_str(fields, "prefix")
    if prefix is not None and not PREFIX.fullmatch(prefix):
        raise Reject("E403", f"prefix {prefix!r} is not a country code", field="prefix")
    if E164_LIST.fullmatch(to):
        return tuple(to.replace("+", "").split(","))
    code = prefix.lstrip("+") if prefix is not None else INDIA_CODE if pod == "IN" else None
    digits = []
    for n, item in enumerate(to.split(","), 1):
        number = item.strip()
        if E164_ONE.fullmatch(number):
            digits.append(number.lstrip("+"))
            continue
        if NATIONAL.fullmatch(number) and code is not None:
            national = number.lstrip("0")
            if prefix is not None or len(national) == 10:
                digits.append(code + national)
                continue
        reason = (
            "has no country code: write it with one, or set prefix"
            if NATIONAL.fullmatch(number)
            else "is not an E.164 number"
        )
        raise Reject("E403", f"recipient {n} ({item.strip()!r}) {reason}", field="to")
    return tuple(digits)


def flag(fields: Mapping[str, Any], name: str, allowed: frozenset[str], code: str) -> str | None:
    """A flag in upper case (JSON booleans read as "1"/"0"); None when missing or empty."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    text = ("1" if value else "0") if isinstance(value, bool) else str(value)
    if text.upper() not in allowed:
        raise Reject(code, f"{name} must be one of {', '.join(sorted(allowed))}", field=name)
    return text.upper()


def check_time(value: str | None, now_s: float) -> None:
    """A scheduled ``time``: E411 when unreadable, E412 outside the schedule window."""
    if value is None:
        return
    problem = schedule_problem(value, now_s)
    if problem is not None:
        kind, reason = problem
        raise Reject("E411" if kind == "format" else "E412", reason, field="time")


def check_template_data(value: Any) -> None:
    """``template_data``: an object (or its JSON text) of short strings or numbers; E413."""
    if value is None or value == "":
        return
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise Reject("E413", "template_data is not valid JSON", field="template_data") from None
    if not isinstance(value, dict):
        raise Reject("E413", "template_data must be an object", field="template_data")
    for name, item in value.items():
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise Reject("E413", f"template_data.{name} must be a string", field="template_data")
        if len(str(item)) > MAX_TEMPLATE_VALUE_CHARS:
            raise Reject(
                "E413",
                f"template_data.{name} is longer than {MAX_TEMPLATE_VALUE_CHARS} characters",
                field="template_data",
            )


def check_ref_custom(value: Any) -> None:
    """``ref_custom``: a List of strings ("Send the First SMS"); in form mode each repeated field
    is one value. A JSON string is refused (E414), naming the page's sample that writes one."""
    if value is None or value == "":
        return
    if isinstance(value, str):
        raise Reject(
            "E414",
            f'ref_custom must be a list such as ["John","Doe"], not the string {value!r} '
            "(the sample of 'Send the First SMS' writes \"['John','Doe']\", a string)",
            field="ref_custom",
        )
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Reject("E414", "ref_custom must be a list of strings", field="ref_custom")
    if len(value) > MAX_REF_CUSTOM_VALUES:
        raise Reject(
            "E414", f"ref_custom allows at most {MAX_REF_CUSTOM_VALUES} values", field="ref_custom"
        )
    if any(len(v) > MAX_REF_CUSTOM_CHARS for v in value):
        raise Reject(
            "E414",
            f"ref_custom values are at most {MAX_REF_CUSTOM_CHARS} characters",
            field="ref_custom",
        )


def check_refs(fields: Mapping[str, Any]) -> None:
    """``ref``, ``ref1`` and ``ref2``: text of limited length; E416."""
    for ref in ("ref", "ref1", "ref2"):
        value = opt_str(fields, ref)
        if value is not None and len(value) > MAX_REF_CHARS:
            raise Reject("E416", f"{ref} is longer than {MAX_REF_CHARS} characters", field=ref)


def receipt_refs(fields: Mapping[str, Any]) -> dict[str, str] | None:
    """The ``ref``, ``ref1``, ``ref2`` given, which delivery receipts echo, when ``fields`` name
    a ``callback_profile_id``; None when they ask for no receipts (no or an empty profile)."""
    profile = fields.get("callback_profile_id")  # checked as text before (opt_str)
    if not isinstance(profile, str) or profile == "":
        return None
    return {ref: value for ref in _REFS if isinstance(value := fields.get(ref), str)}
