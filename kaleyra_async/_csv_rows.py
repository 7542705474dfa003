"""What csv.reader's records and errors mean as input rows (pure): the header's rules, the
reasons an invalid row gives, and which lines of a broken record are read again.

Undecodable bytes, a wrong number of fields and malformed quoting make that one row an error
(``InputRow.error``), never the whole run. A quote that is never closed would otherwise turn the
rest of the file (up to csv's field size limit) into one broken row: when a quoted field is still
open where csv gives up, the lines after the line it opened on are read again as rows of their
own, so every line still gets its result. Any other broken record (text after a closing quote)
is one invalid row, however many lines its quoted field spans: those lines were text, not rows.

Invalid UTF-8 is a per-row error, not a file-level one: one mis-encoded name in an export must
not stop every other row, and the row itself is not sent because nobody can tell what its text
was meant to say. Only a header with bad bytes stops the run (the columns are unknown).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from typing import Final

from ._exceptions import ConfigError
from ._models import InputRow

__all__ = ["broken_record", "csv_reason", "header_row", "odd_row"]

#: What surrogateescape decodes an undecodable byte to.
_SURROGATE: Final = re.compile("[\udc80-\udcff]")

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


def csv_reason(exc: csv.Error) -> str:
    """csv's error in the file's terms."""
    text = str(exc)
    for start, reason in _CSV_REASONS:
        if text.startswith(start):
            return reason.format(limit=csv.field_size_limit())
    return text


def header_row(values: list[str], *, bad_bytes: bool) -> tuple[str, ...]:
    """The column names of a header record.

    Raises:
        ConfigError: it had bytes that are not UTF-8, an empty or a repeated column name.
    """
    if bad_bytes:
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


def odd_row(
    row: int, line: int, header: tuple[str, ...], values: list[str], *, bad_bytes: bool
) -> InputRow:
    """A record that had undecodable bytes (``bad_bytes``) or not one field per column.

    It is an invalid row naming its file ``line``, unless the bad bytes were in no field and
    the count is right.
    """
    if bad_bytes and any(_SURROGATE.search(v) for v in values):
        return _bad_bytes_row(row, line, header, values)
    if len(values) != len(header):
        fields = "field" if len(values) == 1 else "fields"
        reason = f"row has {len(values)} {fields}, the header has {len(header)}"
        return InputRow(row, {}, f"line {line}: {reason}")
    return InputRow(row, dict(zip(header, values, strict=True)))


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


def broken_record(
    record: Sequence[str], start: int, exc: csv.Error, delimiter: str
) -> tuple[str, int]:
    """The reason for a record csv could not read, and how many of its lines it keeps.

    ``record`` is its lines as csv.reader got them, the first being file line ``start``; the
    lines after the ones it keeps are to be read again as rows. They are only when a quoted
    field is still open where csv stopped (the file ended, or the field reached csv's size
    limit): then the quote was most likely never closed and the lines after the one it opened
    on are rows of their own. Any other error (text after a closing quote, a line break in an
    unquoted field) comes after the quote closed, so the record's later lines were text inside
    a field: sending them as rows would message numbers that are no row of the input.
    """
    end = start + len(record) - 1
    message = str(exc)
    opened = None
    if message.startswith(("unexpected end of data", "field larger than field limit")):
        opened = _open_quote_line(record, re.compile(f"[{re.escape(delimiter)}\r\n]"))
    if opened is None or start + opened == end:
        reason = f"line {start}: malformed CSV: {csv_reason(exc)}"
        spans = f" (the row spans lines {start}-{end})" if end > start else ""
        return reason + spans, len(record)
    if message.startswith("unexpected end of data"):
        reason = f"line {start}: malformed CSV: {csv_reason(exc)}"
    else:
        limit = csv.field_size_limit()
        reason = f"line {start}: malformed CSV: a quote is not closed within {limit} characters"
    if opened:
        reason += f"; the quote opens on line {start + opened}"
    keep = opened + 1
    again = len(record) - keep
    if again == 1:
        return f"{reason}; line {end} is read again as a row of its own", keep
    return f"{reason}; lines {end - again + 1}-{end} are read again as rows of their own", keep


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
