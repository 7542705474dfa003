"""Grouping rows into requests, and the OTP guard (pure).

A request is a :class:`Batch`. On ``/sms`` it is one :class:`~kaleyra_async._models.Message`
and up to ``batch_size`` rows whose messages compare equal, so everything on the wire except
``to`` is the same for every recipient. On ``/sms/json`` each row is a node with its own
message; the rows share the request's top-level fields (``type``, ``time``; see
``_protocol.top_level``), and there are up to ``json_batch_size`` of them.

Rows are grouped by message first; a group that closes with a single row (its payload is its
own: a personalised row) joins the ``/sms/json`` group of its top-level fields, when it may
(``json_batch_size`` > 0, not OTP, no field without a node). So identical payloads keep going
100 recipients a request on ``/sms``, and personalised ones share requests too.

The OTP guard lives in :class:`Batch` itself: constructing an ``/sms`` batch of an OTP message
with more than one row, or an ``/sms/json`` batch holding an OTP row, raises, so no code path,
setting or future change can put two recipients in an OTP request without a test failing.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import operator
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Final, Generic, Literal, TypeVar

from ._exceptions import ValidationError
from ._limits import MAX_JSON_NODES, MAX_RECIPIENTS
from ._models import Encoding, Message, with_body
from ._protocol import TOP_LEVEL_FIELDS, fields_only_in_json, fields_without_node, top_level

__all__ = ["Batch", "BatchEndpoint", "Batcher", "PreparedRow", "RepeatFilter"]

#: Open groups (distinct messages) held at once before the oldest is closed early: personalised
#: rows each open one, and a bound keeps validation about as fast as sending.
DEFAULT_MAX_OPEN: Final = 256

#: Bases numbered at once (see ``Batcher.add``); past it the numbering starts over.
_MAX_BASE_NUMBERS: Final = 4096

BatchEndpoint = Literal["sms", "sms/json"]


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedRow:
    """An input row that passed validation: ready to be sent."""

    row: int
    #: E.164 number with "+".
    to: str
    #: The row's message; with ``body`` set, every field of it but the body (shared by the
    #: rows of a personalised campaign, which differ only by their body).
    base: Message
    segments: int
    encoding: Encoding
    #: The characters of the body that forced UCS-2 (empty for GSM-7).
    unicode_chars: tuple[str, ...] = ()
    #: The row's own body, over ``base``'s; None: ``base`` is the whole message.
    body: str | None = None

    @property
    def message(self) -> Message:
        """The row's whole message (built anew for a row with a body of its own)."""
        return self.base if self.body is None else with_body(self.base, self.body)


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """One request's worth of rows.

    ``message`` is every row's message on ``/sms``; on ``/sms/json`` it is their shared
    top-level part, and each row's own message is its node.
    """

    message: Message
    rows: tuple[PreparedRow, ...]
    endpoint: BatchEndpoint = "sms"

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError("a batch needs at least one row")
        if self.endpoint == "sms/json":
            if self.message.is_otp or any(r.base.is_otp for r in self.rows):
                raise ValidationError(
                    "type", "otp_not_in_json", "an OTP row never goes in an /sms/json request"
                )
            if len(self.rows) > MAX_JSON_NODES:
                raise ValidationError(
                    "sms", "max_nodes", f"at most {MAX_JSON_NODES} nodes per request"
                )
            return
        if only_json := fields_only_in_json(self.message):
            raise ValidationError(
                only_json[0], "json_only", "an /sms request has no place for it: /sms/json only"
            )
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

    def ref_of(self, row: PreparedRow) -> str | None:
        """The ``ref`` a row went out with: the request's on /sms, its node's on /sms/json."""
        return row.base.ref if self.endpoint == "sms/json" else self.message.ref

    @property
    def nodes(self) -> list[tuple[str, Message]]:
        """(number, message) per row: an ``/sms/json`` request's nodes; a row with a body of
        its own gives its ``base`` (see :attr:`bodies`)."""
        return [(r.to, r.base) for r in self.rows]

    @property
    def bodies(self) -> list[str | None] | None:
        """Each node's own body (None: its message's), or None when no row has one."""
        bodies = [r.body for r in self.rows]
        return None if bodies.count(None) == len(bodies) else bodies


K = TypeVar("K", bound=Hashable)


@dataclasses.dataclass(slots=True)
class _Open:
    rows: list[PreparedRow]
    numbers: set[str]
    deadline: float


