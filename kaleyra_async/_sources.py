"""Streaming input: CSV from a file or stdin, read in a worker thread, handed over in chunks.

The reader thread calls ``os.read`` and parses whatever it got before it reads again, so:

* a regular file arrives in chunks of about a thousand rows (one thread hand-off per chunk);
* a slow pipe delivers each row as soon as its line is complete: before the thread blocks on
  ``os.read`` it hands over every row it already has, so no row waits for the next one;
* the hand-off waits for room in a bounded stream, so a fast file cannot outrun the senders
  and memory stays flat however long the input is.

Lines are cut by :class:`~kaleyra_async._lines.LineSplitter` and what csv.reader makes of them
is judged by :mod:`kaleyra_async._csv_rows`: a bad row is an error of that row, never of the run.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import os
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import IO, Final, Union

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import ObjectSendStream

from ._csv_rows import broken_record, csv_reason, header_row, odd_row
from ._exceptions import ConfigError
from ._lines import LineSplitter
from ._models import InputRow

__all__ = ["CsvSource", "RecordSource", "RowSource"]

#: Anything the pipeline can read rows from.
RowSource = Union["CsvSource", "RecordSource"]

_READ_SIZE: Final = 1 << 16
_MAX_CHUNK_ROWS: Final = 2048


class _Source:
    """What the pipeline needs from an input: a header once known, and rows pumped in chunks."""

    header: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.header = ()
        self._on_header: list[Callable[[tuple[str, ...]], None]] = []

    def on_header(self, callback: Callable[[tuple[str, ...]], None]) -> None:
        """Call ``callback(header)`` in the event loop once the header is known."""
        self._on_header.append(callback)

    def _set_header(self, header: tuple[str, ...]) -> None:
        self.header = header
        for callback in self._on_header:
            callback(header)

    async def pump(self, send: ObjectSendStream[list[InputRow]]) -> None:
        raise NotImplementedError


class RecordSource(_Source):
    """Rows from Python: an iterable or async iterable of mappings (column name -> value).

    The columns are ``columns`` if given, else the first record's keys. A record missing one of
    them, or with a value that is not a string, int or float, becomes an invalid row, like a bad
    CSV row; values are converted with ``str``. Use it to send from a database cursor or a
    queue without writing a CSV first.
    """

    def __init__(
        self,
        records: Iterable[Mapping[str, object]] | AsyncIterable[Mapping[str, object]],
        *,
        columns: Sequence[str] | None = None,
        chunk_rows: int = 512,
    ) -> None:
        super().__init__()
        self._records = records
        self._columns = tuple(columns) if columns is not None else None
        self._chunk_rows = chunk_rows

    async def pump(self, send: ObjectSendStream[list[InputRow]]) -> None:
        chunk: list[InputRow] = []
        row = 0
        async for record in _aiter(self._records):
            row += 1
            if not self.header:
                self._set_header(self._columns or tuple(map(str, record)))
            chunk.append(_record_row(row, record, self.header))
            if len(chunk) >= self._chunk_rows:
                await send.send(chunk)
                chunk = []
        if chunk:
            await send.send(chunk)
        if not self.header:
            raise ConfigError("no records: nothing to send")


async def _aiter(
    records: Iterable[Mapping[str, object]] | AsyncIterable[Mapping[str, object]],
) -> AsyncIterator[Mapping[str, object]]:
    if isinstance(records, AsyncIterable):
        async for record in records:
            yield record
        return
    # A plain iterable may block (a database cursor fetching): pull it in a worker thread,
    # a block at a time, so the event loop never waits on it.
    iterator = iter(records)
    while block := await anyio.to_thread.run_sync(_take, iterator, 256):
        for record in block:
            yield record


def _take(iterator: Iterator[Mapping[str, object]], n: int) -> list[Mapping[str, object]]:
    return list(itertools.islice(iterator, n))


def _record_row(row: int, record: Mapping[str, object], header: tuple[str, ...]) -> InputRow:
    fields: dict[str, str] = {}
    for name in header:
        value = record.get(name)
        if value is None:
            return InputRow(row, {}, f"record has no {name!r}")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            return InputRow(row, {}, f"{name}: {type(value).__name__} is not text or a number")
        fields[name] = str(value)
    return InputRow(row, fields)


class CsvSource(_Source):
    """Rows of a CSV file (or ``-`` for stdin) with a required header row.

    :meth:`pump` sends lists of :class:`InputRow` to a stream; :attr:`header` is set once the
    header row has been read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        stdin: IO[bytes] | None = None,
        delimiter: str = ",",
    ) -> None:
        super().__init__()
        if len(delimiter) != 1:
            raise ConfigError(f"the CSV delimiter must be one character, not {delimiter!r}")
        self.path = os.fspath(path)
        self.delimiter = delimiter
        self._stdin = stdin

    @property
    def is_stdin(self) -> bool:
        return self.path == "-"

    async def pump(self, send: ObjectSendStream[list[InputRow]]) -> None:
        """Read the whole input and send it to ``send`` in chunks of rows, in input order.

        Returns when the input is exhausted; closes nothing. Cancelling it stops the reading
        (a thread blocked on a pipe is abandoned, not waited for).

        Raises:
            ConfigError: the file cannot be opened, or its header row is missing or unusable.
        """
        fd, owned = self._open()
        await anyio.to_thread.run_sync(
            _read_rows,
            fd,
            owned,
            send,
            self._set_header,
            self.delimiter,
            # A read blocked on a pipe or terminal must not hold up cancellation. The thread
            # closes the descriptor itself, so an abandoned thread never reads a reused one.
            abandon_on_cancel=True,
        )

    def _open(self) -> tuple[int, bool]:
        if self.is_stdin:
            stream = self._stdin
            if stream is None:
                import sys

                stream = sys.stdin.buffer
            return stream.fileno(), False
        try:
            return os.open(self.path, os.O_RDONLY), True
        except OSError as exc:
            raise ConfigError(f"cannot open input {self.path!r}: {exc.strerror}") from None


