"""The API routes: send, delivery status and sender IDs, each ``(state, request, ...) -> Response``.

A route raises :class:`~._replies.Reject` for a broken rule; :func:`~._handler.handle` has already
checked the path, the credentials, the rate limit and the refusing faults.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs

import orjson

from ._config import AFTER_ACCEPT_FAULTS
from ._fields import (
    check_ref_custom,
    check_refs,
    check_template_data,
    check_time,
    flag,
    json_body,
    opt_str,
    read_body,
    receipt_refs,
    recipients,
)
from ._json_route import send_json
from ._replies import Reject, envelope, json_response
from ._rules import (
    FLASH_VALUES,
    INDIA_CODE,
    MAX_BODY_CHARS,
    MAX_RECIPIENTS,
    MAX_SENDER_CREATE,
    MAX_SENDER_DELETE,
    MAX_STATUS_IDS,
    TEMPLATE_ID,
    TEXTS,
    UNICODE_VALUES,
    sender_id_problem,
    sender_problem,
)
from ._state import SandboxState
from ._values import Acceptance, Request, Response

__all__ = ["ROUTES", "Route"]

#: ``route(state, request, endpoint, now_s, fault)``; ``endpoint`` is "sms" or "messages".
Route = Callable[[SandboxState, Request, str, float, "str | None"], Response]

# The tail of each data[] item after the request id, for message indexes 1..MAX_RECIPIENTS.
_ID_TAIL: Final = tuple(f':{n}","recipient":"' for n in range(MAX_RECIPIENTS + 1))


# -- send ----------------------------------------------------------------------------------------


def _send(
    state: SandboxState, request: Request, endpoint: str, now_s: float, fault: str | None
) -> Response:
    config = state.config
    fields = read_body(request)
    to = recipients(fields, config.pod)

    kind = opt_str(fields, "type") or config.default_type
    if kind not in config.message_types:
        allowed = ", ".join(sorted(config.message_types))
        raise Reject(
            "E408", f"type {kind!r} is not valid on the {config.pod} pod ({allowed})", field="type"
        )
    if kind == "OTP" and len(to) > 1:
        # The page's sample keys the reason by "time", not "to"; copied as printed.
        raise Reject("E404", TEXTS["E404"], field="time")

    body = opt_str(fields, "body")
    template_id = opt_str(fields, "template_id", allow_int=True)
    if template_id is not None and not template_id.strip():
        template_id = None
    sender = opt_str(fields, "sender")
    # India's DLT rules bind a request from the IN pod to an Indian number; asked only when a
    # rule could fail, so the usual request (template id, 6-letter header) never scans `to`.
    to_india = False
    if config.pod == "IN" and (
        template_id is None or sender is None or sender_problem(sender, "IN", to_india=True)
    ):
        to_india = any(digits.startswith(INDIA_CODE) for digits in to)
    if body is None and template_id is None:
        raise Reject("E406", "body or template_id is required", field="body")
    if to_india and template_id is None:
        raise Reject(
            "E417",
            "template_id is mandatory for Indian customers (India's DLT rules: every message "
            "to an Indian number names its registered template)",
            field="template_id",
        )
    if body is not None:
        # "If a user provides a body ... template_id and template_data will be ignored".
        if len(body) > MAX_BODY_CHARS:
            raise Reject("E401", TEXTS["E401"], field="body")
    else:
        if template_id is not None and not TEMPLATE_ID.fullmatch(template_id):
            raise Reject("E407", "template_id must be 12 to 30 digits", field="template_id")
        check_template_data(fields.get("template_data"))
    if sender is None:
        reason = (
            "sender is mandatory: India's DLT rules need the registered 6-letter header"
            if to_india
            else "sender is mandatory"
        )
        raise Reject("E418", reason, field="sender")
    problem = sender_problem(sender, config.pod, to_india=to_india)
    if problem is not None:
        raise Reject("E415", problem, field="sender")
    unicode = flag(fields, "unicode", UNICODE_VALUES, "E409")
    flash = flag(fields, "flash", FLASH_VALUES, "E410")
    check_time(opt_str(fields, "time"), now_s)
    check_ref_custom(fields.get("ref_custom"))
    check_refs(fields)
    opt_str(fields, "callback_profile_id")  # text, as on /sms/json: a number or true is E400

    request_id = state.new_request_id()
    head = orjson.dumps(
        {
            "id": request_id,
            "sender": sender,
            "type": kind,
            # Echoed where given, in the place of the "Send OTP SMS" sample for India.
            **({"template_id": template_id} if template_id is not None else {}),
            "body": body,
            "createdDateTime": state.created_text(now_s),
            "totalCount": len(to),
        }
    )
    # data[] is formatted by hand, not built as dicts for orjson, because it is the hot path:
    # request ids are UUIDs and recipients digits, so nothing in it needs escaping.
    item = '{"message_id":"' + request_id
    data = ",".join([f'{item}{_ID_TAIL[n]}{digits}"}}' for n, digits in enumerate(to, 1)])
    response_body = b'%s,"data":[%s],"dlrurl":null,"error":{}%s%s}' % (
        head[:-1],
        data.encode(),
        b',"flash":1' if flash == "1" else b"",
        b',"unicode":1' if unicode == "1" else b"",
    )

    state.issue(request_id, to, now_s)
    accepted_at = dt.datetime.fromtimestamp(now_s, dt.UTC).isoformat(timespec="milliseconds")
    acceptance = Acceptance(
        request_id=request_id,
        recipients=to,
        sender=sender,
        type=kind,
        body=body,
        template_id=template_id,
        accepted_at=accepted_at,
        fault=fault if fault in AFTER_ACCEPT_FAULTS else None,
        receipts=receipt_refs(fields),
    )
    if state.accepted is not None:
        state.accepted.append(acceptance)
    return Response(status=202, body=response_body, acceptance=acceptance)


# -- status --------------------------------------------------------------------------------------


def _status(
    state: SandboxState, request: Request, endpoint: str, now_s: float, fault: str | None
) -> Response:
    values = parse_qs(request.query).get("message_ids", [])
    ids = [i.strip() for value in values for i in value.split(",") if i.strip()]
    if not ids:
        raise Reject("E420", "message_ids is required", field="message_ids")
    if len(ids) > MAX_STATUS_IDS:
        raise Reject(
            "E421", f"at most {MAX_STATUS_IDS} message_ids per request", field="message_ids"
        )
    deliver_after_s = state.config.deliver_after_s
    entries = []
    for message_id in ids:
        status, detail = "NotFound", "MESSAGE-NOT-FOUND"
        request_id, _, index = message_id.rpartition(":")
        issued = state.issued.get(request_id)
        if issued is not None and index.isdigit() and 1 <= int(index) <= issued.count:
            failure = issued.failures.get(int(index)) if issued.failures else None
            if state.delivery_truth is not None:
                age_s = now_s - issued.accepted_s
                status, detail = state.delivery_truth.status_at(message_id, failure, age_s)
            elif failure is not None and failure[0] == "NotSent":
                status, detail = failure
            elif now_s - issued.accepted_s < deliver_after_s:
                status, detail = "Sent", "SENT"
            elif failure is not None:
                status, detail = failure
            else:
                status, detail = "Delivered", "DELIVERED"
        entry = {"campaign_id": message_id, "status": status, "status_details": detail}
        if endpoint == "sms":
            entry = {"message_id": message_id, **entry}
        entries.append(entry)
    return json_response(200, {"data": entries, "error": {}})


# -- sender IDs ----------------------------------------------------------------------------------


def _create_senders(
    state: SandboxState, request: Request, endpoint: str, now_s: float, fault: str | None
) -> Response:
    body = json_body(request)
    items = body.get("data") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise Reject("E400", "data must be a non-empty array of sender IDs", field="data")
    if len(items) > MAX_SENDER_CREATE:
        raise Reject("RBC192", TEXTS["RBC192"])
    # The page's MSG134: {"<index>": {"<field>": "<reason>", "sender_name": "<sender>"}}.
    errors: dict[str, dict[str, Any]] = {}
    created: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors[str(index)] = {"data": "each item must be an object", "sender_name": None}
            continue
        sender = item.get("sender")
        problem = sender_id_problem(item)
        if problem is not None:
            field, reason = problem
            errors[str(index)] = {field: reason, "sender_name": sender}
            continue
        name = str(sender).strip()  # a string: sender_id_problem checked it
        key = name.upper()  # unique regardless of case (ours)
        if key in state.senders or key in created:
            errors[str(index)] = {"sender": TEXTS["MSG134_EXISTS"], "sender_name": sender}
            continue
        created[key] = {"sender": name, "iso_code": str(item["iso_code"]).lower()}
    if errors:
        return envelope(400, "MSG134", TEXTS["MSG134"], error=errors)
    text = TEXTS["MSG106"]
    data = []
    for key, entry in created.items():
        state.senders[key] = entry
        state.sender_serial += 1
        data.append(
            {
                "id": state.sender_serial,
                "status": "1",
                "sender": entry["sender"],
                "message": text,
                "code": "MSG106",
            }
        )
    return json_response(200, {"code": "MSG106", "message": text, "data": data, "error": {}})


def _delete_senders(
    state: SandboxState, request: Request, endpoint: str, now_s: float, fault: str | None
) -> Response:
    body = json_body(request)
    names = body.get("sender") if isinstance(body, dict) else None
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise Reject("E400", "sender must be a non-empty array of sender IDs", field="sender")
    if len(names) > MAX_SENDER_DELETE:
        raise Reject("RBC192", f"Exceeded max capacity of {MAX_SENDER_DELETE} senders")
    errors = {
        str(index): {"sender": "Sender ID not found.", "sender_name": name}
        for index, name in enumerate(names)
        if name.strip().upper() not in state.senders
    }
    if errors:
        return envelope(400, "MSG134", "Sender IDs not deleted", error=errors)
    for name in names:
        state.senders.pop(name.strip().upper(), None)
    payload = {
        "code": "MSG108",
        "message": "Sender ID(s) deleted successfully",
        "data": [],
        "error": {},
    }
    return json_response(200, payload)


_SEND: Final[Mapping[str, Route]] = {"POST": _send}
_SENDER: Final[Mapping[str, Route]] = {"POST": _create_senders, "DELETE": _delete_senders}
_STATUS: Final[Mapping[str, Route]] = {"GET": _status}
#: The path after ``/v1/<SID>/`` -> method -> route.
ROUTES: Final[Mapping[tuple[str, ...], Mapping[str, Route]]] = {
    ("sms",): _SEND,
    ("sms", "json"): {"POST": send_json},
    ("messages",): _SEND,
    ("sms", "sender"): _SENDER,
    ("messages", "sender"): _SENDER,
    ("sms", "status"): _STATUS,
    ("messages", "status"): _STATUS,
}
