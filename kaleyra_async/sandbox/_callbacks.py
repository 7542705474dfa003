"""Delivery callbacks, decided without I/O: each message's fate, and the receipts it gets.

A message's fate is a pure function of the seed and its message id (:meth:`DeliveryTruth.fate`),
so the callbacks and ``/sms/status`` tell the same story without sharing state: a fail rule
(``--fail-numbers``) wins, else a seeded draw over Kaleyra's documented statuses and trace codes
(``kaleyra-api.md`` §2d, stated here again from the pages, not imported from the client).

:func:`plan_receipts` lays out the receipts of one accepted request: a ``Sent`` and then the
final status per recipient that asked for receipts (the route records who did, with each one's
``source`` and refs: one ask for every recipient of ``/sms``, one per node of ``/sms/json``),
after seeded delays; some finals are duplicated, some arrive before
their ``Sent`` (out of order), and some requests have all their receipts sent before the send's
own answer (which is then held back).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterable, Mapping
from typing import Final, Literal

from ._values import ReceiptAsk

__all__ = [
    "DeliveryTruth",
    "Fate",
    "PlannedReceipt",
    "SandboxCallbacks",
    "plan_receipts",
]

CallbackMethod = Literal["get", "json", "form"]

#: Final outcomes and their documented trace codes (Kaleyra's status-trace table).
_TRACES: Final[Mapping[str, tuple[str, ...]]] = {
    "delivered": ("DELIVRD",),
    "undelivered": ("INV-NUMBER", "ABSENT-SUB", "HANDSET-ERR", "BARRED", "NET-ERR", "MEM-EXEC"),
    "not_sent": ("KLR-INV-NUMBER", "CON-DND", "DND-NUMB", "BLACKLIST", "INV-TEMPLATE-MATCH"),
    "failed": ("FAILED",),
}
#: How each outcome is spelled: the status API's way first, then the callback pages' and the
#: samples' (all documented).
_SPELLINGS: Final[Mapping[str, tuple[str, ...]]] = {
    "delivered": ("Delivered", "DELIVERED"),
    "undelivered": ("UnDelivered", "Undelivered", "UNDELIVERED"),
    "not_sent": ("NotSent", "NOT-SENT"),
    "failed": ("Failed", "FAILED"),
    "sent": ("Sent", "SENT"),
}
_FAIL_RULE_OUTCOMES: Final[Mapping[str, str]] = {
    "notsent": "not_sent",
    "undelivered": "undelivered",
    "failed": "failed",
    "delivered": "delivered",
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SandboxCallbacks:
    """Where and how the sandbox sends delivery receipts (``--callback-url``)."""

    url: str
    method: CallbackMethod = "json"
    #: Outcome shares (the rest of 1 is delivered).
    undelivered: float = 0.06
    not_sent: float = 0.04
    failed: float = 0.02
    #: Final receipt this long after acceptance, drawn uniformly per message.
    min_delay_s: float = 0.05
    max_delay_s: float = 0.5
    #: Share of final receipts sent twice.
    duplicate: float = 0.05
    #: Share of messages whose final receipt is sent before their ``Sent``.
    out_of_order: float = 0.05
    #: Share of requests whose receipts all go out before the send's answer, held back by
    #: ``early_hold_s``.
    early: float = 0.02
    early_hold_s: float = 0.3
    #: A receipt not answered 2xx is tried again this many times, ``retry_spacing_s`` doubling.
    retries: int = 4
    retry_spacing_s: float = 0.5
    #: NDJSON file with one line per receipt the receiver acknowledged (2xx).
    ledger_path: str | None = None
    #: Connections kept open to the receiver.
    connections: int = 8

    def __post_init__(self) -> None:
        if not self.url.startswith("http://"):
            raise ValueError("callback url must start with http:// (the sandbox sends no TLS)")
        if self.method not in ("get", "json", "form"):
            raise ValueError("callback method must be get, json or form")
        shares = (self.undelivered, self.not_sent, self.failed)
        if any(s < 0 for s in shares) or sum(shares) > 1:
            raise ValueError("outcome shares must be >= 0 and sum to at most 1")
        if not 0 <= self.min_delay_s <= self.max_delay_s:
            raise ValueError("callback delays must satisfy 0 <= min <= max")


@dataclasses.dataclass(frozen=True, slots=True)
class Fate:
    """What becomes of one message: its final outcome, trace code and when it is reported."""

    outcome: str
    trace: str
    #: Seconds after acceptance the final status is known.
    delay_s: float
    #: Which documented spelling this message's receipts use (index into the spellings).
    spelling: int

    def status(self, *, final: bool) -> str:
        """The status word as the callback writes it (``Sent`` before the final one)."""
        words = _SPELLINGS["sent" if not final else self.outcome]
        return words[self.spelling % len(words)]


class DeliveryTruth:
    """Every message's fate, from the seed and its id alone (what callbacks and polls share)."""

    def __init__(self, config: SandboxCallbacks, seed: int | None) -> None:
        self.config = config
        self._salt = f"{seed}".encode()

    def _unit(self, message_id: str, purpose: bytes) -> float:
        digest = hashlib.blake2b(message_id.encode(), key=self._salt[:64], person=purpose[:16])
        return int.from_bytes(digest.digest()[:8], "big") / 2**64

    def fate(self, message_id: str, failure: tuple[str, str] | None = None) -> Fate:
        """A message's fate; ``failure`` is a matching fail rule's (status, trace)."""
        c = self.config
        delay = c.min_delay_s + (c.max_delay_s - c.min_delay_s) * self._unit(message_id, b"delay")
        spelling = int(self._unit(message_id, b"spell") * 6)
        if failure is not None:
            outcome = _FAIL_RULE_OUTCOMES.get(failure[0].replace("-", "").lower(), "undelivered")
            return Fate(outcome, failure[1], delay, spelling)
        draw = self._unit(message_id, b"outcome")
        outcome = "delivered"
        for name, share in (
            ("undelivered", c.undelivered),
            ("not_sent", c.not_sent),
            ("failed", c.failed),
        ):
            if draw < share:
                outcome = name
                break
            draw -= share
        traces = _TRACES[outcome]
        trace = traces[int(self._unit(message_id, b"trace") * len(traces))]
        return Fate(outcome, trace, delay, spelling)

    def status_at(
        self, message_id: str, failure: tuple[str, str] | None, age_s: float
    ) -> tuple[str, str]:
        """What ``/sms/status`` says ``age_s`` after acceptance: ``Sent`` until the fate is
        known, then the status API's spelling of it."""
        fate = self.fate(message_id, failure)
        if age_s < fate.delay_s:
            return "Sent", "SENT"
        return _SPELLINGS[fate.outcome][0], fate.trace

    def chance(self, key: str, purpose: bytes) -> float:
        """A seeded number in [0, 1) for ``key`` (duplicates, order, early requests)."""
        return self._unit(key, purpose)


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedReceipt:
    """One receipt to send ``due_s`` (epoch seconds) with these documented fields."""

    due_s: float
    fields: dict[str, str]


