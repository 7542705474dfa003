"""A request's flight: what a stop records for it (released, unknown, or left in flight)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from kaleyra_async._batching import Batch, PreparedRow
from kaleyra_async._flight import Flight
from kaleyra_async._models import Message


class _Journal:
    def __init__(self) -> None:
        self.inflight_rows: list[int] = []
        self.released: list[int] = []

    async def inflight(self, rows: Sequence[int], ref: str | None = None) -> None:
        self.inflight_rows += rows

    def release(self, rows: Sequence[int]) -> None:
        self.released += rows


def _flight() -> tuple[Flight, _Journal]:
    message = Message(body="hi", sender="KLRHXA")
    rows = tuple(
        PreparedRow(row=n, to=f"+91987654321{n}", base=message, segments=1, encoding="GSM-7")
        for n in (1, 2)
    )
    journal = _Journal()
    return Flight(Batch(message, rows), journal=journal, stop=anyio.Event()), journal


async def test_a_stop_releases_a_request_that_never_left() -> None:
    flight, journal = _flight()
    await flight.sending()
    assert flight.abandoned() == []
    assert journal.released == [1, 2]


async def test_a_stop_records_a_request_on_the_wire_unknown() -> None:
    flight, journal = _flight()
    await flight.sending()
    flight.writing(1)
    abandoned = flight.abandoned()
    assert [(r.row, r.status, r.error_code) for r in abandoned] == [
        (1, "unknown", "interrupted"),
        (2, "unknown", "interrupted"),
    ]
    assert journal.released == []


async def test_a_stop_leaves_a_handed_off_request_in_flight() -> None:
    """A queued batch is settled by a worker: a stop neither records nor releases its rows,
    so they stay in flight in the journal for --resume to look up."""
    flight, journal = _flight()
    await flight.sending()
    flight.writing(1)
    flight.handed_off = True
    assert flight.abandoned() == []
    assert journal.inflight_rows == [1, 2] and journal.released == []
