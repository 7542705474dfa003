"""``python -m kaleyra_async sandbox``: run the sandbox in the foreground.

Prints one line on stdout once listening, flushed, which scripts parse::

    sandbox listening on http://127.0.0.1:8787 (sid HXSANDBOX00001IN)

Ctrl-C or SIGTERM stops it cleanly (ledger flushed and closed) with exit code 0; a one-line
summary goes to stderr. Exit code 1: it could not listen; 2: bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from ._callbacks import SandboxCallbacks
from ._config import (
    DEFAULT_API_KEY,
    DEFAULT_FAIL_RULES,
    DEFAULT_SID,
    FailRule,
    FaultSpec,
    SandboxConfig,
    parse_fail_rules,
    parse_faults,
)
from ._server import Sandbox

__all__ = ["configure_parser", "run"]

_T = TypeVar("_T")


def _usage(parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """Turn a parser's ValueError into an argparse usage error with the same sentence."""

    def convert(text: str) -> _T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``sandbox`` arguments and set ``handler=run``."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    add("--port", type=int, default=8787, help="TCP port, 0 for a free one (default: %(default)s)")
    add("--sid", default=DEFAULT_SID, help="account SID to expect (default: %(default)s)")
    add(
        "--api-key", default=DEFAULT_API_KEY, help="api-key header to expect (default: %(default)s)"
    )
    add("--pod", default="IN", choices=("IN", "SG", "EU", "NA"), help="decides valid message types")
    add("--ledger", metavar="PATH", help="append one NDJSON line per accepted recipient to PATH")
    add(
        "--keep-in-memory",
        action="store_true",
        help="also keep accepted messages in memory (GET /_sandbox/ledger); off to bound memory",
    )
    add(
        "--faults",
        type=_usage(parse_faults),
        default=FaultSpec(),
        metavar="SPEC",
        help='e.g. "429=0.05,503=0.02,500_after_accept=0.01,reset_before=0.01,'
        'reset_after_accept=0.01,slow=0.01"',
    )
    add("--seed", type=int, help="seed for fault draws and request ids (reproducible runs)")
    add("--rate", type=int, default=0, metavar="N", help="requests per second, 0: unlimited")
    add("--latency-ms", type=float, default=0.0, metavar="MS", help="delay before every answer")
    add("--slow-ms", type=float, default=30_000.0, metavar="MS", help="delay of a 'slow' fault")
    add(
        "--fail-numbers",
        type=_usage(parse_fail_rules),
        default=None,
        metavar="SPEC",
        help="recipients that fail in status polls (default: "
        '"0000=NotSent:KLR-INV-NUMBER,9999=UnDelivered:ABSENT-SUB"; "none" for none)',
    )
    add("--deliver-after-s", type=float, default=2.0, metavar="S", help="Sent -> Delivered delay")
    add("--flush-interval-s", type=float, default=0.2, metavar="S", help="ledger flush period")
    add("--json-max-nodes", type=int, default=1000, metavar="N", help="nodes per /sms/json request")
    add("--status-capacity", type=int, default=100_000, metavar="N", help="requests remembered")
    add(
        "--callback-url",
        metavar="URL",
        help="send a delivery receipt to URL for every accepted SMS whose request (or "
        "/sms/json node) names a callback_profile_id (e.g. http://127.0.0.1:8788/dlr)",
    )
    add(
        "--callback-method",
        choices=("get", "json", "form"),
        default="json",
        help="receipts as a GET query, a JSON POST or a form POST (default: %(default)s)",
    )
    add("--callback-ledger", metavar="PATH", help="append each acknowledged receipt to PATH")
    parser.set_defaults(handler=run)


def _config(args: argparse.Namespace) -> SandboxConfig:
    fail_rules: tuple[FailRule, ...] | None = args.fail_numbers
    return SandboxConfig(
        host=args.host,
        port=args.port,
        sid=args.sid,
        api_key=args.api_key,
        pod=args.pod,
        rate_per_s=args.rate,
        latency_ms=args.latency_ms,
        slow_ms=args.slow_ms,
        faults=args.faults,
        seed=args.seed,
        deliver_after_s=args.deliver_after_s,
        ledger_path=args.ledger,
        keep_in_memory=args.keep_in_memory,
        flush_interval_s=args.flush_interval_s,
        status_capacity=args.status_capacity,
        json_max_nodes=args.json_max_nodes,
        fail_rules=DEFAULT_FAIL_RULES if fail_rules is None else fail_rules,
    )


def _callbacks(args: argparse.Namespace) -> SandboxCallbacks | None:
    if args.callback_url is None:
        return None
    return SandboxCallbacks(
        url=args.callback_url, method=args.callback_method, ledger_path=args.callback_ledger
    )


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; the process exit code."""
    try:
        config = _config(args)
        callbacks = _callbacks(args)
    except ValueError as exc:
        print(f"sandbox: error: {exc}", file=sys.stderr)
        return 2
    gc.collect()  # what is loaded now lives as long as the server: out of the collector's
    gc.freeze()  # full passes, which would stall it (arrivals stamped late, as one burst)
    return asyncio.run(_serve(config, callbacks))


async def _serve(config: SandboxConfig, callbacks: SandboxCallbacks | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sandbox = Sandbox(config, callbacks=callbacks)
    try:
        await sandbox.start()
    except OSError as exc:
        print(f"sandbox: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"sandbox listening on {sandbox.base_url} (sid {sandbox.sid})", flush=True)
        await stop.wait()
    finally:
        await sandbox.aclose()
    stats = sandbox.stats
    tightest = stats.tightest_span_s
    print(
        f"sandbox stopped: {stats.requests_total} requests, "
        f"{stats.accepted_recipients} recipients accepted, "
        f"busiest second {stats.max_requests_in_1s} requests"
        + (
            "" if tightest is None else f" ({config.rate_per_s + 1} took {tightest:.4f} s at least)"
        ),
        file=sys.stderr,
    )
    return 0
