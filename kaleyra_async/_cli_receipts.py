"""The delivery commands: ``receipts serve``, ``status`` (ids, or a results file) and ``report``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from ._cli_common import EXIT_OK, EXIT_USAGE, account_options, config_from, with_client
from ._config_file import load_config
from ._delivery import DeliverySummary
from ._exceptions import ConfigError

__all__ = ["add_delivery_commands"]

AddCommand = Callable[..., argparse.ArgumentParser]


def add_delivery_commands(add_command: AddCommand) -> None:
    """Register ``receipts``, ``status`` and ``report`` on the top-level parser."""
    receipts = add_command("receipts", help="receive delivery receipts (callbacks)")
    actions = receipts.add_subparsers(dest="receipts_command", metavar="ACTION", required=True)
    serve = actions.add_parser("serve", help="store every receipt posted to HOST:PORT")
    serve.add_argument("--db", required=True, metavar="PATH", help="SQLite file (created)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8788, help="port (0: any free port)")
    serve.add_argument("--config", "-c", metavar="PATH", help="TOML config ([receipts] section)")
    serve.set_defaults(handler=_cmd_serve)

    status = add_command(
        "status",
        help="delivery status of message ids, or poll it for a results file's sent rows",
        description="With MESSAGE_IDs: print their status. With RESULTS.ndjson --db PATH: ask "
        "about every sent row without a final receipt and store the answers as receipts.",
    )
    status.add_argument("targets", nargs="+", metavar="MESSAGE_ID|RESULTS.ndjson")
    status.add_argument("--db", metavar="PATH", help="receipts database to store answers in")
    account_options(status)
    status.set_defaults(handler=_cmd_status)

    report = add_command("report", help="delivery report: a results file joined with its receipts")
    report.add_argument("results", metavar="RESULTS.ndjson")
    report.add_argument("--db", required=True, metavar="PATH", help="receipts database")
    report.add_argument("--out", metavar="PATH", help="report file (default: stdout)")
    report.add_argument("--chart", metavar="FILE.png", help="also draw a PNG chart")
    report.add_argument("--config", "-c", metavar="PATH", help="TOML config ([receipts] section)")
    report.set_defaults(handler=_cmd_report)


# -- receipts serve -----------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    from ._receipt_fields import DEFAULT_FIELD_NAMES
    from ._receipt_server import ReceiverSettings, serve_receipts

    config = load_config(args.config, require_credentials=False).receipts
    settings = ReceiverSettings(
        host=args.host,
        port=args.port,
        names={**DEFAULT_FIELD_NAMES, **config.fields},
        secret_header=config.secret_header,
        secret=config.secret,
    )

    def ready(url: str) -> None:
        print(f"listening on {url}", flush=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_receipts(args.db, settings, stop=stop, ready=ready)

    try:
        asyncio.run(run())
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    print("stopped: every receipt answered 200 is stored", file=sys.stderr)
    return EXIT_OK


# -- status ---------------------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    config = config_from(args)
    if args.db is None:
        for status in with_client(config, lambda c: c.get_status(args.targets)):
            print(f"{status.message_id}\t{status.status}\t{status.detail or ''}")
        return EXIT_OK
    if len(args.targets) != 1:
        print("error: with --db, give one results file", file=sys.stderr)
        return EXIT_USAGE
    from ._receipt_store import ReceiptStore
    from ._status_poll import poll_statuses

    async def poll(client: Any) -> Any:
        async with ReceiptStore(args.db) as store:
            return await poll_statuses(
                args.targets[0], store, args.db, client.get_status, clock=time.time
            )

    summary = with_client(config, poll)
    print(
        f"sent rows: {summary.sent:,}; already final: {summary.already_final:,}; "
        f"asked: {summary.asked:,}; answers stored: {summary.stored:,}",
        file=sys.stderr,
    )
    return EXIT_OK


# -- report ---------------------------------------------------------------------------------


def _cmd_report(args: argparse.Namespace) -> int:
    from ._receipt_store import ReceiptReader
    from ._report import write_report

    config = load_config(args.config, require_credentials=False).receipts
    if args.chart:  # fail before the long part when matplotlib is missing
        _require_matplotlib()
    with ReceiptReader(args.db) as reader, _output(args.out) as out:
        summary = write_report(
            args.results,
            reader,
            out,
            now_s=time.time(),
            expire_after_s=config.expire_after_h * 3600,
        )
    _print_summary(summary)
    if args.chart:
        from ._chart import write_chart

        write_chart(summary, args.chart)
        print(f"chart: {args.chart}", file=sys.stderr)
    return EXIT_OK


def _require_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("--chart needs matplotlib: pip install 'kaleyra_async[chart]'")


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    if path is None or path == "-":
        yield sys.stdout.buffer
        return
    try:
        fh = open(path, "wb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    with fh:
        yield fh


def _print_summary(summary: DeliverySummary) -> None:
    rate = summary.delivery_rate
    states = ", ".join(
        f"{'never accepted' if state == 'None' else state}={n:,}"
        for state, n in summary.states.most_common()
    )
    print(f"rows: {summary.rows:,} ({states})", file=sys.stderr)
    shown = "n/a" if rate is None else f"{rate:.1%}"
    print(f"delivery rate: {shown} of {summary.accepted:,} accepted", file=sys.stderr)
    if summary.resolved:
        print(f"unknown rows settled by a receipt: {summary.resolved:,}", file=sys.stderr)
    if summary.traces:
        top = ", ".join(f"{trace}={n:,}" for trace, n in summary.traces.most_common(5))
        print(f"top trace codes: {top}", file=sys.stderr)