#: An open group of one row, as (row, deadline): a personalised row's group never holds more,
#: so it opens and closes without an ``_Open``, a list and a set of its own.
_Lone = tuple[PreparedRow, float]


def _rows_of(entry: _Open | _Lone) -> list[PreparedRow]:
    return [entry[0]] if isinstance(entry, tuple) else entry.rows


class _Groups(Generic[K]):
    """Open groups of rows by key: each closes when full, when its linger expires, when a row
    repeats one of its numbers, or (the oldest) when more than ``max_open`` are open."""

    __slots__ = ("_max_open", "_max_wait_s", "_open", "_size")

    def __init__(self, size: int, max_wait_s: float, max_open: int) -> None:
        self._size = size
        self._max_wait_s = max_wait_s
        self._max_open = max_open
        # Insertion order is deadline order: a key re-inserted after a flush goes to the end. An
        # OrderedDict, as the oldest is taken often: a dict's first key is found by skipping
        # the slots of every key deleted since its last resize.
        self._open: collections.OrderedDict[K, _Open | _Lone] = collections.OrderedDict()

    def __len__(self) -> int:
        return sum(len(_rows_of(g)) for g in self._open.values())

    def add(self, key: K, row: PreparedRow, now: float) -> Sequence[tuple[K, list[PreparedRow]]]:
        lone = (row, now + self._max_wait_s)
        current = self._open.setdefault(key, lone)  # one look-up for a new key
        if current is lone:
            if self._size == 1:
                return (self._close(key),)
            if len(self._open) > self._max_open:
                oldest, entry = self._open.popitem(last=False)  # see max_open
                return ((oldest, _rows_of(entry)),)
            return ()
        if isinstance(current, tuple):
            first: PreparedRow = current[0]
            if first.to == row.to:  # a repeated number starts a group of its own
                del self._open[key]
                self._open[key] = lone
                return ((key, [first]),)
            current = self._open[key] = _Open([first, row], {first.to, row.to}, current[1])
        elif row.to in current.numbers:
            closed = self._close(key)
            self._open[key] = lone
            return (closed,)
        else:
            current.rows.append(row)
            current.numbers.add(row.to)
        if len(current.rows) >= self._size:
            return (self._close(key),)
        return ()

    def due(self, now: float) -> list[tuple[K, list[PreparedRow]]]:
        expired = [key for key, _ in self._until(now)]
        return [self._close(key) for key in expired]

    def next_deadline(self) -> float | None:
        for entry in self._open.values():
            return entry[1] if isinstance(entry, tuple) else entry.deadline
        return None

    def drain(self) -> list[tuple[K, list[PreparedRow]]]:
        return [self._close(key) for key in list(self._open)]

    def _until(self, now: float) -> Iterator[tuple[K, _Open | _Lone]]:
        for key, entry in self._open.items():
            deadline = entry[1] if isinstance(entry, tuple) else entry.deadline
            if deadline > now:
                return
            yield key, entry

    def _close(self, key: K) -> tuple[K, list[PreparedRow]]:
        return key, _rows_of(self._open.pop(key))


