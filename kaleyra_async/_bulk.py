"""``send_bulk``: the whole bulk job (files, client, pipeline) behind one awaitable call.

The CLI's ``send-bulk`` is a thin shell over this; library users who have a CSV call it too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

import anyio

from ._attempts import ValidatedJsonSend, ValidatedSend
from ._client import KaleyraClient, validated_send, validated_send_json
from ._config import Config
from ._dispatch import dispatch
from ._exceptions import ConfigError, unwrap_group
from ._models import InputRow, RowResult
from ._phone import PhoneNormalizer
from ._prepare import RowPlan, RowPreparer
from ._refs import RequestReferences
from ._results import ResultsWriter, journal_path_for, journal_start_record
from ._resume import Progress, describe_input, load_progress, same_input
from ._sources import CsvSource, RecordSource
from ._summary import BulkSummary

__all__ = ["BulkOptions", "send_bulk"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BulkOptions:
    """Per-run choices that are not account configuration."""

    #: Results file; None writes results to stdout (no journal, so no resume).
    out: str | None = None
    to_column: str = "to"
    resume: bool = False
    #: Replace an existing results file instead of refusing to touch it.
    overwrite: bool = False
    dry_run: bool = False
    #: A scheduled send time applied to every row without a ``time`` column.
    time: str | None = None
    #: The CSV field separator.
    delimiter: str = ","


async def send_bulk(
    source: str | os.PathLike[str] | RecordSource,
    config: Config,
    options: BulkOptions | None = None,
    *,
    stop: anyio.Event | None = None,
    summary: BulkSummary | None = None,
    on_results: Callable[[Sequence[RowResult]], None] | None = None,
    client: KaleyraClient | None = None,
    send: ValidatedSend | None = None,
    send_json: ValidatedJsonSend | None = None,
    _stdin: IO[bytes] | None = None,
    _stdout: IO[bytes] | None = None,
) -> BulkSummary:
    """Send every row of the input and record exactly one result per row.

    Args:
        source: a CSV file with a header row, "-" for stdin, or a :class:`RecordSource` of
            mappings (rows from a database, a queue...).
        config: the account, defaults and pipeline settings.
        options: output file, resume, dry run (default: results to stdout, or only to
            ``on_results`` when that is given).
        stop: set it (e.g. on Ctrl-C) to stop gracefully: reading stops, requests in flight
            finish and are recorded, rows not yet sent get no result (``--resume`` sends them).
        summary: live counters to update (for a progress display).
        on_results: called in the event loop with each block of results as they are recorded.
        client: send through this client (e.g. one built with your own ``httpx_client``)
            instead of one built from ``config``; it is not closed here.
        send: send each request through this instead of a client (``send-bulk --queue``
            puts it on a Redis stream); no client is built.
        send_json: with ``send``, the ``/sms/json`` requests' send (without it, personalised
            rows go one a request through ``send``).

    Returns:
        The run's counters. ``aborted`` says why the run stopped itself when every request
        would have failed the same way (a refused API key, an unreachable host).

    Raises:
        ConfigError: bad options, an unreadable input, a results file that exists without
            ``resume``/``overwrite``, or a resume whose input differs from the first run's.
    """
    options = options or BulkOptions()
    summary = summary if summary is not None else BulkSummary()
    rows = (
        source
        if isinstance(source, RecordSource)
        else CsvSource(source, stdin=_stdin, delimiter=options.delimiter)
    )
    plan = RowPlan(
        pod=config.pod,
        defaults=config.defaults,
        to_column=options.to_column,
        time=options.time,
        # /sms/json requests go out unless the config says "single" or a caller's send has
        # no /sms/json counterpart.
        json=config.dispatch.personalised == "json" and (send is None or send_json is not None),
    )
    preparer = RowPreparer(
        plan, normalize=PhoneNormalizer(config.defaults.country_prefix), now=datetime.now(UTC)
    )
    plan_record = plan.record()
    progress, input_id = await anyio.to_thread.run_sync(_prepare_files, rows, options, plan_record)
    header_first = False
    if isinstance(rows, CsvSource) and not rows.is_stdin:
        header_first = True
        # Before the outputs are opened: a file without a "to" column must not cost the old
        # results (--overwrite) nor leave new files behind that block the corrected rerun.
        await _check_header(rows, preparer)
    # stdin and records can't be read twice, so their header is checked as it comes: until
    # then, files to overwrite are kept as they are (emptied by the writer with its first write).
    keep_until_header = bool(options.out and options.overwrite and not header_first)
    discard = on_results is not None and options.out is None
    created: list[_Created] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            if not options.dry_run and client is None and send is None:
                client = await stack.enter_async_context(KaleyraClient.from_config(config))
            out = None if discard else (_stdout or sys.stdout.buffer)
            outputs = _open_outputs(options, out, created, keep=keep_until_header)
            writer = ResultsWriter(*stack.enter_context(outputs), truncate_first=keep_until_header)
            start_record = journal_start_record(
                input_id, resumed=progress is not None, dry_run=options.dry_run, plan=plan_record
            )
            references = RequestReferences() if config.receipts.reference else None
            if references is not None:
                start_record["run"] = references.run_id  # the <run> in ka-<run>-<n> refs
            if keep_until_header:

                def start_journal(header: tuple[str, ...]) -> None:
                    preparer.check_header(header)  # a refused header leaves the files alone
                    writer.journal_header(start_record)

                rows.on_header(start_journal)
            else:
                writer.journal_header(start_record)
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer.run)
                if options.dry_run:
                    send = send_json = None
                elif send is None and client is not None:
                    send, send_json = validated_send(client), validated_send_json(client)
                try:
                    await dispatch(
                        rows, preparer, send, writer=writer, config=config.dispatch,
                        retry_ambiguous=config.retry.retry_ambiguous, summary=summary,
                        progress=progress, stop=stop, on_results=on_results,
                        references=references, send_json=send_json,
                    )  # fmt: skip
                finally:
                    await writer.aclose()
    except BaseExceptionGroup as group:
        error = unwrap_group(group)
        if isinstance(error, ConfigError) and summary.rows == 0:
            await anyio.to_thread.run_sync(_forget_outputs, created)
        raise error from None
    return summary


class _HeaderChecked(Exception):
    """Ends the header probe: the header was read and passed the checks."""


async def _check_header(rows: CsvSource, preparer: RowPreparer) -> None:
    """Read the input's header row and check it against the plan, reading no data row.

    Raises:
        ConfigError: the input cannot be opened, or its header is unusable or lacks a column.
    """

    def checked(header: tuple[str, ...]) -> None:
        preparer.check_header(header)
        raise _HeaderChecked  # stops the reader thread before it parses any row

    probe = CsvSource(rows.path, delimiter=rows.delimiter)
    probe.on_header(checked)
    send, receive = anyio.create_memory_object_stream[list[InputRow]](1)
    with send, receive, contextlib.suppress(_HeaderChecked):
        await probe.pump(send)


@dataclasses.dataclass(frozen=True, slots=True)
class _Created:
    """An output file this run created, as it was at creation (to remove only that file)."""

    path: str
    device: int
    inode: int


def _forget_outputs(created: Sequence[_Created]) -> None:
    """Remove the files of a run that stopped before reading any row (a missing column...).

    Nothing was sent, so there is nothing to resume; left behind, they would make the rerun
    with the corrected file fail with "already exists". Only files this run created go, and
    only while the path still names that very regular file: whatever was there before (a
    symlink, /dev/null, an earlier run's results) is never removed.
    """
    for file in created:
        try:
            st = os.lstat(file.path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (file.device, file.inode):
            os.remove(file.path)


def _prepare_files(
    rows: CsvSource | RecordSource, options: BulkOptions, plan: dict[str, Any]
) -> tuple[Progress | None, dict[str, Any]]:
    """Check the options against the files on disk; read an earlier run's progress to resume."""
    if options.resume and options.out is None:
        raise ConfigError("--resume needs --out: results on stdout cannot be resumed")
    if options.resume and options.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other")
    path = rows.path if isinstance(rows, CsvSource) and not rows.is_stdin else None
    if path is not None and not os.path.isfile(path):
        raise ConfigError(f"input file not found: {path}")
    input_id = describe_input(path)
    if options.out is None:
        return None, input_id
    journal = journal_path_for(options.out)
    # Either file counts: a run killed before its first result line leaves only a journal,
    # and starting afresh over it would resend every request that was in flight.
    exists = os.path.exists(options.out) or (journal.exists() and journal.stat().st_size > 0)
    if not options.resume:
        if exists and not options.overwrite:
            if path is None:  # stdin or records: --resume would refuse them
                raise ConfigError(
                    f"{options.out} already exists: pass --overwrite to start again, or choose "
                    "another --out (a run reading stdin or records can't be resumed)"
                )
            raise ConfigError(
                f"{options.out} already exists: pass --resume to continue that run, "
                "or --overwrite to start again"
            )
        return None, input_id
    if path is None:
        # Row N must be the same person in both runs, and a stream cannot be checked for that.
        # Refused even when there is nothing to resume yet: the run it starts could not be
        # resumed either, and finding that out after a crash is too late.
        raise ConfigError("--resume needs the input as a file: stdin or records can't be checked")
    if not exists:
        logger.info("nothing to resume in %s: starting a new run", options.out)
        return None, input_id
    progress = load_progress(options.out)
    if progress.dry_run:
        raise ConfigError(
            f"{options.out} holds a dry run's plan, not a send: use --overwrite to send "
            "(or another --out)"
        )
    if progress.input and not same_input(progress.input, input_id):
        raise ConfigError(
            f"--resume: the input is not the first run's ({progress.input.get('path')}, "
            f"{progress.input.get('size')} bytes); resume with the same file"
        )
    changed = sorted(
        k for k in progress.plan.keys() | plan.keys() if progress.plan.get(k) != plan.get(k)
    )
    if progress.plan and changed:
        # The rest of a campaign must say what its start said.
        raise ConfigError(
            f"--resume: message options differ from the first run's ({', '.join(changed)}); "
            "resume with the same options"
        )
    return progress, input_id


@contextmanager
def _open_outputs(
    options: BulkOptions, stdout: IO[bytes] | None, created: list[_Created], *, keep: bool
) -> Iterator[tuple[IO[bytes] | None, IO[bytes] | None]]:
    """The results file and its journal; without ``out``, ``stdout`` (or nothing) and no journal.

    Files that did not exist are noted in ``created``. With ``keep``, existing files are opened
    without emptying them (the writer does, when it first writes).
    """
    if options.out is None:
        yield stdout, None
        return
    mode = "ab" if options.resume or keep else "wb"
    with (
        _open_output(options.out, mode, created) as results,
        _open_output(journal_path_for(options.out), mode, created) as journal,
    ):
        yield results, journal


def _open_output(path: str | os.PathLike[str], mode: str, created: list[_Created]) -> IO[bytes]:
    try:
        # O_EXCL also refuses a symlink, even a dangling one: only a new file counts as ours.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return open(path, mode)
    st = os.fstat(fd)
    created.append(_Created(os.fspath(path), st.st_dev, st.st_ino))
    return open(fd, mode)
