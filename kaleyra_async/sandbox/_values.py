"""The handler's plain values: the parsed request, the response, and what a request accepted."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, Literal, NamedTuple

import orjson

__all__ = ["Acceptance", "Action", "LedgerRecord", "ReceiptAsk", "Request", "Response"]

Action = Literal["respond", "reset"]


class ReceiptAsk(NamedTuple):
    """One accepted message whose delivery receipts were asked for (a ``callback_profile_id``)."""

    #: The message's index in its request (message id ``<request id>:<n>``).
    n: int
    #: Digits with the country code, no "+".
    recipient: str
    #: The message's sender, the receipts' ``source``.
    source: str
    #: The ``ref``, ``ref1``, ``ref2`` its receipts echo (those given).
    refs: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One parsed HTTP request. ``headers`` has lower-case names."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """What the server must do with a request.

    Attributes:
        status: HTTP status (0 when ``action`` is ``"reset"``).
        body: the JSON body.
        headers: extra headers (``Retry-After``, ``Allow``); the server adds the framing ones.
        action: ``"respond"``, or ``"reset"`` to abort the connection without a response.
        delay_ms: how long to wait before acting (latency, slow fault).
        acceptance: the recipients accepted by this request, for the ledger.
    """

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    action: Action = "respond"
    delay_ms: float = 0.0
    acceptance: Acceptance | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LedgerRecord:
    """One accepted recipient message: a line of the ledger."""

    message_id: str
    request_id: str
    #: E.164 with the leading "+".
    recipient: str
    sender: str
    type: str
    body: str | None
    template_id: str | None
    #: ISO-8601 UTC with milliseconds.
    accepted_at: str
    #: The fault that hid or delayed the response to this request, if any.
    fault: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The NDJSON record, keys in a stable order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Acceptance:
    """The recipients of one accepted request; expands into one :class:`LedgerRecord` each.

    Kept per request rather than per recipient so that accepting 100 recipients costs one
    object, not 100.
    """

    request_id: str
    #: Digits with the country code, no "+", in request order (message ``:n`` is index n-1).
    recipients: tuple[str, ...]
    sender: str
    type: str
    body: str | None
    template_id: str | None
    accepted_at: str
    fault: str | None = None
    #: ``/sms/json``: each recipient's own (sender, body, template_id), in recipient order;
    #: None when every recipient got the fields above.
    nodes: tuple[tuple[str, str | None, str | None], ...] | None = None
    #: The refs every recipient's delivery receipts echo, when the request named a
    #: ``callback_profile_id``; None when it asked for no receipts.
    receipts: Mapping[str, str] | None = None
    #: ``/sms/json``: each recipient's own receipt refs (its node over the top level), None
    #: where its node asked for no receipts; replaces ``receipts``.
    node_receipts: tuple[Mapping[str, str] | None, ...] | None = None

    def receipt_asks(self) -> Iterator[ReceiptAsk]:
        """The recipients whose delivery receipts were asked for, in request order."""
        if self.node_receipts is not None:
            nodes = self.nodes
            for n, (digits, refs) in enumerate(
                zip(self.recipients, self.node_receipts, strict=False), 1
            ):
                if refs is not None:
                    sender = nodes[n - 1][0] if nodes is not None else self.sender
                    yield ReceiptAsk(n, digits, sender, refs)
        elif self.receipts is not None:
            for n, digits in enumerate(self.recipients, 1):
                yield ReceiptAsk(n, digits, self.sender, self.receipts)

    def records(self) -> Iterator[LedgerRecord]:
        """One record per recipient."""
        for n, digits in enumerate(self.recipients, 1):
            sender, body, template_id = (
                (self.sender, self.body, self.template_id)
                if self.nodes is None
                else self.nodes[n - 1]
            )
            yield LedgerRecord(
                message_id=f"{self.request_id}:{n}",
                request_id=self.request_id,
                recipient="+" + digits,
                sender=sender,
                type=self.type,
                body=body,
                template_id=template_id,
                accepted_at=self.accepted_at,
                fault=self.fault,
            )

    def ndjson(self) -> bytes:
        """The ledger lines of every recipient, serialised once for the shared fields."""
        if self.nodes is not None:
            return b"".join(
                orjson.dumps(record.to_dict(), option=orjson.OPT_APPEND_NEWLINE)
                for record in self.records()
            )
        shared = orjson.dumps(
            {
                "request_id": self.request_id,
                "sender": self.sender,
                "type": self.type,
                "body": self.body,
                "template_id": self.template_id,
                "accepted_at": self.accepted_at,
                "fault": self.fault,
            }
        )[1:]
        # Request ids are UUIDs and recipients are digits, so they need no JSON escaping.
        head = b'{"message_id":"' + self.request_id.encode() + b":"
        return b"".join(
            b'%s%d","recipient":"+%s",%s\n' % (head, n, digits.encode(), shared)
            for n, digits in enumerate(self.recipients, 1)
        )
