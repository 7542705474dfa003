"""The command line: ``python -m kaleyra_async <command>``. The only module that prints.

Exit codes: 0 every row sent (or planned, in a dry run); 1 some rows not sent; 2 usage or
configuration error; 130 interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence

from ._cli_bulk import add_send_bulk
from ._cli_common import (
    EXIT_INTERRUPTED,
    EXIT_NOT_ALL_SENT,
    EXIT_OK,
    EXIT_USAGE,
    account_options,
    config_from,
    message_options,
    program,
    with_client,
)
from ._cli_queue import add_worker
from ._cli_receipts import add_delivery_commands
from ._exceptions import (
    AuthenticationError,
    ConfigError,
    ConnectError,
    KaleyraError,
    ValidationError,
    unwrap_group,
)
from ._models import SenderId

__all__ = ["main"]


class _UsageError(Exception):
    """A command-line mistake: exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program(),
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

    add_send_bulk(add_command)
    add_worker(add_command)

    send = add_command("send", help="send one message to one or more numbers")
    send.add_argument("--to", required=True, metavar="N[,N...]", help="recipients (E.164)")
    account_options(send)
    message_options(send, bulk=False)
    send.add_argument(
        "--endpoint", choices=("sms", "messages"), default="sms", help="API endpoint to use"
    )
    send.set_defaults(handler=_cmd_send)

    senders = add_command(
        "create-senders",
        help="register sender IDs from a CSV (sender,description,iso_code,entity_id)",
    )
    senders.add_argument("input", metavar="FILE.csv")
    account_options(senders)
    senders.set_defaults(handler=_cmd_create_senders)

    delete = add_command("delete-senders", help="delete sender IDs")
    delete.add_argument("names", nargs="+", metavar="SENDER")
    account_options(delete)
    delete.set_defaults(handler=_cmd_delete_senders)

    add_delivery_commands(add_command)

    from .sandbox._command import configure_parser as configure_sandbox

    configure_sandbox(
        commands.add_parser(
            "sandbox",
            help="run the local Kaleyra-compatible sandbox server",
            description="Run a local Kaleyra-compatible SMS server (never contacts Kaleyra).",
        )
    )
    return parser


# -- other commands -------------------------------------------------------------------------


def _cmd_send(args: argparse.Namespace) -> int:
    from ._models import Message

    config = config_from(args)
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
        entity_id=d.entity_id,  # refused: /sms has no place for it
    )

    result = with_client(config, lambda c: c.send(message, recipients, endpoint=args.endpoint))
    for receipt in result.receipts:
        print(f"{receipt.recipient}\t{receipt.message_id}")
    return EXIT_OK


def _cmd_create_senders(args: argparse.Namespace) -> int:
    import csv

    config = config_from(args)
    try:
        with open(args.input, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if "sender" not in (reader.fieldnames or ()):
                raise ConfigError(
                    f"{args.input}: no 'sender' column (columns: sender, description, "
                    "iso_code, entity_id)"
                )
            items = [_sender_id(row) for row in reader]
    except OSError as exc:
        raise ConfigError(f"cannot read {args.input}: {exc.strerror}") from None
    for result in with_client(config, lambda c: c.create_sender_ids(items)):
        print(f"{result.code or ''}\t{result.message}")
    return EXIT_OK


def _sender_id(row: dict[str, str | None]) -> SenderId:
    """A create-senders CSV row as a SenderId; an empty cell takes SenderId's default."""
    cells = {k: (row.get(k) or "").strip() for k in ("sender", "description", "iso_code")}
    iso_code = {"iso_code": cells["iso_code"]} if cells["iso_code"] else {}
    return SenderId(
        cells["sender"],
        cells["description"],
        entity_id=(row.get("entity_id") or "").strip() or None,
        **iso_code,
    )


def _cmd_delete_senders(args: argparse.Namespace) -> int:
    config = config_from(args)
    for result in with_client(config, lambda c: c.delete_sender_ids(args.names)):
        print(f"{result.code or ''}\t{result.message}")
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
