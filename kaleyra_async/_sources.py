"""Streaming input: CSV from a file or stdin, read in a worker thread, handed over in chunks.

The reader thread calls ``os.read`` and parses whatever it got before it reads again, so:

* a regular file arrives in chunks of about a thousand rows (one thread hand-off per chunk);
* a slow pipe delivers each row as soon as its line is complete: before the thread blocks on
  ``os.read`` it hands over every row it already has, so no row waits for the next one;
* the hand-off waits for room in a bounded stream, so a fast file cannot outrun the senders
  and memory stays flat however long the input is.

Undecodable bytes, a wrong number of fields and malformed quoting make that one row an error
(``InputRow.error``), never the whole run. A quote that is never closed would otherwise turn the
rest of the file (up to csv's field size limit) into one broken row: when a quoted field is still
open where csv gives up, the lines after the line it opened on are read again as rows of their
own, so every line still gets its result. Any other broken record (text after a closing quote)
is one invalid row, however many lines its quoted field spans: those lines were text, not rows.

Invalid UTF-8 is a per-row error, not a file-level one: one mis-encoded name in an export must
not stop every other row, and the row itself is not sent because nobody can tell what its text
was meant to say. Only a header with bad bytes stops the run (the columns are unknown).

Lines may end in LF or CRLF, mixed freely. In a file of old Mac exports' lone-CR endings (its
first line ends in a lone CR, or only its header line ends in LF) CR, CRLF and LF all end lines.
Elsewhere a lone CR is text, which csv refuses outside quotes.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import os
import re
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

from ._exceptions import ConfigError
from ._models import InputRow

__all__ = ["CsvSource", "RecordSource", "RowSource"]

#: Anything the pipeline can read rows from.
RowSource = Union["CsvSource", "RecordSource"]

_READ_SIZE: Final = 1 << 16
_MAX_CHUNK_ROWS: Final = 2048
_SURROGATE: Final = re.compile("[\udc80-\udcff]")
#: _LineFeed's mode for files with lone-CR line endings: any of CR, CRLF and LF ends a line.
_ANY_END: Final = b"\r"
_ANY_END_SPLIT: Final = re.compile(rb"(?<=\n)|(?<=\r)(?!\n)")


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
    field_end = re.compile(f"[{re.escape(delimiter)}\r\n]")
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
            chunk.append(
                InputRow(row_number, {}, _broken_record(lines, start_line, exc, field_end))
            )
            continue
        if not values or (len(values) == 1 and not values[0].strip() and width > 1):
            continue  # a blank line is not a data row
        row_number += 1
        if lines.bad_lines != bad_before and any(_SURROGATE.search(v) for v in values):
            chunk.append(_bad_bytes_row(row_number, start_line, header, values))
        elif len(values) != width:
            fields = "field" if len(values) == 1 else "fields"
            reason = f"row has {len(values)} {fields}, the header has {width}"
            chunk.append(InputRow(row_number, {}, f"line {start_line}: {reason}"))
        else:
            chunk.append(InputRow(row_number, dict(zip(header, values, strict=True))))
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
        raise ConfigError(f"header row is not valid CSV: {_csv_reason(exc)}") from None
    if lines.bad_lines:
        raise ConfigError(
            "header row contains bytes that are not valid UTF-8 "
            "(save the file as UTF-8; Excel: 'CSV UTF-8')"
        )
    header = tuple(v.strip() for v in values)
    empty = [str(i) for i, name in enumerate(header, 1) if not name]
    if empty:
        raise ConfigError(f"header row has an empty column name (column {', '.join(empty)})")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ConfigError(f"header row repeats column(s): {', '.join(duplicates)}")
    return header


# csv's own words are written for programmers ("do you need to open the file in
# universal-newline mode?"); these say what is wrong with the file.
_CSV_REASONS: Final = (
    ("unexpected end of data", "the file ends inside a quoted field (a quote is never closed)"),
    ("field larger than field limit", "a field is longer than {limit} characters"),
    (
        "new-line character seen in unquoted field",
        "a line break inside an unquoted field (quote the field)",
    ),
)


def _csv_reason(exc: csv.Error) -> str:
    text = str(exc)
    for start, reason in _CSV_REASONS:
        if text.startswith(start):
            return reason.format(limit=csv.field_size_limit())
    return text


def _bad_bytes_row(row: int, line: int, header: tuple[str, ...], values: list[str]) -> InputRow:
    if len(values) != len(header):
        return InputRow(row, {}, f"line {line}: bytes that are not valid UTF-8")
    # The columns that decoded cleanly are kept, so the result still names the row's number
    # when only, say, the name column is mis-encoded.
    good: dict[str, str] = {}
    bad: list[str] = []
    for name, value in zip(header, values, strict=True):
        if _SURROGATE.search(value):
            bad.append(name)
        else:
            good[name] = value
    return InputRow(
        row, good, f"line {line}: column {', '.join(bad)}: bytes that are not valid UTF-8"
    )


def _broken_record(lines: _LineFeed, start: int, exc: csv.Error, field_end: re.Pattern[str]) -> str:
    """The reason for a record csv could not read; gives its lines back when that is safe.

    Lines are read again only when a quoted field is still open where csv stopped (the file
    ended, or the field reached csv's size limit): then the quote was most likely never closed
    and the lines after the one it opened on are rows of their own. Any other error (text after
    a closing quote, a line break in an unquoted field) comes after the quote closed, so the
    record's later lines were text inside a field: sending them as rows would message numbers
    that are no row of the input.
    """
    end = lines.line
    message = str(exc)
    opened = None
    if message.startswith(("unexpected end of data", "field larger than field limit")):
        opened = _open_quote_line(lines.record_text(), field_end)
    if opened is None or start + opened == end:
        reason = f"line {start}: malformed CSV: {_csv_reason(exc)}"
        return reason + (f" (the row spans lines {start}-{end})" if end > start else "")
    if message.startswith("unexpected end of data"):
        reason = f"line {start}: malformed CSV: {_csv_reason(exc)}"
    else:
        limit = csv.field_size_limit()
        reason = f"line {start}: malformed CSV: a quote is not closed within {limit} characters"
    if opened:
        reason += f"; the quote opens on line {start + opened}"
    again = lines.replay_after(opened + 1)
    if again == 1:
        return f"{reason}; line {end} is read again as a row of its own"
    return f"{reason}; lines {end - again + 1}-{end} are read again as rows of their own"


def _open_quote_line(lines: Sequence[str], field_end: re.Pattern[str]) -> int | None:
    """Index of the line whose quoted field is still open after ``lines``, or None.

    ``lines`` are one record's lines as csv.reader (strict, ``"`` quotes, doubled to escape)
    read them; ``field_end`` matches the delimiter or a line break. None when no quoted field is
    open at their end: the record ended, or a closing quote was followed by other text.
    """
    opened: int | None = None
    for index, line in enumerate(lines):
        pos = 0
        while True:
            if opened is not None:
                quote = line.find('"', pos)
                if quote == -1:
                    break  # the quoted field goes on into the next line
                pos = quote + 1
                if line.startswith('"', pos):
                    pos += 1  # a doubled quote is a quote in the text
                    continue
                opened = None
                match = field_end.match(line, pos)
                if match is None or match.group() in "\r\n":
                    return None  # the record ends here, or text follows the closing quote
                pos = match.end()
            if line.startswith('"', pos):
                opened = index
                pos += 1
                continue
            match = field_end.search(line, pos)
            if match is None or match.group() in "\r\n":
                return None  # an unquoted field ends the record on this line
            pos = match.end()
    return opened


class _LineFeed:
    """An iterator of decoded lines over a file descriptor, for :func:`csv.reader`.

    Lines that are not valid UTF-8 are decoded with ``surrogateescape`` and counted in
    ``bad_lines``, so the caller can tell exactly which rows carried bad bytes. The raw lines of
    the record being read are kept from one :attr:`new_record` call to the next, so that a
    broken record can give back the lines it swallowed (:meth:`replay_after`).
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending: list[bytes] = []
        #: The start of a line whose end has not been read yet, in the chunks it came in:
        #: joining them only once the line ends keeps a long line linear to read.
        self._tail: list[bytes] = []
        self._eof = False
        self._first = True
        #: What ends a line: LF (which covers CRLF), or _ANY_END in a file whose lines end in a
        #: lone CR. None until the first line ending has been seen.
        self._newline: bytes | None = None
        #: LF was chosen on a header line alone (nothing after it in that read, typical of a
        #: pipe whose writer sent the header apart): the next line ending seen may overrule it.
        self._lf_unconfirmed = False
        self._record: list[bytes] = []
        # Bound list methods: this runs once per line and per row of a million-row file.
        self._keep_line = self._record.append
        #: Call before reading a record: forgets the raw lines of the one before.
        self.new_record: Callable[[], None] = self._record.clear
        self._decode = codecs.getdecoder("utf-8")
        self.line = 0
        self.bad_lines = 0
        self.before_block: Callable[[], None] = lambda: None

    def record_text(self) -> list[str]:
        """The lines of the current record, decoded as csv.reader got them."""
        return [raw.decode("utf-8", "surrogateescape") for raw in self._record]

    def replay_after(self, keep: int) -> int:
        """Give back the current record's lines after its first ``keep``; return how many."""
        rest = self._record[keep:]
        self._record.clear()
        self._pending.extend(reversed(rest))
        self.line -= len(rest)
        return len(rest)

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
        if self._first:
            self._first = False
            text = text.removeprefix("\ufeff")
        return text

    def _fill(self) -> None:
        self.before_block()
        data = os.read(self._fd, _READ_SIZE)
        tail = self._tail
        if not data:
            self._eof = True
            if tail:
                self._pending = [b"".join(tail)]
                tail.clear()
            return
        newline = self._newline
        if newline is None:
            # Until a line ending is seen, the tail holds none, but for a CR as its last byte.
            newline = self._detect_newline(tail[-1][-1:] + data if tail else data)
            if newline is None:
                tail.append(data)
                return
        elif newline == b"\n" and self._lf_unconfirmed:
            newline = self._confirm_lf(data)
            if newline == _ANY_END:
                # The tail holds everything read since the header's LF (no LF came since).
                data = b"".join(tail) + data
                tail.clear()
        if newline == _ANY_END:
            self._fill_any_end(data)
            return
        parts = data.split(b"\n")
        last = parts.pop()
        if not parts:
            tail.append(last)
            return
        if tail:
            tail.append(parts[0])
            parts[0] = b"".join(tail)
            tail.clear()
        if last:
            tail.append(last)
        # csv.reader wants the line endings kept: they matter inside quoted fields.
        self._pending = [part + b"\n" for part in reversed(parts)]

    def _fill_any_end(self, data: bytes) -> None:
        """Split at CR, CRLF and LF: files with lone-CR endings are often mixed with others."""
        tail = self._tail
        parts = _ANY_END_SPLIT.split(data)  # zero-width: the endings stay on the lines
        last = parts.pop()
        if not last and data.endswith(b"\r"):
            last = parts.pop()  # its LF may be the next read's first byte
        if tail and tail[-1].endswith(b"\r") and not data.startswith(b"\n"):
            parts.insert(0, b"".join(tail))  # a CR the last read ended on was a line ending
            tail.clear()
        elif tail and parts:
            tail.append(parts[0])
            parts[0] = b"".join(tail)
            tail.clear()
        if last:
            tail.append(last)
        parts.reverse()
        self._pending = parts

    def _detect_newline(self, data: bytes) -> bytes | None:
        """LF, unless lines end in a lone CR (old Mac exports): _ANY_END then.

        A lone CR as the first line ending decides it; so does a first line ending in LF when the
        rest of the read has a lone CR and no LF (a header written apart from old Mac rows). An
        LF in the rest of the read keeps LF, so a CR inside a field of an LF file stays text.
        """
        cr = data.find(b"\r")
        lf = data.find(b"\n")
        if cr != -1 and (lf == -1 or cr + 1 < lf):
            if cr + 1 == len(data):
                return None  # its LF may come with the next read
            self._newline = _ANY_END
        elif lf != -1:
            rest = data[lf + 1 :]
            cr = rest.find(b"\r")
            lone_cr = cr != -1 and cr + 1 < len(rest) and b"\n" not in rest
            self._newline = _ANY_END if lone_cr else b"\n"
            # Nothing after the first line to judge by (a pipe delivering the header on its
            # own): keep looking at the next reads until a line ending shows which it is.
            self._lf_unconfirmed = not lone_cr and b"\n" not in rest and cr in (-1, len(rest) - 1)
        return self._newline

    def _confirm_lf(self, data: bytes) -> bytes:
        """The same decision as :meth:`_detect_newline` for the first read after an LF header
        that came alone: LF if an LF comes (the header's LF then stands), _ANY_END if a lone CR
        comes without one, still LF (unconfirmed) while neither has come."""
        seen = self._tail[-1][-1:] + data if self._tail else data
        if b"\n" in seen:
            self._lf_unconfirmed = False
            return b"\n"
        cr = seen.find(b"\r")
        if cr != -1 and cr + 1 < len(seen):
            self._lf_unconfirmed = False
            self._newline = _ANY_END
            return _ANY_END
        return b"\n"
