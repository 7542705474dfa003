"""Everything the handler reads and changes between requests: counters, senders, issued ids."""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from ._callbacks import DeliveryTruth
from ._config import SandboxConfig
from ._stats import SandboxStats
from ._values import Acceptance, LedgerRecord
from ._window import SlidingWindowLimiter

__all__ = ["Issued", "SandboxState"]


@dataclasses.dataclass(slots=True)
class Issued:
    """What the status API needs to know about one accepted request."""

    accepted_s: float
    count: int
    #: 1-based recipient index -> (status, trace) for recipients that match a fail rule.
    failures: dict[int, tuple[str, str]] | None


class SandboxState:
    """Everything the handler reads and changes: counters, sender IDs, issued message ids.

    Args:
        config: the sandbox's settings.
        id_factory: makes request ids; the default is a UUID4 from a RNG seeded by
            ``config.seed`` (so seeded runs repeat their ids).
    """

    def __init__(
        self, config: SandboxConfig, *, id_factory: Callable[[], str] | None = None
    ) -> None:
        self.config = config
        self._id_factory = id_factory
        #: Message fates shared with the callbacks, when the sandbox sends them.
        self.delivery_truth: DeliveryTruth | None = None
        # Not restarted by reset(): a process never issues the same request id twice.
        self._id_rng = random.Random(None if config.seed is None else f"ids-{config.seed}")
        # Suffixes grouped by length: one set intersection per length tells whether any recipient
        # of a request may fail, which is cheaper than testing each against each rule.
        lengths = {len(rule.suffix) for rule in config.fail_rules}
        self._fail_tails = tuple(
            (n, frozenset(r.suffix for r in config.fail_rules if len(r.suffix) == n))
            for n in sorted(lengths)
        )
        self.reset()

    def reset(self) -> None:
        """Forget everything but the config; restart the fault sequence (not the request ids)."""
        seed = self.config.seed
        self.stats = SandboxStats(self.config.arrival_log_size, self.config.rate_per_s)
        self.limiter = (
            SlidingWindowLimiter(self.config.rate_per_s) if self.config.rate_per_s else None
        )
        self.senders: dict[str, dict[str, Any]] = {}
        #: The last numeric id given to a created sender ID (MSG106's ``id``).
        self.sender_serial = 60000
        self.issued: dict[str, Issued] = {}
        #: Accepted requests in order, when ``config.keep_in_memory``.
        self.accepted: list[Acceptance] | None = [] if self.config.keep_in_memory else None
        self._fault_rng = random.Random(seed)
        self._created_second = -1
        self._created_text = ""

    def new_request_id(self) -> str:
        """A fresh request id (a UUID4 unless an ``id_factory`` was given)."""
        if self._id_factory is not None:
            return self._id_factory()
        return str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))

    def draw_fault(self) -> str | None:
        """The fault for the next request: one random draw per request, when faults are set."""
        faults = self.config.faults
        return faults.pick(self._fault_rng.random()) if faults else None

    def created_text(self, now_s: float) -> str:
        """``createdDateTime`` as Kaleyra writes it, cached per second."""
        second = int(now_s)
        if second != self._created_second:
            self._created_second = second
            self._created_text = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(second))
        return self._created_text

    def issue(self, request_id: str, recipients: tuple[str, ...], now_s: float) -> None:
        """Remember an accepted request for status polls, dropping the oldest past capacity."""
        failures: dict[int, tuple[str, str]] | None = None
        if any(not tails.isdisjoint([d[-n:] for d in recipients]) for n, tails in self._fail_tails):
            failures = {}
            for n, digits in enumerate(recipients, 1):
                for rule in self.config.fail_rules:
                    if digits.endswith(rule.suffix):
                        failures[n] = (rule.status, rule.trace)
                        break
        issued = self.issued
        issued[request_id] = Issued(now_s, len(recipients), failures)
        if len(issued) > self.config.status_capacity:
            del issued[next(iter(issued))]

    def ledger_records(self) -> list[LedgerRecord]:
        """Every accepted recipient kept in memory, in acceptance order."""
        if self.accepted is None:
            return []
        return [record for acceptance in self.accepted for record in acceptance.records()]
