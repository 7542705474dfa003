"""One request on its way: journaled before its first write, and known to be out or not.

A :class:`Flight` is what the client reports each attempt of a bulk request to. It journals the
rows before the first attempt is written, and knows at any moment whether the request may have
reached Kaleyra: ``on_wire`` from the moment an attempt is written until it is refused as a
whole, and ``maybe_sent`` for good once any attempt ended without a clear answer. That is what
lets a stop record exactly what is known: a request that never left, or was only ever refused as
a whole (429, 503, connection refused), is released for ``--resume`` to send; one that may have
reached Kaleyra is recorded ``unknown``; one handed to another process (a queued campaign's
batch, sent by a worker) is neither: its rows stay in flight in the journal, and ``--resume``
reads what became of them where that process reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import anyio

from ._batching import Batch
from ._exceptions import KaleyraError
from ._models import RowResult
from ._outcomes import row_result

__all__ = ["Flight", "Journal", "StopBeforeSending"]


class Journal(Protocol):
    """Where rows are marked in flight before their request leaves (``ResultsWriter``)."""

    async def inflight(self, rows: Sequence[int], ref: str | None = None) -> None:
        """Mark rows in flight (with their request's ``ref``); return once the mark reached
        the operating system."""

    def release(self, rows: Sequence[int]) -> None:
        """Mark rows as certainly not accepted, so that ``--resume`` sends them."""


class StopBeforeSending(Exception):
    """Raised from :meth:`Flight.sending` / :meth:`Flight.writing` to abandon a request that
    has not gone out."""


class Flight:
    """The attempts of one request (an :class:`~._attempts.Attempts`)."""

    __slots__ = (
        "attempts",
        "batch",
        "handed_off",
        "journal",
        "journaled",
        "maybe_sent",
        "on_wire",
        "scope",
        "stop",
    )

    def __init__(self, batch: Batch, *, journal: Journal, stop: anyio.Event) -> None:
        self.batch = batch
        self.journal = journal
        self.stop = stop
        #: Cancelled on stop while the request is not on the wire.
        self.scope = anyio.CancelScope()
        self.journaled = False
        self.on_wire = False
        self.maybe_sent = False
        #: Attempts written so far, as the client numbers them.
        self.attempts = 0
        #: Another process settles the request (a queue's worker): a stop leaves it in flight.
        self.handed_off = False

    async def sending(self) -> None:
        if self.stop.is_set():
            raise StopBeforeSending
        if not self.journaled:
            # Set first: the mark is queued before the await, so a cancellation while it is
            # written still has it released.
            self.journaled = True
            await self.journal.inflight([r.row for r in self.batch.rows], self.batch.message.ref)

    def writing(self, attempt: int) -> None:
        # Nothing awaits between this and the write, so a stop seen here is a clean stop.
        if self.stop.is_set():
            raise StopBeforeSending
        self.on_wire = True
        self.attempts = attempt

    def failed(self, error: KaleyraError) -> None:
        if error.fate_unknown:
            self.maybe_sent = True
        if error.safe_to_retry:
            self.on_wire = False
            if self.stop.is_set():
                self.scope.cancel()  # don't wait out a backoff for a request we won't send

    def abandoned(self) -> list[RowResult]:
        """The request will not complete here: its rows ``unknown`` if it may be out (returned
        to be recorded), else released for ``--resume`` (nothing to record); left in flight if
        handed off (``--resume`` asks where it went)."""
        if self.handed_off:
            return []
        if self.on_wire or self.maybe_sent:
            return [
                row_result(
                    r,
                    "unknown",
                    error_code="interrupted",
                    error="run stopped while the request was in flight; not resent",
                    attempts=self.attempts,
                    ref=self.batch.ref_of(r),
                )
                for r in self.batch.rows
            ]
        self.release()
        return []

    def release(self) -> None:
        """Journal that the rows were certainly not accepted: --resume sends them."""
        if self.journaled:
            self.journal.release([r.row for r in self.batch.rows])
