"""Grouping rows with identical payloads into multi-recipient requests, and the OTP guard (pure).

A request is a :class:`Batch`: one :class:`~kaleyra_async._models.Message` and up to
``batch_size`` rows. Two rows join the same batch only when their messages compare equal, so
everything that goes on the wire except ``to`` is the same for every recipient of a request.

The OTP guard lives in :class:`Batch` itself: constructing a batch of an OTP message with more
than one row raises, so no code path, setting or future change can put two recipients in an
OTP request without a test failing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Final

from ._exceptions import ValidationError
from ._limits import MAX_RECIPIENTS
from ._models import Encoding, Message

__all__ = ["Batch", "Batcher", "PreparedRow", "RepeatFilter"]

#: Open batches (distinct messages) held at once before the oldest is closed early: personalised
#: rows each open one, and a bound keeps validation about as fast as sending.
DEFAULT_MAX_OPEN: Final = 256


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedRow:
    """An input row that passed validation: ready to be sent."""

    row: int
    #: E.164 number with "+".
    to: str
    message: Message
    segments: int
    encoding: Encoding
    #: The characters of the body that forced UCS-2 (empty for GSM-7).
    unicode_chars: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """One request's worth of rows that share a message."""

    message: Message
    rows: tuple[PreparedRow, ...]

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError("a batch needs at least one row")
        if self.message.is_otp and len(self.rows) != 1:
            raise ValidationError(
                "to", "otp_single_recipient", "an OTP request must have exactly one recipient"
            )
        if len(self.rows) > MAX_RECIPIENTS:
            raise ValidationError(
                "to", "max_recipients", f"at most {MAX_RECIPIENTS} recipients per request"
            )

    @property
    def recipients(self) -> list[str]:
        return [r.to for r in self.rows]


@dataclasses.dataclass(slots=True)
class _Open:
    rows: list[PreparedRow]
    numbers: set[str]
    deadline: float


class Batcher:
    """Collects rows into batches; flushes a batch when full or when its linger expires.

    At most ``max_open`` batches are open at once: a row that opens one more closes the oldest
    open batch early (a smaller request, nothing else changes).

    Time is passed in (``now``), so the batcher is tested without a clock. A number is never
    put twice into one request: a repeat starts a new batch, because Kaleyra's handling of a
    duplicate recipient within one request is not documented (it might merge them, and then a
    row would have no message id).
    """

    def __init__(
        self,
        *,
        batch_size: int = MAX_RECIPIENTS,
        max_wait_s: float = 0.05,
        max_open: int = DEFAULT_MAX_OPEN,
    ) -> None:
        if not 1 <= batch_size <= MAX_RECIPIENTS:
            raise ValueError(f"batch_size must be 1..{MAX_RECIPIENTS}")
        if max_open < 1:
            raise ValueError("max_open must be >= 1")
        self._batch_size = batch_size
        self._max_wait_s = max_wait_s
        self._max_open = max_open
        # Insertion order is deadline order: a key re-inserted after a flush goes to the end.
        self._open: dict[Message, _Open] = {}

    def __len__(self) -> int:
        """Rows waiting in open batches."""
        return sum(len(b.rows) for b in self._open.values())

    def add(self, row: PreparedRow, now: float) -> list[Batch]:
        """Add a row; return the batches that are now ready to send (possibly none)."""
        message = row.message
        if message.is_otp:
            return [Batch(message, (row,))]
        ready: list[Batch] = []
        current = self._open.get(message)
        if current is not None and row.to in current.numbers:
            ready.append(self._close(message))
            current = None
        if current is None:
            current = self._open[message] = _Open([], set(), now + self._max_wait_s)
        current.rows.append(row)
        current.numbers.add(row.to)
        if len(current.rows) >= self._batch_size:
            ready.append(self._close(message))
        elif len(self._open) > self._max_open:
            ready.append(self._close(next(iter(self._open))))  # the oldest: see max_open
        return ready

    def due(self, now: float) -> list[Batch]:
        """Close and return the batches whose linger has expired at ``now``."""
        expired = [key for key, _ in self._until(now)]
        return [self._close(key) for key in expired]

    def next_deadline(self) -> float | None:
        """When the oldest open batch must be flushed, or None if nothing is open."""
        for entry in self._open.values():
            return entry.deadline
        return None

    def drain(self) -> list[Batch]:
        """Close and return every open batch."""
        return [self._close(key) for key in list(self._open)]

    def _until(self, now: float) -> Iterator[tuple[Message, _Open]]:
        for key, entry in self._open.items():
            if entry.deadline > now:
                return
            yield key, entry

    def _close(self, key: Message) -> Batch:
        entry = self._open.pop(key)
        return Batch(key, tuple(entry.rows))


#: Distinct messages whose digest is kept for reuse (a constant body is digested once a run).
_MAX_MESSAGE_DIGESTS: Final = 4096


class RepeatFilter:
    """Tells whether a (number, message) pair came before, in about 100 bytes per distinct pair.

    What it keeps is a 128-bit BLAKE2b digest of the pair, not the message: keeping each
    :class:`Message` held every personalised body for the whole run (hundreds of bytes to
    kilobytes a row). Two different pairs share a digest with a probability of about
    n² / 2¹²⁹, nil for any file that fits on a disk.
    """

    __slots__ = ("_digests", "_seen")

    def __init__(self) -> None:
        self._seen: set[bytes] = set()
        self._digests: dict[Message, bytes] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, to: str, message: Message) -> bool:
        """Remember the pair; False when it was seen before."""
        digest = self._digests.get(message)
        if digest is None:
            if len(self._digests) >= _MAX_MESSAGE_DIGESTS:
                self._digests.clear()
            # A dataclass's repr names every field and quotes every string: equal reprs, equal
            # messages, and the other way round.
            text = repr(message).encode("utf-8", "surrogatepass")
            digest = self._digests[message] = hashlib.blake2b(text, digest_size=32).digest()
        key = hashlib.blake2b(to.encode(), digest_size=16, key=digest).digest()
        if key in self._seen:
            return False
        self._seen.add(key)
        return True
