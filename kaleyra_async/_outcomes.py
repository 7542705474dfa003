"""The result lines of a request's rows, from its outcome (pure)."""

from __future__ import annotations

from ._batching import Batch, PreparedRow
from ._exceptions import KaleyraError
from ._models import InputRow, RowResult, RowStatus, SendResult

__all__ = ["failure_results", "row_result", "success_results", "unknown_from_earlier_run"]


def row_result(
    row: PreparedRow,
    status: RowStatus,
    *,
    message_id: str | None = None,
    request_id: str | None = None,
    error_code: str | None = None,
    error: str | None = None,
    attempts: int = 0,
    ref: str | None = None,
) -> RowResult:
    """The result line of a row that passed validation."""
    return RowResult(
        row=row.row,
        to=row.to,
        status=status,
        message_id=message_id,
        request_id=request_id,
        error_code=error_code,
        error=error,
        attempts=attempts,
        segments=row.segments,
        encoding=row.encoding,
        ref=ref,
    )


def success_results(batch: Batch, result: SendResult) -> list[RowResult]:
    """An accepted request's rows: ``sent`` with their message id, ``unknown`` without one."""
    # Kaleyra echoes each recipient (without "+"); the receipts put the "+" back.
    ids = result.message_ids()
    out = []
    for row in batch.rows:
        message_id = ids.get(row.to)
        if message_id is None:
            out.append(
                row_result(
                    row,
                    "unknown",
                    request_id=result.request_id,
                    error_code="no_message_id",
                    error="request accepted but no message id came back for this number",
                    attempts=result.attempts,
                    ref=batch.message.ref,
                )
            )
        else:
            out.append(
                row_result(
                    row,
                    "sent",
                    message_id=message_id,
                    request_id=result.request_id,
                    attempts=result.attempts,
                    ref=batch.message.ref,
                )
            )
    return out


def failure_results(batch: Batch, exc: KaleyraError, maybe_sent: bool) -> list[RowResult]:
    """A failed request's rows: ``unknown`` if any attempt may have been accepted, else ``failed``.

    An earlier attempt that may have been accepted (retry_ambiguous retried it) outweighs a
    later refusal: the SMS may be out, so the row is unknown, never failed.
    """
    if exc.fate_unknown or maybe_sent:
        status: RowStatus = "unknown"
        error = f"{exc} (may have been accepted; not resent: Kaleyra has no idempotency key)"
    else:
        status = "failed"
        error = str(exc)
    return [
        row_result(
            r,
            status,
            error_code=exc.code,
            error=error,
            attempts=exc.attempts,
            ref=batch.message.ref,
        )
        for r in batch.rows
    ]


def unknown_from_earlier_run(
    row: InputRow, prepared: PreparedRow | RowResult, ref: str | None = None
) -> RowResult:
    """A row an earlier run had in flight when it stopped: unknown, never resent silently.

    ``ref`` is the request's reference from the journal, so a receipt can still settle it.
    """
    code = "inflight_at_crash"
    error = "in flight when an earlier run stopped; not resent (retry_ambiguous resends)"
    if isinstance(prepared, PreparedRow):
        return row_result(prepared, "unknown", error_code=code, error=error, ref=ref)
    return RowResult(
        row=row.row, to=prepared.to, status="unknown", error_code=code, error=error, ref=ref
    )
