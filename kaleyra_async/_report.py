"""The delivery report: a results file joined with the receipts database, streamed.

One output line per results line, in the same order: the result's keys plus ``delivery``,
``delivery_trace`` and ``delivered_at`` (:func:`~._delivery.deliver_row`). The results file is
read a chunk of lines at a time and each chunk's receipts are looked up in one query per few
hundred ids, so memory stays flat however long the file is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any, Final

import orjson

from ._delivery import DeliverySummary, deliver_row, recipient_digits, verdict_of
from ._exceptions import ConfigError
from ._receipt_store import ReceiptReader
from ._results import journal_path_for

__all__ = ["read_result_chunks", "run_started_s", "write_report"]

#: Results lines per lookup round.
CHUNK_ROWS: Final = 5_000


def read_result_chunks(
    path: str | os.PathLike[str], chunk_rows: int = CHUNK_ROWS
) -> Iterator[list[dict[str, Any]]]:
    """The results file's lines as dicts, ``chunk_rows`` at a time (a torn last line is skipped).

    Raises:
        ConfigError: the file cannot be read, or a complete line is not a JSON object.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after the generator is exhausted
    except OSError as exc:
        raise ConfigError(f"cannot read {os.fspath(path)}: {exc.strerror}") from None
    with fh:
        chunk: list[dict[str, Any]] = []
        for line_no, line in enumerate(fh, 1):
            if not line.endswith(b"\n") or not line.strip():
                continue  # a torn tail (the run was killed mid-write) or a blank line
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ConfigError(f"{os.fspath(path)}:{line_no}: not valid JSON") from None
            if not isinstance(record, dict) or "row" not in record:
                raise ConfigError(f"{os.fspath(path)}:{line_no}: not a kaleyra_async result line")
            chunk.append(record)
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def run_started_s(results_path: str | os.PathLike[str]) -> float | None:
    """When the last run (first or resumed) over these results started, from the journal.

    Its rows were accepted no earlier than that, so counting a row's age from it never expires
    a row too soon. None without a journal.
    """
    started: float | None = None
    try:
        with open(journal_path_for(results_path), "rb") as fh:
            for line in fh:
                if b'"started"' not in line and b'"resumed"' not in line:
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                stamp = record.get("started") or record.get("resumed")
                if isinstance(stamp, str):
                    try:
                        started = datetime.fromisoformat(stamp).timestamp()
                    except ValueError:
                        continue
    except OSError:
        return None
    return started


def write_report(
    results_path: str | os.PathLike[str],
    reader: ReceiptReader,
    out: IO[bytes],
    *,
    now_s: float,
    expire_after_s: float,
    chunk_rows: int = CHUNK_ROWS,
) -> DeliverySummary:
    """Write the delivery report of ``results_path`` to ``out``; return its counts."""
    summary = DeliverySummary()
    accepted_s = run_started_s(results_path)
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    for chunk in read_result_chunks(results_path, chunk_rows):
        ids = [r["message_id"] for r in chunk if r.get("message_id")]
        refs = [r["ref"] for r in chunk if r.get("status") == "unknown" and r.get("ref")]
        by_id = reader.by_message_id(ids)
        by_ref = reader.by_ref(refs) if refs else {}
        lines = []
        for row in chunk:
            found = by_id.get(row.get("message_id") or "")
            matched = None
            if refs and row.get("status") == "unknown" and row.get("ref"):
                key = (str(row["ref"]), recipient_digits(str(row.get("to") or "")))
                receipts = by_ref.get(key)
                matched = verdict_of(receipts) if receipts else None
            line = deliver_row(
                row,
                verdict_of(found) if found else None,
                matched,
                now_s=now_s,
                accepted_s=accepted_s,
                expire_after_s=expire_after_s,
            )
            summary.add(line)
            lines.append(dumps(line, option=newline))
        out.write(b"".join(lines))
    return summary
