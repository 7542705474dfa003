"""``send-bulk``: the command over ``send_bulk``, with progress, signals and the summary."""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import anyio

from ._cli_common import (
    EXIT_INTERRUPTED,
    EXIT_NOT_ALL_SENT,
    EXIT_OK,
    EXIT_USAGE,
    account_options,
    collect_young_less_often,
    config_from,
    freeze_startup_heap,
    message_options,
    positive_float,
    positive_int,
    program,
    without_userinfo,
)
from ._config import Config
from ._exceptions import ConfigError

__all__ = ["add_send_bulk", "watch_signals"]

logger = logging.getLogger("kaleyra_async")


def add_send_bulk(add_command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the ``send-bulk`` command."""
    bulk = add_command(
        "send-bulk",
        help="send every row of a CSV, one NDJSON result line per row",
        description="Stream a CSV (header row required), validate and batch its rows, send them "
        "within the pod's rate limit, and write one NDJSON result line per data row.",
    )
    bulk.add_argument(
        "input", metavar="INPUT.csv", help="CSV file with a header row, or - for stdin"
    )
    account_options(bulk)
    message_options(bulk)
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
    bulk.add_argument("--rate", type=positive_float, metavar="N", help="requests/s for the pod")
    bulk.add_argument("--concurrency", type=positive_int, metavar="N", help="requests in flight")
    bulk.add_argument("--batch-size", type=positive_int, metavar="N", help="recipients/request")
    bulk.add_argument(
        "--personalised",
        choices=("json", "single"),
        help="personalised rows: json = many per /sms/json request (default), single = one "
        "/sms request each",
    )
    bulk.add_argument(
        "--json-batch-size", type=positive_int, metavar="N", help="nodes per /sms/json request"
    )
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
    bulk.add_argument(
        "--queue",
        action="store_true",
        help="queue the batches on Redis (--redis) for `worker` processes; collect the results",
    )
    bulk.add_argument(
        "--queue-depth",
        type=positive_int,
        metavar="N",
        help="with --queue: batches on the stream at once, awaiting a worker (default 512)",
    )
    bulk.set_defaults(handler=_cmd_send_bulk)


def _cmd_send_bulk(args: argparse.Namespace) -> int:
    from ._bulk import BulkOptions, send_bulk
    from ._summary import BulkSummary

    if args.queue and args.concurrency is not None:
        raise ConfigError(
            "--concurrency: with --queue the workers send (`worker --concurrency N`); the "
            "collector's bound is --queue-depth N (batches on the stream at once)"
        )
    if args.queue_depth is not None and not args.queue:
        raise ConfigError("--queue-depth: only with --queue")
    config = config_from(args, require_credentials=not args.dry_run)
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
        "%s %s to %s (pod %s, %g requests/s, %s, batches of %d, personalised: %s)%s; results to %s",
        "planning" if args.dry_run else "queueing" if args.queue else "sending",
        "stdin" if args.input == "-" else args.input,
        without_userinfo(config.host),
        config.pod,
        config.pod_config.rate_per_s,
        f"{config.redis.queue_depth} batches queued at once"
        if args.queue
        else f"{d.concurrency} in flight",
        d.batch_size,
        f"{d.json_batch_size} per /sms/json" if d.personalised == "json" else "one per /sms",
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
            tg.start_soon(watch_signals, stop, tg.cancel_scope)
            tg.start_soon(return_free_heap)  # keeps peak RSS flat over millions of rows
            if show_progress:
                tg.start_soon(_show_progress, summary, args.input, sys.stderr)
            if args.queue:
                from ._queue_collector import send_bulk_queued

                await send_bulk_queued(args.input, config, options, stop=stop, summary=summary)
            else:
                await send_bulk(args.input, config, options, stop=stop, summary=summary)
            finished = True
            tg.cancel_scope.cancel()

    freeze_startup_heap()
    collect_young_less_often()
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


async def watch_signals(stop: anyio.Event, scope: anyio.CancelScope) -> None:
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
        endpoints = ", ".join(
            f"/{name}: {n}" for name, n in sorted(summary.requests_by_endpoint.items())
        )
        print(f"  requests:         {summary.requests} ({endpoints or 'none'})", file=out)
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
    name = program()
    if name == "python -m kaleyra_async":
        name = f"{_interpreter()} -m kaleyra_async"
    return " ".join([f"{name} send-bulk", *map(shlex.quote, args)])


def _interpreter() -> str:
    """``python`` when that is the interpreter running us, else its path: the command we print
    must run where kaleyra_async is installed (a venv's python run without activating it)."""
    on_path = shutil.which("python")
    if on_path and os.path.abspath(on_path) == os.path.abspath(sys.executable):
        return "python"
    return shlex.quote(sys.executable)
