"""Polling the Status API for accepted rows without a final receipt; answers stored as receipts.

The results file is read a chunk at a time; each chunk's ``sent`` rows that already have a
final receipt are skipped, the rest are looked up through the client (which splits the ids by
:data:`~._limits.MAX_STATUS_IDS` and waits for the pod's rate limiter), and the answers are
stored with ``source = "poll"``. File and database reads run in a worker thread.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from ._delivery import FINAL_STATES, ReceiptRecord, verdict_of
from ._models import MessageStatus
from ._receipt_store import ReceiptReader, ReceiptStore
from ._report import read_result_chunks

__all__ = ["PollSummary", "poll_statuses"]

GetStatus = Callable[[Sequence[str]], Awaitable[list[MessageStatus]]]


@dataclasses.dataclass(slots=True)
class PollSummary:
    """What a poll did."""

    #: ``sent`` rows read.
    sent: int = 0
    #: Of those, already final before the poll.
    already_final: int = 0
    #: Ids asked about.
    asked: int = 0
    #: Answers stored.
    stored: int = 0


async def poll_statuses(
    results_path: str | os.PathLike[str],
    store: ReceiptStore,
    db_path: str | os.PathLike[str],
    get_status: GetStatus,
    *,
    clock: Callable[[], float],
) -> PollSummary:
    """Ask about every ``sent`` row of ``results_path`` that has no final receipt in the store."""
    summary = PollSummary()
    chunks = iter(read_result_chunks(results_path))
    reader = await anyio.to_thread.run_sync(ReceiptReader, db_path)
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, None)
            if chunk is None:
                break
            open_rows = await anyio.to_thread.run_sync(_without_final, chunk, reader, summary)
            if not open_rows:
                continue
            summary.asked += len(open_rows)
            answers = await get_status(list(open_rows))
            now = clock()
            records = [
                ReceiptRecord(
                    message_id=answer.message_id,
                    status=answer.status,
                    status_trace=answer.detail or "",
                    recipient=str(open_rows.get(answer.message_id, {}).get("to") or ""),
                    ref=str(open_rows.get(answer.message_id, {}).get("ref") or ""),
                    source="poll",
                    received_s=now,
                )
                for answer in answers
            ]
            if records:
                await store.add(records)
                summary.stored += len(records)
    finally:
        reader.close()
    return summary


def _without_final(
    chunk: list[dict[str, Any]], reader: ReceiptReader, summary: PollSummary
) -> dict[str, dict[str, Any]]:
    """The chunk's ``sent`` rows with no final receipt yet, by message id."""
    sent = {
        str(row["message_id"]): row
        for row in chunk
        if row.get("status") == "sent" and row.get("message_id")
    }
    summary.sent += len(sent)
    for message_id, receipts in reader.by_message_id(sent).items():
        if verdict_of(receipts).state in FINAL_STATES:
            del sent[message_id]
            summary.already_final += 1
    return sent
