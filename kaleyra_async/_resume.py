"""Reading an earlier run's results and journal back for a resume, and repairing them.

What a row's files say about it (see :mod:`kaleyra_async._results` for why): a result line means
done, never sent again; a journal mark without a result line means its request may have reached
Kaleyra (``unknown`` on resume, never resent silently); neither means never sent.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeGuard

import orjson

from ._exceptions import ConfigError
from ._results import journal_path_for

__all__ = ["Progress", "describe_input", "load_progress", "same_input"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class Progress:
    """What an earlier run of the same input already did, read back from its files."""

    #: done[row] is 1 when the row has a result line (index 0 unused).
    done: bytearray = dataclasses.field(default_factory=bytearray)
    #: Rows journaled as in flight that have no result line.
    unresolved: set[int] = dataclasses.field(default_factory=set)
    #: The input description recorded by the first run.
    input: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: How many result lines there were, by status.
    statuses: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: The earlier run was a dry run: its "planned" lines are not outcomes.
    dry_run: bool = False
    #: The message options of the first run (body, sender, type, ...), to compare on resume.
    plan: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The ``ref`` of the request each unresolved row was last in flight with, when it had one.
    refs: dict[int, str] = dataclasses.field(default_factory=dict)

    def is_done(self, row: int) -> bool:
        return row < len(self.done) and self.done[row] == 1

    def mark_done(self, row: int) -> None:
        if row >= len(self.done):
            self.done.extend(bytes(max(row + 1 - len(self.done), len(self.done))))
        self.done[row] = 1


def describe_input(path: str | None) -> dict[str, Any]:
    """What identifies an input file across runs: its size and a hash of its ends.

    Resume relies on row N being the same person in both runs; the hash of the first and last
    megabyte catches an edited or swapped file of the same size. stdin and records cannot be
    identified (empty description).
    """
    if path is None or path == "-":
        return {}
    block = 1 << 20
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(block))
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(block, size - block))
        digest.update(fh.read(block))
    return {"path": os.path.abspath(path), "size": size, "sha256_ends": digest.hexdigest()[:32]}


def same_input(earlier: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether two descriptions name the same content (the path may differ: files move)."""
    keys = ("size", "sha256_ends")
    return all(earlier.get(k) == now.get(k) for k in keys)


def load_progress(results_path: str | os.PathLike[str]) -> Progress:
    """Read an earlier run's results and journal, repairing a torn last line of either.

    Raises:
        ConfigError: a file exists but is not one of ours (a line that isn't a JSON object).
            A file that does not start as ours is refused before anything in it is cut.
    """
    progress = Progress()
    results = Path(results_path)
    journal = journal_path_for(results)
    _check_ours(results, journal)
    for line_no, record in _read_ndjson(results):
        row = record.get("row")
        if type(row) is not int or row < 1:  # not _is_row(row), inline: once per line
            raise ConfigError(f"{results}:{line_no}: not a kaleyra_async result line")
        if progress.is_done(row):
            raise ConfigError(f"{results}:{line_no}: row {row} has two result lines")
        progress.mark_done(row)
        progress.statuses[str(record.get("status"))] += 1
    # A "released" line says that this run's request for the rows never reached Kaleyra; it
    # says nothing of an earlier run's request for them. A row of unknown fate that a resume
    # (retry_ambiguous) tried again and got refused is still of unknown fate: the marks of
    # earlier runs are kept apart, and only a result line settles them.
    earlier_runs: set[int] = set()
    this_run: set[int] = set()
    for line_no, record in _read_ndjson(journal):
        if "inflight" in record:
            this_run.update(record["inflight"])
        elif "released" in record:
            this_run.difference_update(record["released"])
        elif "journal" in record or "resumed" in record:
            earlier_runs |= this_run
            this_run = set()
            if "journal" in record:
                if not progress.input:
                    progress.input = dict(record.get("input") or {})
                    progress.plan = dict(record.get("plan") or {})
                progress.dry_run = progress.dry_run or bool(record.get("dry_run"))
        else:
            raise ConfigError(f"{journal}:{line_no}: not a kaleyra_async journal line")
    progress.unresolved = {row for row in earlier_runs | this_run if not progress.is_done(row)}
    if progress.unresolved:
        # A second pass keeps only the refs of unresolved rows (few), not of every mark read.
        for _, record in _read_ndjson(journal):
            ref = record.get("ref")
            if isinstance(ref, str) and "inflight" in record:
                for row in record["inflight"]:
                    if row in progress.unresolved:
                        progress.refs[row] = ref
    return progress


def _check_ours(results: Path, journal: Path) -> None:
    """Refuse files that kaleyra_async did not write, before a torn tail is cut from them.

    Every run writes its journal's header line before anything else, so files with content are
    ours only when the journal starts with that header; a results line must start the results.

    Raises:
        ConfigError: naming the file, which is left exactly as it was.
    """
    journal_head = _first_line(journal)
    results_head = _first_line(results)
    if journal_head is None and results_head is None:
        return  # nothing was ever written: nothing to cut either
    untouched = "it is left as it is: choose another --out"
    if journal_head is None:
        raise ConfigError(
            f"{results}: not a kaleyra_async results file (there is no {journal.name} beside "
            f"it); {untouched}"
        )
    header = _json_object(journal_head)
    if header is None or "journal" not in header:
        raise ConfigError(
            f"{journal}:1: not a kaleyra_async journal (the first line is not its header); "
            f"{untouched}"
        )
    if results_head and results_head.endswith(b"\n"):
        record = _json_object(results_head)
        if record is None or not _is_row(record.get("row")):
            raise ConfigError(f"{results}:1: not a kaleyra_async result line; {untouched}")


def _is_row(value: object) -> TypeGuard[int]:
    """A data row number as the writer writes it: an integer from 1 (JSON true is not one)."""
    return type(value) is int and value >= 1


def _first_line(path: Path, limit: int = 1 << 20) -> bytes | None:
    """The first line of a file, with its newline if it has one; None if missing or empty."""
    try:
        with path.open("rb") as fh:
            line = fh.readline(limit)
    except FileNotFoundError:
        return None
    return line or None


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _read_ndjson(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    if not path.exists():
        return
    _truncate_torn_tail(path)
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ConfigError(f"{path}:{line_no}: not valid JSON") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{path}:{line_no}: not a JSON object")
            yield line_no, record


def _truncate_torn_tail(path: Path) -> None:
    """Cut a last line that a killed process left without its newline, and say so.

    Cutting is safe in both files: a torn journal mark was never followed by its request (the
    mark is written whole before the request leaves), and a row whose result line is cut is
    still journaled, so resume records it ``unknown`` rather than sending it again.
    """
    with path.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        block = 1 << 16
        pos = size
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            pos = start
        fh.truncate(keep)
    logger.warning(
        "%s: removed a torn last line (%d bytes) left by an interrupted run", path, size - keep
    )
