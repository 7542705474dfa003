"""The command line: ``python -m kaleyra_async <command>``. The only module that prints.

Exit codes: 0 every row sent (or planned, in a dry run); 1 some rows not sent; 2 usage or
configuration error; 130 interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import logging
import math
import os
import shlex
import shutil
import signal
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TextIO, TypeVar

import anyio

from ._config import Config, load_config
from ._exceptions import (
    AuthenticationError,
    ConfigError,
    ConnectError,
    KaleyraError,
    ValidationError,
    unwrap_group,
)

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_NOT_ALL_SENT: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

logger = logging.getLogger("kaleyra_async")
T = TypeVar("T")


class _UsageError(Exception):
    """A command-line mistake: exit code 2."""


def _program() -> str:
    """How the user ran us, for help and for the resume command we print."""
    name = os.path.basename(sys.argv[0])
    if name.lower().removesuffix(".exe") == "kaleyra-async":  # the Windows launcher is an .exe
        return "kaleyra-async"
    return "python -m kaleyra_async"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_program(),
        description="Asyncio bulk SMS dispatcher for the Kaleyra SMS API.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    # The same switches after the command name (SUPPRESS: an absent one keeps the value above).
    logging_options = argparse.ArgumentParser(add_help=False)
    logging_options.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more logging"
    )
    logging_options.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_command = functools.partial(commands.add_parser, parents=[logging_options])

    bulk = add_command(
        "send-bulk",
        help="send every row of a CSV, one NDJSON result line per row",
        description="Stream a CSV (header row required), validate and batch its rows, send them "
        "within the pod's rate limit, and write one NDJSON result line per data row.",
    )
    bulk.add_argument(
        "input", metavar="INPUT.csv", help="CSV file with a header row, or - for stdin"
    )
    _account_options(bulk)
    _message_options(bulk)
    bulk.add_argument("--out", "-o", metavar="PATH", help="results file (default: stdout)")
    bulk.add_argument("--to-column", default="to", metavar="COL", help="column with the numbers")
    bulk.add_argument(
        "--delimiter", default=",", metavar="CHAR", help="field separator (default ,; \\t: tab)"
    )
    bulk.add_argument(
        "--template-data",
        metavar="COL1,COL2",
        help="columns whose values go into template_data",
    )
    bulk.add_argument("--rate", type=_positive_float, metavar="N", help="requests/s for the pod")
    bulk.add_argument("--concurrency", type=_positive_int, metavar="N", help="requests in flight")
    bulk.add_argument("--batch-size", type=_positive_int, metavar="N", help="recipients/request")
    bulk.add_argument("--max-wait-ms", type=float, metavar="MS", help="linger of a partial batch")
    bulk.add_argument("--dedupe", action="store_true", help="skip repeats of number + message")
    bulk.add_argument("--dry-run", action="store_true", help="send nothing; print the plan")
    bulk.add_argument("--resume", action="store_true", help="continue an interrupted run")
    bulk.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    bulk.add_argument(
        "--retry-ambiguous",
        action="store_true",
        help="resend requests whose fate is unknown (at-least-once: may send duplicates)",
    )
    bulk.add_argument("--no-progress", action="store_true", help="no progress display")
    bulk.set_defaults(handler=_cmd_send_bulk)

    send = add_command("send", help="send one message to one or more numbers")
    send.add_argument("--to", required=True, metavar="N[,N...]", help="recipients (E.164)")
    _account_options(send)
    _message_options(send, bulk=False)
    send.add_argument(
        "--endpoint", choices=("sms", "messages"), default="sms", help="API endpoint to use"
    )
    send.set_defaults(handler=_cmd_send)

    senders = add_command(
        "create-senders",
        help="register sender IDs from a CSV (sender,description,iso_code,entity_id)",
    )
    senders.add_argument("input", metavar="FILE.csv")
    _account_options(senders)
    senders.set_defaults(handler=_cmd_create_senders)

    delete = add_command("delete-senders", help="delete sender IDs")
    delete.add_argument("names", nargs="+", metavar="SENDER")
    _account_options(delete)
    delete.set_defaults(handler=_cmd_delete_senders)

    status = add_command("status", help="delivery status of message ids")
    status.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID")
    _account_options(status)
    status.set_defaults(handler=_cmd_status)

    from .sandbox._command import configure_parser as configure_sandbox

    configure_sandbox(
        commands.add_parser(
            "sandbox",
            help="run the local Kaleyra-compatible sandbox server",
            description="Run a local Kaleyra-compatible SMS server (never contacts Kaleyra).",
        )
    )
    return parser


def _account_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("account")
    group.add_argument(
        "--config", "-c", metavar="PATH", help="TOML config (see config.example.toml)"
    )
    group.add_argument("--base-url", metavar="URL", help="e.g. http://127.0.0.1:8787 (sandbox)")
    group.add_argument("--pod", choices=("IN", "SG", "EU", "NA"), type=str.upper)


def _message_options(parser: argparse.ArgumentParser, *, bulk: bool = True) -> None:
    title = "message defaults (a CSV column of the same name wins)" if bulk else "message"
    group = parser.add_argument_group(title)
    group.add_argument("--sender", metavar="S")
    group.add_argument("--type", metavar="T", type=str.upper, help="OTP, TXN, TXND, MKT, DEFAULT")
    body_help = "body; {column} placeholders are filled from the row" if bulk else "the body"
    group.add_argument("--body", metavar="TEXT", help=body_help)
    group.add_argument("--template-id", metavar="ID", help="DLT template id (12-30 digits)")
    group.add_argument("--country-prefix", metavar="+CC", help="prefix for national numbers")
    group.add_argument("--unicode", metavar="AUTO|0|1")
    group.add_argument("--flash", action="store_true", default=None, help="send as flash SMS")
    group.add_argument("--time", metavar="ISO", help="schedule, e.g. 2026-12-01T10:00:00+05:30")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _config_from(args: argparse.Namespace, *, require_credentials: bool = True) -> Config:
    config = load_config(args.config, require_credentials=require_credentials)
    account: dict[str, Any] = {}
    if args.base_url:
        account["base_url"] = args.base_url
    if args.pod:
        account["pod"] = args.pod
    defaults: dict[str, Any] = {}
    for name in ("sender", "type", "body", "template_id", "unicode", "country_prefix", "flash"):
        value = getattr(args, name, None)
        if value is not None:
            defaults[name] = value
    if getattr(args, "template_data", None):
        cols = tuple(c.strip() for c in args.template_data.split(",") if c.strip())
        defaults["template_data_columns"] = cols
    dispatch: dict[str, Any] = {}
    for arg, key in (
        ("concurrency", "concurrency"),
        ("batch_size", "batch_size"),
        ("max_wait_ms", "max_wait_ms"),
    ):
        if getattr(args, arg, None) is not None:
            dispatch[key] = getattr(args, arg)
    if getattr(args, "dedupe", False):
        dispatch["dedupe"] = True
    pods = dict(config.pods)
    rate = getattr(args, "rate", None)
    pod = account.get("pod", config.pod)
    if rate is not None:
        pods[pod] = dataclasses.replace(config.pods[pod], rate_per_s=rate)
    retry = config.retry
    if getattr(args, "retry_ambiguous", False):
        retry = dataclasses.replace(retry, retry_ambiguous=True)
    return dataclasses.replace(
        config,
        **account,
        pods=pods,
        retry=retry,
        defaults=dataclasses.replace(config.defaults, **defaults),
        dispatch=dataclasses.replace(config.dispatch, **dispatch),
    )


# -- send-bulk ------------------------------------------------------------------------------


def _cmd_send_bulk(args: argparse.Namespace) -> int:
    from ._bulk import BulkOptions, send_bulk
    from ._summary import BulkSummary

    config = _config_from(args, require_credentials=not args.dry_run)
    options = BulkOptions(
        out=args.out,
        to_column=args.to_column,
        resume=args.resume,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
        time=args.time,
        delimiter="\t" if args.delimiter in ("\\t", "tab") else args.delimiter,
    )
    if args.out is None and sys.stdout.isatty() and not args.dry_run:
        logger.info("results go to stdout; use --out results.ndjson to keep them and resume")
    d = config.dispatch
    logger.info(
        "%s %s to %s (pod %s, %g requests/s, %d in flight, batches of %d)%s; results to %s",
        "planning" if args.dry_run else "sending",
        "stdin" if args.input == "-" else args.input,
        _without_userinfo(config.host),
        config.pod,
        config.pod_config.rate_per_s,
        d.concurrency,
        d.batch_size,
        ", resuming" if args.resume else "",
        args.out or "stdout",
    )
    summary = BulkSummary()
    started = time.monotonic()
    show_progress = not args.no_progress and not args.quiet

    finished = False

    async def run() -> None:
        nonlocal finished
        from ._heap import return_free_heap

        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, stop, tg.cancel_scope)
            tg.start_soon(return_free_heap)  # keeps peak RSS flat over millions of rows
            if show_progress:
                tg.start_soon(_show_progress, summary, args.input, sys.stderr)
            await send_bulk(args.input, config, options, stop=stop, summary=summary)
            finished = True
            tg.cancel_scope.cancel()

    # Everything imported so far (phonenumbers' metadata above all) lives for the whole run:
    # keep it out of the garbage collector's full passes, which otherwise stall the event loop
    # for tens of milliseconds at a time (felt as lost rate and bunched requests at 2,000/s).
    gc.collect()
    gc.freeze()
    try:
        anyio.run(run)  # a ConfigError before anything started is reported by main(), alone
    except (KeyboardInterrupt, BaseExceptionGroup) as exc:
        # A Ctrl-C in the instant the finished run removes its signal handler reaches Python's
        # default handler. Every row is recorded by then: report the run, not a traceback.
        if not (finished and _only_interrupts(exc)):
            raise
    _print_summary(summary, config, args, time.monotonic() - started)
    if summary.aborted:
        hint = " --resume sends the rest once that is fixed." if _resumable(args) else ""
        print(f"\nerror: the run stopped itself: {summary.aborted}.{hint}", file=sys.stderr)
        return EXIT_USAGE
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.all_sent else EXIT_NOT_ALL_SENT


def _only_interrupts(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(KeyboardInterrupt)[1] is None
    return isinstance(exc, KeyboardInterrupt)


async def _watch_signals(stop: anyio.Event, scope: anyio.CancelScope) -> None:
    """First Ctrl-C / SIGTERM: stop gracefully. Second: stop now (in-flight rows -> unknown)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if stop.is_set():
                print("\nsecond signal: stopping now", file=sys.stderr)
                scope.cancel()
                return
            name = signal.Signals(signum).name
            print(
                f"\n{name}: finishing requests in flight (Ctrl-C again to stop now)",
                file=sys.stderr,
            )
            stop.set()


