"""The sandbox's settings: one frozen value, plus parsers for the two CLI mini-languages.

``--faults "429=0.05,reset_before=0.01"`` becomes a :class:`FaultSpec`;
``--fail-numbers "0000=NotSent:KLR-INV-NUMBER"`` becomes a tuple of :class:`FailRule`.
Both parsers raise ``ValueError`` with a sentence that the CLI shows as a usage error.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from ._rules import TYPES_BY_POD, pod_default_type

__all__ = [
    "AFTER_ACCEPT_FAULTS",
    "DEFAULT_API_KEY",
    "DEFAULT_FAIL_RULES",
    "DEFAULT_SID",
    "FAULT_NAMES",
    "FailRule",
    "FaultSpec",
    "SandboxConfig",
    "parse_fail_rules",
    "parse_faults",
]

#: The sandbox's fixed, public credentials. They protect nothing; they exist so that a client
#: that forgets the header or the SID fails against the sandbox the way it would against Kaleyra.
DEFAULT_SID: Final = "HXSANDBOX00001IN"
DEFAULT_API_KEY: Final = "sandbox-key"

#: Fault names in the order their probability bands are laid out on [0, 1).
FAULT_NAMES: Final = (
    "429",
    "503",
    "500_after_accept",
    "reset_before",
    "reset_after_accept",
    "slow",
)
#: The faults that let a request be handled (and its recipients accepted) before they act.
AFTER_ACCEPT_FAULTS: Final = frozenset({"500_after_accept", "reset_after_accept", "slow"})


@dataclasses.dataclass(frozen=True, slots=True)
class FaultSpec:
    """Per-request fault probabilities, drawn with one seeded random number per request.

    Attributes:
        probabilities: ``(name, probability)`` pairs in :data:`FAULT_NAMES` order; the sum is at
            most 1 and the rest of the unit interval means "no fault".
    """

    probabilities: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        total = 0.0
        for name, p in self.probabilities:
            if name not in FAULT_NAMES:
                raise ValueError(
                    f"unknown fault {name!r} (expected one of {', '.join(FAULT_NAMES)})"
                )
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault {name}: probability must be between 0 and 1, not {p}")
            total += p
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities add up to {total:g}, more than 1")

    def __bool__(self) -> bool:
        return any(p > 0 for _, p in self.probabilities)

    def pick(self, u: float) -> str | None:
        """The fault for a uniform random number ``u`` in [0, 1), or None for no fault."""
        edge = 0.0
        for name, p in self.probabilities:
            edge += p
            if u < edge:
                return name
        return None


def parse_faults(spec: str) -> FaultSpec:
    """Parse ``"429=0.05,503=0.02,slow=0.01"`` (empty string or ``none``: no faults).

    Raises:
        ValueError: an unknown name, a value that isn't a probability, a name given twice, or a
            sum above 1.
    """
    spec = spec.strip()
    if not spec or spec.lower() == "none":
        return FaultSpec()
    given: dict[str, float] = {}
    for item in spec.split(","):
        name, sep, value = item.strip().partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"fault {item.strip()!r}: expected NAME=PROBABILITY")
        if name in given:
            raise ValueError(f"fault {name} given twice")
        try:
            given[name] = float(value)
        except ValueError:
            raise ValueError(f"fault {name}: {value.strip()!r} is not a number") from None
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r} (expected one of {', '.join(FAULT_NAMES)})")
    return FaultSpec(tuple((n, given[n]) for n in FAULT_NAMES if n in given))


@dataclasses.dataclass(frozen=True, slots=True)
class FailRule:
    """Recipients whose digits end with ``suffix`` fail with ``status`` and ``trace``.

    ``NotSent`` shows from the first status poll; ``UnDelivered`` shows as ``Sent`` until the
    delivery delay has passed, as a real handset failure would.
    """

    suffix: str
    status: str
    trace: str

    def __post_init__(self) -> None:
        if not self.suffix.isdigit():
            raise ValueError(f"fail rule {self.suffix!r}: the suffix must be digits")
        if self.status not in ("NotSent", "UnDelivered"):
            raise ValueError(f"fail rule {self.suffix}: status must be NotSent or UnDelivered")
        if not self.trace:
            raise ValueError(f"fail rule {self.suffix}: a trace code is required")


DEFAULT_FAIL_RULES: Final = (
    FailRule("0000", "NotSent", "KLR-INV-NUMBER"),
    FailRule("9999", "UnDelivered", "ABSENT-SUB"),
)


def parse_fail_rules(spec: str) -> tuple[FailRule, ...]:
    """Parse ``"0000=NotSent:KLR-INV-NUMBER,9999=UnDelivered:ABSENT-SUB"`` (``none``: no rules).

    Raises:
        ValueError: a malformed item, a suffix that isn't digits or an unknown status.
    """
    spec = spec.strip()
    if not spec or spec.lower() == "none":
        return ()
    rules = []
    for item in spec.split(","):
        suffix, sep, rest = item.strip().partition("=")
        status, sep2, trace = rest.partition(":")
        if not (sep and sep2):
            raise ValueError(f"fail rule {item.strip()!r}: expected DIGITS=STATUS:TRACE")
        rules.append(FailRule(suffix.strip(), status.strip(), trace.strip()))
    return tuple(rules)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SandboxConfig:
    """How one sandbox behaves. Every default is what ``python -m kaleyra_async sandbox`` uses.

    Attributes:
        host: interface to listen on; loopback unless you mean to expose it.
        port: TCP port; 0 picks a free one (read it back from ``Sandbox.base_url``).
        sid: the account SID expected in ``/v1/<SID>/...``.
        api_key: the expected ``api-key`` header value (never shown in a repr).
        pod: IN, SG, EU or NA; decides which message types are valid.
        rate_per_s: requests per sliding second per account; 0 means unlimited.
        latency_ms: added before every API response (asyncio sleep, not blocking).
        slow_ms: how late a ``slow`` fault answers.
        faults: injected faults; see :class:`FaultSpec`.
        seed: seeds the fault draws and the request ids, so a run can be replayed.
        fail_rules: recipients that fail in status polls.
        deliver_after_s: how long after acceptance a message turns from Sent to Delivered.
        ledger_path: NDJSON file that receives one line per accepted recipient; None: no file.
        keep_in_memory: also keep accepted requests in memory for ``ledger_records()``.
        flush_interval_s: how often buffered ledger lines are written to the file.
        status_capacity: how many accepted requests the status API remembers (oldest dropped).
        arrival_log_size: how many recent arrival times ``stats.arrivals`` keeps.
    """

    host: str = "127.0.0.1"
    port: int = 0
    sid: str = DEFAULT_SID
    api_key: str = dataclasses.field(default=DEFAULT_API_KEY, repr=False)
    pod: str = "IN"
    rate_per_s: int = 0
    latency_ms: float = 0.0
    slow_ms: float = 30_000.0
    faults: FaultSpec = FaultSpec()
    seed: int | None = None
    fail_rules: tuple[FailRule, ...] = DEFAULT_FAIL_RULES
    deliver_after_s: float = 2.0
    ledger_path: str | None = None
    keep_in_memory: bool = True
    flush_interval_s: float = 0.2
    status_capacity: int = 100_000
    arrival_log_size: int = 10_000

    def __post_init__(self) -> None:
        if self.pod not in TYPES_BY_POD:
            raise ValueError(f"pod must be one of {', '.join(TYPES_BY_POD)}, not {self.pod!r}")
        for name in ("rate_per_s", "latency_ms", "slow_ms", "deliver_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be > 0")
        if self.status_capacity < 1 or self.arrival_log_size < 0:
            raise ValueError("status_capacity must be >= 1 and arrival_log_size >= 0")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0..65535")

    @property
    def message_types(self) -> frozenset[str]:
        """The ``type`` values this pod accepts."""
        return TYPES_BY_POD[self.pod]

    @property
    def default_type(self) -> str:
        """The ``type`` assumed when a send request has none."""
        return pod_default_type(self.pod)