def plan_receipts(
    truth: DeliveryTruth,
    *,
    request_id: str,
    asks: Iterable[ReceiptAsk],
    failures: Mapping[int, tuple[str, str]] | None,
    accepted_s: float,
) -> tuple[list[PlannedReceipt], bool]:
    """The receipts of the messages of one accepted request that asked for them (``asks``:
    each with its own recipient, ``source`` and refs), and whether they precede the send's
    answer."""
    c = truth.config
    early = truth.chance(request_id, b"early") < c.early
    planned: list[PlannedReceipt] = []
    for n, digits, source, refs in asks:
        message_id = f"{request_id}:{n}"
        fate = truth.fate(message_id, (failures or {}).get(n))
        sent_due = accepted_s + fate.delay_s / 4
        final_due = accepted_s + fate.delay_s
        if early:
            sent_due = final_due = accepted_s
        elif truth.chance(message_id, b"order") < c.out_of_order:
            sent_due, final_due = final_due, sent_due  # Delivered first, then Sent
        base = {"id": message_id, "recipient": digits, "source": source, **refs}
        finals = [final_due]
        if truth.chance(message_id, b"dup") < c.duplicate:
            finals.append(final_due + fate.delay_s / 2)
        planned.append(
            PlannedReceipt(sent_due, _fields(base, fate.status(final=False), "SENT", sent_due))
        )
        for due in finals:
            fields = _fields(base, fate.status(final=True), fate.trace, final_due)
            planned.append(PlannedReceipt(due, fields))
    return planned, early


def _fields(base: Mapping[str, str], status: str, trace: str, at_s: float) -> dict[str, str]:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at_s))
    description = "Message delivered" if trace == "DELIVRD" else trace.replace("-", " ").lower()
    return {
        **base,
        "status": status,
        "status_trace": trace,
        "description": description,
        "timestamp": stamp,
    }