def _read_rows(
    fd: int,
    owned: bool,
    send: ObjectSendStream[list[InputRow]],
    set_header: Callable[[tuple[str, ...]], None],
    delimiter: str,
) -> None:
    """Thread body: parse the CSV on ``fd`` and hand chunks of rows to the event loop."""
    try:
        _parse(fd, send, set_header, delimiter)
    finally:
        if owned:
            os.close(fd)


def _parse(
    fd: int,
    send: ObjectSendStream[list[InputRow]],
    set_header: Callable[[tuple[str, ...]], None],
    delimiter: str,
) -> None:
    lines = _LineFeed(fd)
    chunk: list[InputRow] = []

    def hand_over() -> None:
        nonlocal chunk
        if chunk:
            ready, chunk = chunk, []
            anyio.from_thread.run(send.send, ready)

    lines.before_block = hand_over
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    header = _read_header(reader, lines)
    anyio.from_thread.run_sync(set_header, header)
    width = len(header)
    row_number = 0
    new_record = lines.new_record
    while True:
        new_record()
        bad_before = lines.bad_lines
        start_line = lines.line + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row_number += 1
            reason, keep = broken_record(lines.record_text(), start_line, exc, delimiter)
            lines.replay_after(keep)
            chunk.append(InputRow(row_number, {}, reason))
            continue
        if not values or (len(values) == 1 and not values[0].strip() and width > 1):
            continue  # a blank line is not a data row
        row_number += 1
        if lines.bad_lines == bad_before and len(values) == width:
            chunk.append(InputRow(row_number, dict(zip(header, values, strict=True))))
        else:
            bad_bytes = lines.bad_lines != bad_before
            chunk.append(odd_row(row_number, start_line, header, values, bad_bytes=bad_bytes))
        if len(chunk) >= _MAX_CHUNK_ROWS:
            hand_over()
    hand_over()


def _read_header(reader: Iterator[list[str]], lines: _LineFeed) -> tuple[str, ...]:
    try:
        values = next(reader)
        while not values:
            values = next(reader)
    except StopIteration:
        raise ConfigError("input is empty: a header row is required") from None
    except csv.Error as exc:
        raise ConfigError(f"header row is not valid CSV: {csv_reason(exc)}") from None
    return header_row(values, bad_bytes=bool(lines.bad_lines))


class _LineFeed:
    """An iterator of decoded lines over a file descriptor, for :func:`csv.reader`.

    Lines that are not valid UTF-8 are decoded with ``surrogateescape`` and counted in
    ``bad_lines``, so the caller can tell exactly which rows carried bad bytes. The raw lines of
    the record being read are kept from one :attr:`new_record` call to the next, so that a
    broken record can give back the lines it swallowed (:meth:`replay_after`).
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._splitter = LineSplitter()
        #: Lines read and not yet taken by csv, the next one last.
        self._pending: list[bytes] = []
        self._eof = False
        self._record: list[bytes] = []
        # Bound list methods: this runs once per line and per row of a million-row file.
        self._keep_line = self._record.append
        #: Call before reading a record: forgets the raw lines of the one before.
        self.new_record: Callable[[], None] = self._record.clear
        self._decode = codecs.getdecoder("utf-8")
        self.line = 0
        self.bad_lines = 0
        #: Called before a read that may block: the rows parsed so far are handed over first.
        self.before_block: Callable[[], None] = lambda: None

    def record_text(self) -> list[str]:
        """The lines of the current record, decoded as csv.reader got them."""
        return [raw.decode("utf-8", "surrogateescape") for raw in self._record]

    def replay_after(self, keep: int) -> None:
        """Give back the current record's lines after its first ``keep``."""
        rest = self._record[keep:]
        self._record.clear()
        self._pending.extend(reversed(rest))
        self.line -= len(rest)

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        while not self._pending:
            if self._eof:
                raise StopIteration
            self._fill()
        raw = self._pending.pop()
        self._keep_line(raw)
        self.line += 1
        try:
            text: str = self._decode(raw)[0]
        except UnicodeDecodeError:
            self.bad_lines += 1
            text = raw.decode("utf-8", "surrogateescape")
        return text

    def _fill(self) -> None:
        self.before_block()
        data = os.read(self._fd, _READ_SIZE)
        if data:
            lines = self._splitter.feed(data)
        else:
            self._eof = True
            lines = self._splitter.finish()
        lines.reverse()
        self._pending = lines
