"""What csv records and errors mean as rows: header rules, invalid rows, broken records."""

from __future__ import annotations

import csv

import pytest

from kaleyra_async._csv_rows import broken_record, header_row, odd_row
from kaleyra_async._exceptions import ConfigError
from kaleyra_async._models import InputRow

UNCLOSED = csv.Error("unexpected end of data")
TOO_LONG = csv.Error("field larger than field limit (131072)")
TEXT_AFTER_QUOTE = csv.Error("',' expected after '\"'")
LIMIT = csv.field_size_limit()


@pytest.mark.parametrize(
    ("record", "error", "reason", "keep"),
    [
        pytest.param(
            ['+912,"never closed\n', "+913,x\n"],
            UNCLOSED,
            "line 3: malformed CSV: the file ends inside a quoted field (a quote is never "
            "closed); line 4 is read again as a row of its own",
            1,
            id="unclosed-gives-back-one-line",
        ),
        pytest.param(
            ['+912,"never closed\n', "+913,x\n", "+914,y\n"],
            TOO_LONG,
            f"line 3: malformed CSV: a quote is not closed within {LIMIT} characters; "
            "lines 4-5 are read again as rows of their own",
            1,
            id="size-limit-inside-an-open-quote",
        ),
        pytest.param(
            ['+911,"one\n', '+919800000099 two","never closed\n', "+913,x,y\n"],
            UNCLOSED,
            "line 3: malformed CSV: the file ends inside a quoted field (a quote is never "
            "closed); the quote opens on line 4; line 5 is read again as a row of its own",
            2,
            id="only-after-the-line-the-open-quote-starts-on",
        ),
        pytest.param(
            ['+911,"one\n', 'two","never closed\n'],
            UNCLOSED,
            "line 3: malformed CSV: the file ends inside a quoted field (a quote is never "
            "closed) (the row spans lines 3-4)",
            2,
            id="open-quote-on-the-last-line-gives-back-nothing",
        ),
        pytest.param(
            ['+911,"Call us:\n', '+919800000099,anytime" \n'],
            TEXT_AFTER_QUOTE,
            "line 3: malformed CSV: ',' expected after '\"' (the row spans lines 3-4)",
            2,
            id="text-after-a-closing-quote-is-one-row",
        ),
        pytest.param(
            ['+911,"long\n', 'text" \n'],
            TOO_LONG,
            f"line 3: malformed CSV: a field is longer than {LIMIT} characters "
            "(the row spans lines 3-4)",
            2,
            id="size-limit-after-the-quote-closed",
        ),
        pytest.param(
            ["+911,As\rha\n"],
            csv.Error("new-line character seen in unquoted field - do you need ..."),
            "line 3: malformed CSV: a line break inside an unquoted field (quote the field)",
            1,
            id="one-line-in-the-files-words",
        ),
    ],
)
def test_a_broken_record_names_its_lines_and_gives_back_only_rows(
    record: list[str], error: csv.Error, reason: str, keep: int
) -> None:
    """Lines after an open quote's line are read again; the lines of a closed quote never are."""
    assert broken_record(record, 3, error, ",") == (reason, keep)


def test_a_doubled_quote_is_text_not_a_closing_quote() -> None:
    """'""' inside a quoted field does not close it: the quote is still open at the end."""
    record = ['+911,"say ""hi"" and\n', "+912,x\n"]
    reason, keep = broken_record(record, 2, UNCLOSED, ",")
    assert (reason.endswith("line 3 is read again as a row of its own"), keep) == (True, 1)


def test_the_delimiter_ends_a_field_in_the_quote_scan() -> None:
    """With ';' a quoted second field is found after the ';', not after a ','."""
    record = ['+911;"never closed\n', "+912;x\n"]
    assert broken_record(record, 2, UNCLOSED, ";")[1] == 1


HEADER = ("to", "name")


@pytest.mark.parametrize(
    ("values", "bad_bytes", "row"),
    [
        pytest.param(
            ["+911", "caf\udce9"],
            True,
            InputRow(1, {"to": "+911"}, "line 2: column name: bytes that are not valid UTF-8"),
            id="bad-bytes-keep-the-good-columns",
        ),
        pytest.param(
            ["+9\udcff1"],
            True,
            InputRow(1, {}, "line 2: bytes that are not valid UTF-8"),
            id="bad-bytes-and-a-wrong-count",
        ),
        pytest.param(
            ["+911"], False, InputRow(1, {}, "line 2: row has 1 field, the header has 2"), id="few"
        ),
        pytest.param(
            ["+911", "a", "b"],
            False,
            InputRow(1, {}, "line 2: row has 3 fields, the header has 2"),
            id="many",
        ),
        pytest.param(
            ["+911", "ok"],
            True,
            InputRow(1, {"to": "+911", "name": "ok"}),
            id="bad-bytes-elsewhere",
        ),
    ],
)
def test_an_odd_record_is_an_invalid_row_naming_its_line(
    values: list[str], bad_bytes: bool, row: InputRow
) -> None:
    """Bad bytes or a wrong field count spoil the row, naming the file line it started on."""
    assert odd_row(1, 2, HEADER, values, bad_bytes=bad_bytes) == row


@pytest.mark.parametrize(
    ("values", "bad_bytes", "message"),
    [
        pytest.param(["t\udcffo"], True, "not valid UTF-8", id="bad-bytes"),
        pytest.param(["to", " "], False, r"empty column name \(column 2\)", id="empty-name"),
        pytest.param(["to", "a", "to", "a"], False, "repeats column.*: a, to", id="repeated"),
    ],
)
def test_an_unusable_header_is_a_config_error(
    values: list[str], bad_bytes: bool, message: str
) -> None:
    """Unknown, empty or repeated column names stop the run before any row."""
    with pytest.raises(ConfigError, match=message):
        header_row(values, bad_bytes=bad_bytes)


def test_header_names_are_stripped() -> None:
    """Spaces around a column name are not part of it."""
    assert header_row([" to ", "name "], bad_bytes=False) == ("to", "name")
