"""``POST /v1/<SID>/sms/json``: top-level defaults plus an ``sms[]`` array of per-recipient nodes.

The page ("Send SMS (JSON/XML)", as quoted in the project's API digest) shows the shape only:
top-level ``channel``, ``type``, ``source``, ``prefix``, ``time`` and the defaults ``from``,
``body``, ``template_id``, ``entity_id``, ``unicode``, ``callback_profile_id``; each node
``to`` plus any of those defaults for itself. Everything else is **(ours)**:

* at most ``json_max_nodes`` nodes (1000: a release note, unconfirmed by the pages), E405;
* each node, merged over the defaults, is checked by the same rules as an ``/sms`` request of
  one recipient; the first broken rule refuses the whole request, naming ``sms[i].<field>``;
* a node key the page does not show (``flash``, ``template_data``) is refused (E400), so that
  a client can't believe it sent one; ``ref``, ``ref1`` and ``ref2`` are accepted as on /sms;
* OTP is refused with more than one node (E404, as on ``/sms``);
* delivery receipts are per node: a node gets them when its ``callback_profile_id`` (its own,
  else the top level's) is set, echoing its own ``ref``/``ref1``/``ref2`` and with its own
  ``from`` as ``source``; a node without a profile gets none;
* the answer is ``/sms``'s shape, ``data[]`` in node order, ``message_id`` ``<id>:<n>``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

import orjson

from ._config import AFTER_ACCEPT_FAULTS
from ._fields import check_refs, check_time, flag, opt_str, read_body, receipt_refs, recipients
from ._replies import Reject
from ._rules import INDIA_CODE, MAX_BODY_CHARS, TEMPLATE_ID, UNICODE_VALUES, sender_problem
from ._state import SandboxState
from ._values import Acceptance, Request, Response

__all__ = ["send_json"]

#: What a node may set for itself: ``to`` and the defaults it overrides.
_NODE_KEYS: Final = frozenset(
    {
        "to",
        "from",
        "body",
        "template_id",
        "entity_id",
        "unicode",
        "callback_profile_id",
        "ref",
        "ref1",
        "ref2",
    }
)
_DEFAULT_KEYS: Final = _NODE_KEYS - {"to"}


def send_json(
    state: SandboxState, request: Request, endpoint: str, now_s: float, fault: str | None
) -> Response:
    """Accept every node of an ``/sms/json`` request, or refuse the request as a whole."""
    config = state.config
    fields = read_body(request)
    nodes = fields.get("sms")
    if not isinstance(nodes, list) or not nodes:
        raise Reject("E402", "sms must be a non-empty array of nodes", field="sms")
    if len(nodes) > config.json_max_nodes:
        raise Reject("E405", f"at most {config.json_max_nodes} nodes per request", field="sms")
    kind = opt_str(fields, "type") or config.default_type
    if kind not in config.message_types:
        allowed = ", ".join(sorted(config.message_types))
        raise Reject(
            "E408", f"type {kind!r} is not valid on the {config.pod} pod ({allowed})", field="type"
        )
    if kind == "OTP" and len(nodes) > 1:
        raise Reject("E404", "only one recipient is allowed in a single OTP request", field="sms")
    check_time(opt_str(fields, "time"), now_s)
    defaults = {key: fields[key] for key in _DEFAULT_KEYS if key in fields}
    prefix = fields.get("prefix")

    numbers: list[str] = []
    per_node: list[tuple[str, str | None, str | None]] = []
    receipts: list[dict[str, str] | None] = []
    for index, node in enumerate(nodes):
        try:
            digits, values, refs = _node(node, defaults, prefix, config.pod)
        except Reject as exc:
            where = f"sms[{index}]" + (f".{exc.field}" if exc.field else "")
            raise Reject(exc.code, f"{where}: {exc.message}", field=where) from None
        numbers.append(digits)
        per_node.append(values)
        receipts.append(refs)

    request_id = state.new_request_id()
    to = tuple(numbers)
    data = [{"message_id": f"{request_id}:{n}", "recipient": d} for n, d in enumerate(to, 1)]
    payload = {
        "id": request_id,
        "type": kind,
        "createdDateTime": state.created_text(now_s),
        "totalCount": len(to),
        "data": data,
        "dlrurl": None,
        "error": {},
    }
    state.issue(request_id, to, now_s)
    first_sender, first_body, first_template = per_node[0]
    acceptance = Acceptance(
        request_id=request_id,
        recipients=to,
        sender=first_sender,
        type=kind,
        body=first_body,
        template_id=first_template,
        accepted_at=dt.datetime.fromtimestamp(now_s, dt.UTC).isoformat(timespec="milliseconds"),
        fault=fault if fault in AFTER_ACCEPT_FAULTS else None,
        nodes=tuple(per_node),
        node_receipts=tuple(receipts) if receipts.count(None) < len(receipts) else None,
    )
    if state.accepted is not None:
        state.accepted.append(acceptance)
    return Response(status=202, body=orjson.dumps(payload), acceptance=acceptance)


def _node(
    node: Any, defaults: Mapping[str, Any], prefix: Any, pod: str
) -> tuple[str, tuple[str, str | None, str | None], dict[str, str] | None]:
    """One node's number (digits), its (sender, body, template_id) and its receipt refs (None:
    it asks for no receipts), after /sms's rules for one recipient: sender mandatory, India's
    DLT rules for an Indian number from the IN pod, a body or a template id."""
    if not isinstance(node, dict):
        raise Reject("E400", "must be an object")
    unknown = sorted(key for key in node if key not in _NODE_KEYS)
    if unknown:
        raise Reject("E400", f"{unknown[0]} is not a node field of /sms/json", field=unknown[0])
    if isinstance(node.get("to"), list):
        raise Reject("E403", "to must be one number", field="to")
    merged = {**defaults, **node}
    if prefix is not None:
        merged["prefix"] = prefix
    numbers = recipients(merged, pod)
    if len(numbers) != 1:
        raise Reject("E403", "to must be one number", field="to")
    to_india = pod == "IN" and numbers[0].startswith(INDIA_CODE)
    body = opt_str(merged, "body")
    template_id = opt_str(merged, "template_id", allow_int=True)
    if template_id is not None and not template_id.strip():
        template_id = None
    if body is None and template_id is None:
        raise Reject("E406", "body or template_id is required", field="body")
    if to_india and template_id is None:
        raise Reject(
            "E417",
            "template_id is mandatory for Indian customers (India's DLT rules)",
            field="template_id",
        )
    if body is not None and len(body) > MAX_BODY_CHARS:
        raise Reject("E401", f"body is longer than {MAX_BODY_CHARS} characters", field="body")
    if body is None and template_id is not None and not TEMPLATE_ID.fullmatch(template_id):
        raise Reject("E407", "template_id must be 12 to 30 digits", field="template_id")
    # The sender-ID page's entity ids have the template id's shape: 12 to 30 digits.
    entity_id = opt_str(merged, "entity_id", allow_int=True)
    if entity_id is not None and not TEMPLATE_ID.fullmatch(entity_id):
        raise Reject("E407", "entity_id must be 12 to 30 digits", field="entity_id")
    sender = opt_str(merged, "from")
    if sender is None:
        raise Reject("E418", "from (the sender) is mandatory", field="from")
    problem = sender_problem(sender, pod, to_india=to_india)
    if problem is not None:
        raise Reject("E415", problem, field="from")
    flag(merged, "unicode", UNICODE_VALUES, "E409")
    asks_receipts = opt_str(merged, "callback_profile_id") is not None
    check_refs(merged)
    return numbers[0], (sender, body, template_id), receipt_refs(merged) if asks_receipts else None
