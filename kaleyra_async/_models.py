"""Plain values passed between the layers: no I/O, no behaviour beyond small conveniences."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypedDict

__all__ = [
    "Encoding",
    "InputRow",
    "Message",
    "MessageFields",
    "MessageStatus",
    "Receipt",
    "RowResult",
    "RowStatus",
    "SendResult",
    "SenderId",
    "SenderIdResult",
    "with_body",
]

Encoding = Literal["GSM-7", "UCS-2"]
RowStatus = Literal["sent", "failed", "invalid", "unknown", "skipped", "planned"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One SMS payload without its recipients.

    Two recipients whose ``Message`` compares equal can share one multi-recipient request, so
    every field that goes on the wire lives here and the value is hashable.
    """

    body: str | None = None
    sender: str | None = None
    type: str = "DEFAULT"
    template_id: str | None = None
    #: DLT template variables, as ordered (name, value) pairs so that the value stays hashable.
    template_data: tuple[tuple[str, str], ...] = ()
    #: "AUTO", "0" or "1"; None leaves the field out.
    unicode: str | None = None
    flash: bool = False
    #: Scheduled send time, ISO-8601 with a UTC offset.
    time: str | None = None
    ref_custom: tuple[str, ...] = ()
    callback_profile_id: str | None = None
    #: Your own references, up to 255 characters each, "returned in the callback".
    ref: str | None = None
    ref1: str | None = None
    ref2: str | None = None
    #: India's DLT principal entity id: an ``/sms/json`` node field only (``/sms`` has none).
    entity_id: str | None = None

    @property
    def is_otp(self) -> bool:
        """OTP messages may only ever go to one recipient per request."""
        return self.type == "OTP"

    @classmethod
    def of(cls, type: str, fields: MessageFields) -> Message:
        """The message of a type and the keyword fields a caller gave (see ``send_sms``)."""
        values: dict[str, Any] = dict(fields)
        values["template_data"] = tuple(
            (str(k), str(v)) for k, v in (fields.get("template_data") or {}).items()
        )
        values["ref_custom"] = tuple(fields.get("ref_custom") or ())
        return cls(type=type, **values)


# dataclasses.replace(message, body=body) without its per-call look-ups or ``__init__``'s 14
# ``object.__setattr__`` calls (it runs once per personalised row): a new instance whose slots
# are set through their descriptors, generated from the fields (Message has no __post_init__).
_WITH_BODY_SOURCE: Final = (
    "def with_body(m, body):\n    new = _new(Message)\n"
    + "".join(
        f"    _set_{f.name}(new, {'body' if f.name == 'body' else 'm.' + f.name})\n"
        for f in dataclasses.fields(Message)
    )
    + "    return new\n"
)
_with_body_namespace: dict[str, Any] = {"Message": Message, "_new": object.__new__}
_with_body_namespace.update(
    {f"_set_{f.name}": vars(Message)[f.name].__set__ for f in dataclasses.fields(Message)}
)
exec(_WITH_BODY_SOURCE, _with_body_namespace)
#: ``message`` with another body (not validated: see ``_validate.validate_message_body``).
with_body: Final[Callable[[Message, str | None], Message]] = _with_body_namespace["with_body"]


class MessageFields(TypedDict, total=False):
    """The keyword fields of ``KaleyraClient.send_sms`` and its siblings (see :class:`Message`)."""

    body: str | None
    sender: str | None
    template_id: str | None
    template_data: Mapping[str, str] | None
    unicode: str | None
    flash: bool
    time: str | None
    ref_custom: Sequence[str]
    callback_profile_id: str | None
    ref: str | None
    ref1: str | None
    ref2: str | None
    entity_id: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Receipt:
    """One recipient of an accepted request and the message id Kaleyra gave it."""

    message_id: str
    #: E.164 with the leading "+" (Kaleyra echoes it without; we put it back).
    recipient: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """Kaleyra accepted a send request (HTTP 2xx with an empty ``error``)."""

    request_id: str
    receipts: tuple[Receipt, ...]
    sender: str | None = None
    type: str | None = None
    body: str | None = None
    created: str | None = None
    total_count: int = 0
    #: HTTP attempts it took, retries included.
    attempts: int = 1
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def message_ids(self) -> dict[str, str]:
        """Map each recipient (E.164 with "+") to its message id."""
        return {r.recipient: r.message_id for r in self.receipts}


@dataclasses.dataclass(frozen=True, slots=True)
class SenderId:
    """A sender ID to register (``POST .../sender``)."""

    sender: str
    description: str = ""
    iso_code: str = "in"
    entity_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SenderIdResult:
    """Kaleyra's answer to a sender-ID create or delete call."""

    code: str | None
    message: str
    senders: tuple[str, ...] = ()
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MessageStatus:
    """The delivery status of one message id."""

    message_id: str
    #: "Sent", "Delivered", "UnDelivered", "NotSent", ... as Kaleyra reports it.
    status: str
    #: The trace code or detail, e.g. "DELIVERED", "KLR-INV-NUMBER".
    detail: str | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RowResult:
    """The one recorded outcome of one input row: a line of the results file."""

    #: 1-based data row number (the header is not counted).
    row: int
    #: The normalised E.164 number, or the raw value when the row is invalid.
    to: str
    status: RowStatus
    message_id: str | None = None
    request_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    attempts: int = 0
    segments: int | None = None
    encoding: Encoding | None = None
    #: The request's ``ref`` (ours, naming the run and the request, or the user's), returned in
    #: delivery receipts; None when the request had none.
    ref: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class InputRow:
    """One data row of the input, or the reason it could not be read."""

    #: 1-based data row number: the header is not counted, nor are blank lines.
    row: int
    #: Column name -> value. With an error: only the values that could be read, often none.
    fields: dict[str, str]
    #: Why the row is unusable (bad bytes, wrong field count, malformed CSV), or None; it names
    #: the file line the row started on.
    error: str | None = None