async def _show_progress(summary: Any, input_path: str, stream: TextIO) -> None:
    total = None
    if input_path != "-":
        total = await anyio.to_thread.run_sync(_count_data_lines, input_path)
    if stream.isatty():
        from tqdm import tqdm

        with tqdm(total=total, unit="row", file=stream, dynamic_ncols=True) as bar:
            while True:
                bar.n = summary.recorded + summary.resumed_done
                s = summary.by_status
                bar.set_postfix_str(
                    f"sent={s['sent']} failed={s['failed']} invalid={s['invalid']} "
                    f"unknown={s['unknown']}",
                    refresh=False,
                )
                bar.refresh()
                await anyio.sleep(0.25)
    else:
        started = time.monotonic()
        while True:
            await anyio.sleep(10)
            done = summary.recorded
            rate = done / max(time.monotonic() - started, 1e-9)
            left = f", ~{(total - done) / rate:.0f}s left" if total and rate else ""
            counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.by_status.items()))
            print(
                f"progress: {done}{'/' + str(total) if total else ''} rows"
                f"{' (' + counts + ')' if counts else ''}, {rate:.0f} rows/s{left}",
                file=stream,
                flush=True,
            )


def _count_data_lines(path: str) -> int:
    """A quick estimate of the data rows, for the progress bar's ETA (quoted newlines aside)."""
    count = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            count += block.count(b"\n")
    return max(count - 1, 0)


