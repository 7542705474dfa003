"""What a benchmark run does: the contenders, the scenarios and the three sizes (pure data).

Every contender is a separate program started by the harness, so each is measured the same way
(wall clock from spawn to exit, the child's own CPU time and peak RSS from ``wait4``):

* ``ours``: ``python -m kaleyra_async send-bulk`` (the CLI a user runs);
* ``aiohttp``, ``httpx``, ``requests``: the standalone peers in ``benchmarks/peers/``.

A scenario fixes the sandbox's behaviour (rate limit, latency), the input shape, the rate the
client is told, and how many rows each contender sends. Slow peers get fewer rows where a full
run would not fit the time budget: their *rates* stay comparable, their totals do not, and the
table says so.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from kaleyra_async import DispatchConfig

from ._inputs import Kind

__all__ = [
    "CONTENDERS",
    "MESSAGE",
    "Contender",
    "Mode",
    "Scenario",
    "contender_argv",
    "scenarios_for",
]

Mode = Literal["quick", "default", "full"]

PEERS_DIR: Final = Path(__file__).resolve().parent / "peers"

#: The message every row gets unless its CSV row overrides ``type`` or ``body``.
MESSAGE: Final[Mapping[str, str]] = {
    "sender": "KLRHXA",
    "type": "TXN",
    "body": "Your account statement for November is ready. Log in to view it.",
    "template_id": "1107161234567890123",
}

#: Requests in flight for every asyncio contender: our default (``dispatch.concurrency``),
#: given to the peers too so that no one wins by opening more connections.
CONCURRENCY: Final = DispatchConfig().concurrency
#: "No client-side limit" for ours, whose default pod rate is 100 requests/s.
UNLIMITED_RATE: Final = 1_000_000


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Contender:
    """One program under test."""

    key: str
    label: str
    #: Is this kaleyra_async (whose sandbox counters are also checked against its results)?
    ours: bool = False


CONTENDERS: Final[Mapping[str, Contender]] = {
    c.key: c
    for c in (
        Contender(key="ours", label="kaleyra_async", ours=True),
        Contender(key="aiohttp", label="(a) aiohttp+Semaphore"),
        Contender(key="httpx", label="(b) httpx.AsyncClient"),
        Contender(key="requests", label="(c) requests, sequential"),
    )
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One table section: a sandbox setting, an input shape, and rows per contender."""

    key: str
    title: str
    what: str
    kind: Kind
    #: Data rows per run, by contender key; a contender not listed does not run here.
    rows: Mapping[str, int]
    #: The sandbox's own limit (429 above it), 0: none.
    sandbox_rate_per_s: int = 0
    sandbox_latency_ms: float = 0.0
    #: The pod rate ours is configured with (the peers have no limiter).
    client_rate_per_s: float = UNLIMITED_RATE
    #: A run taking longer than this is killed and counted as failed.
    timeout_s: float = 300.0
    #: The figure this scenario is about, for the chart and the ratio column.
    headline: Literal["recipients_per_s", "requests_per_s", "server_rate_per_s"] = (
        "recipients_per_s"
    )

    @property
    def contenders(self) -> tuple[str, ...]:
        return tuple(self.rows)


def scenarios_for(mode: Mode) -> tuple[Scenario, ...]:
    """The scenarios of one run size.

    ``default`` is sized to finish ``make bench`` in under 10 minutes on a 2-core machine;
    ``full`` gives every peer the full row count (about half an hour, mostly peers (b) and (c));
    ``quick`` is tiny, for the smoke test.
    """
    if mode == "quick":
        bulk = {"ours": 2_000, "aiohttp": 2_000, "httpx": 2_000, "requests": 2_000}
        otp = {"ours": 300, "aiohttp": 300, "httpx": 300, "requests": 300}
        wan = {"ours": 200, "aiohttp": 200, "httpx": 200, "requests": 20}
        lim200, lim2000 = 200, 1_000
    elif mode == "default":
        # Sized so that each run takes 5-40 s and the whole default run stays under 10 minutes
        # on 2 cores; see "Scaled rows" in benchmarks/README.md.
        bulk = {"ours": 1_000_000, "aiohttp": 1_000_000, "httpx": 150_000, "requests": 150_000}
        otp = {"ours": 50_000, "aiohttp": 50_000, "httpx": 3_000, "requests": 5_000}
        wan = {"ours": 4_000, "aiohttp": 4_000, "httpx": 2_000, "requests": 150}
        lim200, lim2000 = 1_000, 6_000
    else:
        bulk = dict.fromkeys(("ours", "aiohttp", "httpx", "requests"), 1_000_000)
        otp = dict.fromkeys(("ours", "aiohttp", "httpx", "requests"), 50_000)
        wan = {"ours": 10_000, "aiohttp": 10_000, "httpx": 10_000, "requests": 1_000}
        lim200, lim2000 = 2_000, 20_000
    return (
        Scenario(
            key="bulk",
            title="Bulk: 100 recipients per request",
            what="one TXN message to every row; loopback sandbox, no limit, no latency",
            kind="bulk",
            rows=bulk,
        ),
        Scenario(
            key="otp",
            title="OTP: 1 recipient per request",
            what="type OTP, a code per row, so one request per row; loopback sandbox",
            kind="otp",
            rows=otp,
            headline="requests_per_s",
        ),
        Scenario(
            key="wan",
            title="WAN: 50 ms latency, sandbox limit 500 req/s",
            what="personalised TXN (one request per row); ours told --rate 500, peers rely on "
            "429 + Retry-After",
            kind="txn1",
            rows=wan,
            sandbox_rate_per_s=500,
            sandbox_latency_ms=50.0,
            client_rate_per_s=500,
            headline="server_rate_per_s",
        ),
        Scenario(
            key="limit200",
            title="Limiter at 200 req/s (ours only)",
            what="personalised TXN, --rate 200; sandbox unlimited, counting every arrival",
            kind="txn1",
            rows={"ours": lim200},
            client_rate_per_s=200,
            headline="server_rate_per_s",
        ),
        Scenario(
            key="limit2000",
            title="Limiter at 2,000 req/s (ours only)",
            what="personalised TXN, --rate 2000; sandbox unlimited, counting every arrival",
            kind="txn1",
            rows={"ours": lim2000},
            client_rate_per_s=2_000,
            headline="server_rate_per_s",
        ),
    )


def contender_argv(
    contender: Contender,
    scenario: Scenario,
    *,
    input_path: Path,
    out_path: Path,
    base_url: str,
    python: str = sys.executable,
) -> list[str]:
    """The command line that runs ``contender`` on ``input_path`` for ``scenario``."""
    if contender.ours:
        return [
            python, "-m", "kaleyra_async", "-q", "send-bulk", str(input_path),
            "--base-url", base_url, "--out", str(out_path), "--overwrite", "--no-progress",
            "--rate", f"{scenario.client_rate_per_s:g}",
            "--sender", MESSAGE["sender"], "--type", MESSAGE["type"], "--body", MESSAGE["body"],
            "--template-id", MESSAGE["template_id"], "--country-prefix", "+91",
        ]  # fmt: skip
    return [
        python, str(PEERS_DIR / f"{contender.key}_peer.py"), str(input_path),
        "--base-url", base_url, "--out", str(out_path),
        "--sender", MESSAGE["sender"], "--type", MESSAGE["type"], "--body", MESSAGE["body"],
        "--template-id", MESSAGE["template_id"], "--region", "IN",
        "--concurrency", str(CONCURRENCY),
    ]  # fmt: skip
