"""Delivery receipts as values, and what they say about a result row (pure).

A receipt is one status report for one message id, from a callback or a status poll. Kaleyra
spells its statuses several ways (``Delivered``, ``DELIVERED``, ``UnDelivered``, ``NOT-SENT``,
...); :func:`normalize_status` maps them onto :data:`DeliveryState`. A message's verdict is its
first *final* receipt by arrival (delivered, undelivered, failed, not_sent): a later ``Sent``
never downgrades it, and a later, different final status is a duplicate report, not applied
(GOV.UK Notify's rule). :func:`deliver_row` joins a results-file row with its receipts.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, NamedTuple, Protocol

__all__ = [
    "FINAL_STATES",
    "RECEIPT_FIELDS",
    "DeliveryState",
    "DeliverySummary",
    "ReceiptRecord",
    "ReceiptView",
    "Verdict",
    "deliver_row",
    "normalize_status",
    "recipient_digits",
    "verdict_of",
]

DeliveryState = Literal["delivered", "undelivered", "failed", "not_sent", "pending", "expired"]

#: States no later receipt changes.
FINAL_STATES: Final = frozenset({"delivered", "undelivered", "failed", "not_sent"})

#: The documented callback names we read, in our order (a profile may rename them; see config).
RECEIPT_FIELDS: Final = (
    "id",
    "recipient",
    "status",
    "status_trace",
    "description",
    "timestamp",
    "ref",
    "ref1",
    "ref2",
)

#: Status spellings, letters only and lower case -> state. ``sent`` is accepted, not final.
_STATUS_WORDS: Final[Mapping[str, str]] = {
    "delivered": "delivered",
    "delivrd": "delivered",
    "undelivered": "undelivered",
    "undeliv": "undelivered",
    "expired": "undelivered",
    "rejected": "undelivered",
    "failed": "failed",
    "failure": "failed",
    "notsent": "not_sent",
    "sent": "sent",
    "submitted": "sent",
    "accepted": "sent",
    "enroute": "sent",
}
_NOT_LETTERS: Final = re.compile(r"[^a-z]")


@functools.lru_cache(maxsize=1024)
def normalize_status(raw: str | None) -> str | None:
    """``"Delivered"``, ``"DELIVERED"``, ``"UnDelivered"``, ``"NOT-SENT"``, ``"Not Sent"``, ...
    -> ``delivered``, ``undelivered``, ``not_sent``, ``failed`` or ``sent``; None when unknown."""
    if not raw:
        return None
    return _STATUS_WORDS.get(_NOT_LETTERS.sub("", raw.lower()))


def recipient_digits(number: str | None) -> str:
    """A number as digits only: Kaleyra echoes recipients without the "+" we write."""
    return "".join(ch for ch in number or "" if ch.isdigit())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptRecord:
    """One receipt as stored: the documented fields (empty string when absent) and its origin."""

    message_id: str
    status: str
    recipient: str = ""
    status_trace: str = ""
    description: str = ""
    #: Kaleyra's timestamp as sent (``2025-04-17 18:35:20``, no zone).
    timestamp: str = ""
    ref: str = ""
    ref1: str = ""
    ref2: str = ""
    #: ``callback`` or ``poll``.
    source: str = "callback"
    #: When we stored it, epoch seconds.
    received_s: float = 0.0


class ReceiptView(NamedTuple):
    """The columns of a stored receipt that the report and the poll read (cheap to build)."""

    message_id: str
    status: str
    status_trace: str
    timestamp: str
    received_s: float
    recipient: str
    ref: str


class _Receipt(Protocol):
    @property
    def message_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def status_trace(self) -> str: ...
    @property
    def timestamp(self) -> str: ...
    @property
    def received_s(self) -> float: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What a message's receipts say, in arrival order."""

    #: ``sent`` (accepted, nothing final yet), a final state, or None (no readable status).
    state: str | None
    trace: str | None = None
    #: The final receipt's timestamp (Kaleyra's), for ``delivered_at``.
    at: str | None = None
    #: The earliest time we heard of the message, epoch seconds.
    first_seen_s: float | None = None
    #: The message id the receipts name.
    message_id: str | None = None


def verdict_of(receipts: Iterable[_Receipt]) -> Verdict:
    """The first final receipt by arrival wins; without one, ``sent`` if any receipt says so."""
    state: str | None = None
    trace: str | None = None
    at: str | None = None
    first_seen: float | None = None
    message_id: str | None = None
    for receipt in receipts:
        message_id = message_id or receipt.message_id
        if first_seen is None or receipt.received_s < first_seen:
            first_seen = receipt.received_s
        if state in FINAL_STATES:
            continue
        found = normalize_status(receipt.status)
        if found is None:
            continue
        state = found
        trace = receipt.status_trace or None
        at = receipt.timestamp or None
    return Verdict(state, trace, at, first_seen, message_id)


def deliver_row(
    row: Mapping[str, Any],
    by_id: Verdict | None,
    by_ref: Verdict | None,
    *,
    now_s: float,
    accepted_s: float | None,
    expire_after_s: float,
) -> dict[str, Any]:
    """A results-file row plus ``delivery``, ``delivery_trace`` and ``delivered_at``.

    Args:
        row: the result line as read (its keys are kept).
        by_id: the verdict of the receipts naming the row's message id, if any.
        by_ref: for an ``unknown`` row, the verdict of receipts with its ref and number.
        now_s: the report's time, epoch seconds.
        accepted_s: the earliest the row's request can have been accepted (its run's start),
            epoch seconds; None when not known (a row is then never ``expired``).
        expire_after_s: accepted this long without a final receipt: ``expired``.
    """
    out = dict(row)
    verdict = by_id
    if row.get("status") == "unknown" and by_ref is not None and by_ref.message_id:
        # A receipt for this request and number proves it went out, answer or not.
        out["status"] = "sent"
        out["message_id"] = by_ref.message_id
        out["resolved_by"] = "receipt"
        verdict = by_ref
    delivery: str | None = None
    trace = at = None
    if out.get("status") == "sent":
        if verdict is not None and verdict.state in FINAL_STATES:
            delivery, trace, at = verdict.state, verdict.trace, verdict.at
        else:
            since = accepted_s
            if verdict is not None and verdict.first_seen_s is not None:
                since = verdict.first_seen_s if since is None else min(since, verdict.first_seen_s)
            expired = since is not None and now_s - since > expire_after_s
            delivery = "expired" if expired else "pending"
            if verdict is not None:
                trace = verdict.trace
    out["delivery"] = delivery
    out["delivery_trace"] = trace
    out["delivered_at"] = at if delivery == "delivered" else None
    return out


@dataclasses.dataclass(slots=True)
class DeliverySummary:
    """Counts for the report's summary: rows per delivery state, trace codes."""

    states: Counter[str] = dataclasses.field(default_factory=Counter)
    traces: Counter[str] = dataclasses.field(default_factory=Counter)
    resolved: int = 0
    rows: int = 0

    def add(self, line: Mapping[str, Any]) -> None:
        self.rows += 1
        self.states[str(line.get("delivery"))] += 1
        trace = line.get("delivery_trace")
        if trace and line.get("delivery") != "delivered":
            self.traces[str(trace)] += 1
        if line.get("resolved_by") == "receipt":
            self.resolved += 1

    @property
    def accepted(self) -> int:
        return sum(n for state, n in self.states.items() if state != "None")

    @property
    def delivery_rate(self) -> float | None:
        """Delivered over accepted rows; None when none were accepted."""
        accepted = self.accepted
        return self.states["delivered"] / accepted if accepted else None