def _print_summary(
    summary: Any, config: Config, args: argparse.Namespace, elapsed_s: float
) -> None:
    if not args.quiet:  # -q: errors only (and how to resume an interrupted run)
        _print_counts(summary, config, args, elapsed_s)
    out = sys.stderr
    if summary.interrupted and _resumable(args):
        print(
            f"\nInterrupted. Rows without a result line are sent by:\n  {_resume_command()}",
            file=out,
        )
    elif summary.interrupted:
        why = (
            "input read from stdin can't be resumed (nothing ties its rows to a later run)"
            if args.out
            else "results on stdout can't be resumed"
        )
        print(
            f"\nInterrupted after {summary.recorded} result lines; the rows without one were not"
            f" sent. The {why}: use a CSV file and --out FILE for runs you may stop.",
            file=out,
        )


def _print_counts(summary: Any, config: Config, args: argparse.Namespace, elapsed_s: float) -> None:
    out = sys.stderr
    s = summary.by_status
    if args.dry_run:
        print("\nDry run: nothing was sent.", file=out)
        print(f"  rows read:        {summary.rows}", file=out)
        print(f"  valid (planned):  {s['planned']}", file=out)
        print(f"  invalid:          {s['invalid']}", file=out)
        hint = "" if config.dispatch.dedupe else " (sent anyway; --dedupe skips them)"
        print(f"  duplicates:       {summary.duplicates}{hint}", file=out)
        print(f"  requests:         {summary.requests}", file=out)
        if summary.encodings:
            print(f"  encodings:        {dict(summary.encodings)}", file=out)
        if summary.segments:
            hist = ", ".join(f"{k} seg: {v}" for k, v in sorted(summary.segments.items()))
            print(f"  segments:         {hist}", file=out)
        if summary.unicode_chars:
            chars = ", ".join(f"{c!r} x{n}" for c, n in summary.unicode_chars.most_common(10))
            print(f"  forced Unicode:   {chars}", file=out)
        rate = config.pod_config.rate_per_s
        print(
            f"  estimated time:   {math.ceil(summary.requests / rate)} s at {rate:g} requests/s "
            f"(pod {config.pod})",
            file=out,
        )
    else:
        line = ", ".join(f"{k} {v}" for k, v in sorted(s.items())) or "no rows"
        print(
            f"\nDone in {elapsed_s:.1f} s: {summary.recorded} rows recorded ({line}); "
            f"{summary.requests_ok}/{summary.requests} requests accepted.",
            file=out,
        )
        if summary.resumed_done:
            earlier = ", ".join(f"{k} {v}" for k, v in sorted(summary.earlier.items()) if v)
            print(
                f"  {summary.resumed_done} rows were already done by earlier runs ({earlier}).",
                file=out,
            )
        if not summary.all_sent and not summary.interrupted and not summary.aborted:
            whose = " (counting the earlier runs' rows)" if summary.resumed_done else ""
            print(f"  exit code 1: some rows are not sent{whose}", file=out)
    reasons = summary.top_reasons()
    if reasons:
        print("  top reasons:", file=out)
        for reason, count in reasons:
            print(f"    {count:>7}  {reason.strip()}", file=out)


