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

from ._config import AFTER_ACCEPT_FAULTS, DEFAULT_SENDER
from ._fields import (
    check_ref_custom,
    check_refs,
    check_template_data,
    check_time,
    flag,
    json_body,
    opt_str,
    read_body,
    recipients,
)
from ._json_route import send_json
from ._replies import Reject, envelope, json_response
from ._rules import (
    FLASH_VALUES,
    MAX_BODY_CHARS,
    MAX_RECIPIENTS,
    MAX_SENDER_CREATE,
    MAX_SENDER_DELETE,
    MAX_STATUS_IDS,
    TEMPLATE_ID,
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
    to = recipients(fields)

    kind = opt_str(fields, "type") or config.default_type
    if kind not in config.message_types:
        allowed = ", ".join(sorted(config.message_types))
        raise Reject(
            "E408", f"type {kind!r} is not valid on the {config.pod} pod ({allowed})", field="type"
        )
    if kind == "OTP" and len(to) > 1:
        raise Reject("E404", "only one recipient is allowed in a single OTP request", field="to")

    body = opt_str(fields, "body")
    template_id = opt_str(fields, "template_id", allow_int=True)
    if body is None and template_id is None:
        raise Reject("E406", "body or template_id is required", field="body")
    if body is not None and len(body) > MAX_BODY_CHARS:
        raise Reject("E401", f"body is longer than {MAX_BODY_CHARS} characters", field="body")
    if template_id is not None and not TEMPLATE_ID.fullmatch(template_id):
        raise Reject("E407", "template_id must be 12 to 30 digits", field="template_id")
    sender = opt_str(fields, "sender") or DEFAULT_SENDER
    problem = sender_problem(sender, config.pod)
    if problem is not None:
        raise Reject("E415", problem, field="sender")
    unicode = flag(fields, "unicode", UNICODE_VALUES, "E409")
    flash = flag(fields, "flash", FLASH_VALUES, "E410")
    check_time(opt_str(fields, "time"), now_s)
    check_template_data(fields.get("template_data"))
    check_ref_custom(fields.get("ref_custom"))
    check_refs(fields)

    request_id = state.new_request_id()
    head = orjson.dumps(
        {
            "id": request_id,
            "sender": sender,
            "type": kind,
            "body": body,
            "createdDateTime": state.created_text(now_s),
            "totalCount": len(to),
        }
    )
    # data[] is formatted by hand, not built as dicts for orjson, because it is the hot path:
    # request ids are UUIDs and recipients digits, so nothing in it needs escaping.
    item = '{"message_id":"' + request_id
    data = ",".join([f'{item}{_ID_TAIL[n]}{digits}"}}' for n, digits in enumerate(to, 1)])
    response_body = b'%s,"data":[%s],"dlrurl":null,"error":{}%s%s%s}' % (
        head[:-1],
        data.encode(),
        b',"flash":1' if flash == "1" else b"",
        b',"unicode":1' if unicode == "1" else b"",
        b',"source":"API"' if endpoint == "messages" else b"",
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
            if failure is not None and failure[0] == "NotSent":
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
        raise Reject("RBC192", f"at most {MAX_SENDER_CREATE} sender IDs per request", field="data")
    errors: list[dict[str, Any]] = []
    created: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"index": index, "sender": None, "reason": "each item must be an object"})
            continue
        sender, entity = item.get("sender"), item.get("entity_id")
        reason = _sender_item_problem(item)
        # Unique regardless of case (ours).
        key = sender.strip().upper() if isinstance(sender, str) else ""
        if reason is None and (key in state.senders or key in created):
            reason = "duplicate sender ID"
        if reason is not None:
            errors.append({"index": index, "sender": sender, "reason": reason})
            continue
        created[key] = {
            "sender": sender,
            "description": item.get("description", ""),
            "iso_code": item.get("iso_code", "in"),
            "entity_id": entity,
        }
    if errors:
        return envelope(400, "MSG134", f"{len(errors)} sender ID(s) are invalid", error=errors)
    state.senders.update(created)
    payload = {
        "code": "MSG106",
        "message": "Sender ID(s) created successfully",
        "data": list(created.values()),
        "error": {},
    }
    return json_response(200, payload)


def _sender_item_problem(item: Mapping[str, Any]) -> str | None:
    """Why one item of a create call is refused, as ``"<field>: <why>"``, or None."""
    sender, iso_code, entity = item.get("sender"), item.get("iso_code", "in"), item.get("entity_id")
    if not isinstance(sender, str):
        return "sender: must be a string"
    if not isinstance(iso_code, str):
        return "iso_code: must be a string"
    if entity is not None and not isinstance(entity, str):
        return "entity_id: must be a string"
    return sender_id_problem(sender, iso_code, entity)


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
        raise Reject(
            "RBC192", f"at most {MAX_SENDER_DELETE} sender IDs per request", field="sender"
        )
    unknown = [n for n in dict.fromkeys(names) if n.upper() not in state.senders]
    if unknown:
        errors = [{"sender": n, "reason": "sender ID not found"} for n in unknown]
        return envelope(400, "MSG134", f"{len(unknown)} sender ID(s) not found", error=errors)
    for name in names:
        state.senders.pop(name.upper(), None)
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