class Batcher:
    """Collects rows into batches; flushes a batch when full or when its linger expires.

    At most ``max_open`` groups are open at each level (same message; same top-level fields):
    a row that opens one more closes the oldest early (a smaller request, nothing else changes).

    Time is passed in (``now``), so the batcher is tested without a clock. A number is never
    put twice into one request: a repeat starts a new batch, because Kaleyra's handling of a
    duplicate recipient within one request is not documented (it might merge them, and then a
    row would have no message id).

    Args:
        batch_size: recipients per ``/sms`` request.
        max_wait_s: how long a partial group waits for company, at each level.
        max_open: open groups per level.
        json_batch_size: nodes per ``/sms/json`` request; 0 or 1 (or a ``batch_size`` of 1)
            sends each personalised row as an ``/sms`` request of its own.
    """

    def __init__(
        self,
        *,
        batch_size: int = MAX_RECIPIENTS,
        max_wait_s: float = 0.05,
        max_open: int = DEFAULT_MAX_OPEN,
        json_batch_size: int = 0,
    ) -> None:
        if not 1 <= batch_size <= MAX_RECIPIENTS:
            raise ValueError(f"batch_size must be 1..{MAX_RECIPIENTS}")
        if not 0 <= json_batch_size <= MAX_JSON_NODES:
            raise ValueError(f"json_batch_size must be 0..{MAX_JSON_NODES}")
        if max_open < 1:
            raise ValueError("max_open must be >= 1")
        self._same: _Groups[Hashable] = _Groups(batch_size, max_wait_s, max_open)
        # batch_size 1 asks for one recipient per request: personalised rows too.
        self._nodes: _Groups[tuple[Any, ...]] | None = (
            _Groups(json_batch_size, max_wait_s, max_open)
            if json_batch_size > 1 and batch_size > 1
            else None
        )
        # What the batcher reads of the last base seen (a campaign's rows share one).
        self._base: Message | None = None
        self._otp = False
        #: The base sets a field that only /sms/json carries (entity_id).
        self._json_only = False
        #: The base's number: equal bases, equal numbers (while kept in ``_numbers``).
        self._number = 0
        self._numbers: dict[Message, int] = {}
        self._next_number = itertools.count()
        #: The base's /sms/json group, None if it may not go there.
        self._json_key: tuple[Any, ...] | None = None

    def __len__(self) -> int:
        """Rows waiting in open batches."""
        return len(self._same) + (len(self._nodes) if self._nodes is not None else 0)

    def add(self, row: PreparedRow, now: float) -> list[Batch]:
        """Add a row; return the batches that are now ready to send (possibly none)."""
        base, body = row.base, row.body
        if base is not self._base:
            self._learn(base)
        if self._otp:
            return [Batch(row.message, (row,))]
        # Equal keys, equal messages; a RowPreparer gives the rows with equal messages equal
        # keys (every body of a row's own goes beside its base). A base's number, not the base,
        # is hashed per row; numbers are never reused, so a forgotten one matches nothing.
        closed = self._same.add(base if body is None else (self._number, body), row, now)
        return self._settle(closed, now) if closed else []

    def _learn(self, base: Message) -> None:
        self._base = base
        self._otp = base.is_otp
        number = self._numbers.get(base)
        if number is None:
            if len(self._numbers) >= _MAX_BASE_NUMBERS:
                self._numbers.clear()
            number = self._numbers[base] = next(self._next_number)
        self._number = number
        self._json_only = bool(fields_only_in_json(base))
        self._json_key = None
        if self._nodes is not None and not fields_without_node(base):
            self._json_key = _top_level_key(base)

    def due(self, now: float) -> list[Batch]:
        """Close and return the batches whose linger has expired at ``now``."""
        ready = self._settle(self._same.due(now), now)
        if self._nodes is not None:
            ready += [self._json(rows) for _, rows in self._nodes.due(now)]
        return ready

    def next_deadline(self) -> float | None:
        """When the oldest open batch must be flushed, or None if nothing is open."""
        same = self._same.next_deadline()
        nodes = self._nodes.next_deadline() if self._nodes is not None else None
        if same is None or nodes is None:
            return nodes if same is None else same
        return min(same, nodes)

    def drain(self) -> list[Batch]:
        """Close and return every open batch."""
        ready = self._settle(self._same.drain(), None)
        if self._nodes is not None:
            ready += [self._json(rows) for _, rows in self._nodes.drain()]
        return ready

    def _settle(
        self, closed: Sequence[tuple[Hashable, list[PreparedRow]]], now: float | None
    ) -> list[Batch]:
        """Closed same-message groups as ``/sms`` batches; a lone row that may go in
        ``/sms/json`` joins its top-level group instead (``now`` None: no linger left)."""
        ready: list[Batch] = []
        nodes = self._nodes
        for _, rows in closed:
            row = rows[0]
            if row.base is not self._base:  # the base decides the endpoint and the group
                self._learn(row.base)
            key = self._json_key
            if nodes is None or key is None or len(rows) != 1:
                if self._json_only:  # equal payloads (or no node groups): /sms/json still
                    ready.append(Batch(top_level(row.base), tuple(rows), "sms/json"))
                else:
                    ready.append(Batch(row.message, tuple(rows)))
                continue
            for _, group in nodes.add(key, row, -1.0 if now is None else now):
                ready.append(self._json(group))
        return ready

    @staticmethod
    def _json(rows: list[PreparedRow]) -> Batch:
        # Alone after all: a plain /sms request says the same, unless /sms has no place for it.
        if len(rows) == 1 and not fields_only_in_json(rows[0].base):
            return Batch(rows[0].message, (rows[0],))
        return Batch(top_level(rows[0].base), tuple(rows), "sms/json")


#: A message's top-level fields as a tuple: equal tuples, equal ``top_level`` messages.
_top_level_key: Final[Callable[[Message], tuple[Any, ...]]] = operator.attrgetter(*TOP_LEVEL_FIELDS)


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