def _without_userinfo(url: str) -> str:
    """A base URL as it may be logged: a proxy's ``user:token@`` is a secret too."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # IPv6
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _resumable(args: argparse.Namespace) -> bool:
    """Whether --resume can pick this run up: it needs both the input and the results as files
    (stdin can't be checked to be the same input, so resume refuses it)."""
    return bool(args.out) and args.input != "-"


def _resume_command() -> str:
    argv = sys.argv[1:]
    args = argv[argv.index("send-bulk") + 1 :] if "send-bulk" in argv else argv
    args = [a for a in args if a != "--overwrite"]
    if "--resume" not in args:
        args.append("--resume")
    program = _program()
    if program == "python -m kaleyra_async":
        program = f"{_interpreter()} -m kaleyra_async"
    return " ".join([f"{program} send-bulk", *map(shlex.quote, args)])


def _interpreter() -> str:
    """``python`` when that is the interpreter running us, else its path: the command we print
    must run where kaleyra_async is installed (a venv's python run without activating it)."""
    on_path = shutil.which("python")
    if on_path and os.path.abspath(on_path) == os.path.abspath(sys.executable):
        return "python"
    return shlex.quote(sys.executable)


# -- other commands -------------------------------------------------------------------------


def _cmd_send(args: argparse.Namespace) -> int:
    from ._models import Message

    config = _config_from(args)
    recipients = [n.strip() for n in args.to.split(",") if n.strip()]
    d = config.defaults
    message = Message(
        body=d.body,
        sender=d.sender,
        type=config.message_type,
        template_id=d.template_id,
        unicode=d.unicode,
        flash=d.flash,
        time=args.time,
        callback_profile_id=d.callback_profile_id,
    )

    result = _with_client(config, lambda c: c.send(message, recipients, endpoint=args.endpoint))
    for receipt in result.receipts:
        print(f"{receipt.recipient}\t{receipt.message_id}")
    return EXIT_OK


def _with_client(config: Config, call: Callable[[Any], Awaitable[T]]) -> T:
    """Run one client call from synchronous code."""
    from ._client import KaleyraClient

    async def run() -> T:
        async with KaleyraClient.from_config(config) as client:
            return await call(client)

    return anyio.run(run)


def _cmd_create_senders(args: argparse.Namespace) -> int:
    import csv

    from ._models import SenderId

    config = _config_from(args)
    try:
        with open(args.input, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if "sender" not in (reader.fieldnames or ()):
                raise ConfigError(
                    f"{args.input}: no 'sender' column (columns: sender, description, "
                    "iso_code, entity_id)"
                )
            items = [
                SenderId(
                    (row.get("sender") or "").strip(),
                    (row.get("description") or "").strip(),
                    iso_code=(row.get("iso_code") or "in").strip(),
                    entity_id=(row.get("entity_id") or "").strip() or None,
                )
                for row in reader
            ]
    except OSError as exc:
        raise ConfigError(f"cannot read {args.input}: {exc.strerror}") from None
    for result in _with_client(config, lambda c: c.create_sender_ids(items)):
        print(f"{result.code or ''}\t{result.message}")
    return EXIT_OK


def _cmd_delete_senders(args: argparse.Namespace) -> int:
    config = _config_from(args)
    for result in _with_client(config, lambda c: c.delete_sender_ids(args.names)):
        print(f"{result.code or ''}\t{result.message}")
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    config = _config_from(args)
    for status in _with_client(config, lambda c: c.get_status(args.message_ids)):
        print(f"{status.message_id}\t{status.status}\t{status.detail or ''}")
    return EXIT_OK


# -- entry point ----------------------------------------------------------------------------


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.ERROR
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        try:
            return int(handler(args))
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None
    except (ConfigError, ValidationError, _UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (AuthenticationError, ConnectError) as exc:
        # A refused key or SID, or no server at that URL: the setup is wrong, as send-bulk says
        # when it stops itself for the same reasons (exit 2 from both).
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KaleyraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for item, reason in getattr(exc, "details", ()):
            print(f"  {item}: {reason}" if item else f"  {reason}", file=sys.stderr)
        return EXIT_NOT_ALL_SENT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        # Results may go to stdout; a closed pipe (| head) is not an error worth a traceback.
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
