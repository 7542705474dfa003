"""Streaming CSV input: chunks, bad rows, header rules, pipes."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from kaleyra_async._config import MessageDefaults
from kaleyra_async._exceptions import ConfigError
from kaleyra_async._models import InputRow, RowResult
from kaleyra_async._phone import PhoneNormalizer
from kaleyra_async._prepare import RowPlan, RowPreparer
from kaleyra_async._sources import _READ_SIZE, CsvSource


async def read_all(source: CsvSource) -> list[InputRow]:
    send, receive = anyio.create_memory_object_stream[list[InputRow]](100)
    rows: list[InputRow] = []
    try:
        async with anyio.create_task_group() as tg:

            async def pump() -> None:
                async with send:
                    await source.pump(send)

            tg.start_soon(pump)
            async with receive:
                async for chunk in receive:
                    rows.extend(chunk)
    except BaseExceptionGroup as group:
        [error] = group.exceptions
        raise error from None
    return rows


def write(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    return str(path)


async def test_rows_are_numbered_from_one_after_the_header(tmp_path: Path) -> None:
    """Data rows are numbered 1.. in order, fields keyed by the header."""
    source = CsvSource(write(tmp_path, b"to,name\n+919876543210,Asha\n+919876543211,Ravi\n"))
    rows = await read_all(source)
    assert source.header == ("to", "name")
    assert [(r.row, r.fields, r.error) for r in rows] == [
        (1, {"to": "+919876543210", "name": "Asha"}, None),
        (2, {"to": "+919876543211", "name": "Ravi"}, None),
    ]


async def test_bad_rows_become_errors_and_reading_goes_on(tmp_path: Path) -> None:
    """Undecodable bytes and a wrong field count spoil one row each, not the run."""
    data = b"to,name\n+911,ok\n+912,caf\xe9\n+913\n+914,a,b\n+915,fine\n"
    rows = await read_all(CsvSource(write(tmp_path, data)))
    assert [r.row for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].error is None
    assert rows[1].error is not None and "UTF-8" in rows[1].error
    assert rows[2].error == "line 4: row has 1 field, the header has 2"
    assert rows[3].error == "line 5: row has 3 fields, the header has 2"
    assert rows[4].fields == {"to": "+915", "name": "fine"}


async def test_quoted_newlines_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    """A quoted field may span lines; a BOM, CRLF endings and blank lines are handled."""
    data = '\ufeffto,body\r\n+911,"line one\r\nline two"\r\n\r\n+912,"say ""hi"""\r\n'.encode()
    source = CsvSource(write(tmp_path, data))
    rows = await read_all(source)
    assert source.header == ("to", "body")
    assert [r.fields["body"] for r in rows] == ["line one\r\nline two", 'say "hi"']
    assert [r.row for r in rows] == [1, 2]


async def test_last_line_without_newline_is_read(tmp_path: Path) -> None:
    """The final row counts even without a trailing newline."""
    rows = await read_all(CsvSource(write(tmp_path, b"to\n+911\n+912")))
    assert [r.fields["to"] for r in rows] == ["+911", "+912"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "header row is required", id="empty"),
        pytest.param(b"to,to\n+91\n", "repeats column", id="duplicate-column"),
        pytest.param(b"to,\n+91,\n", "empty column name", id="empty-column-name"),
        pytest.param(b"t\xffo\n+91\n", "not valid UTF-8", id="bad-header-bytes"),
    ],
)
async def test_header_problems_are_config_errors(tmp_path: Path, data: bytes, message: str) -> None:
    """A missing or unusable header stops the run before anything is sent."""
    with pytest.raises(ConfigError, match=message):
        await read_all(CsvSource(write(tmp_path, data)))


async def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """The error names the file."""
    with pytest.raises(ConfigError, match=r"nope\.csv"):
        await read_all(CsvSource(str(tmp_path / "nope.csv")))


async def test_large_file_arrives_in_bounded_chunks(tmp_path: Path) -> None:
    """A big file is handed over in several chunks, none over the chunk cap."""
    lines = b"".join(b"+9198%08d\n" % n for n in range(20_000))
    send, receive = anyio.create_memory_object_stream[list[InputRow]](1)
    sizes: list[int] = []
    async with anyio.create_task_group() as tg:

        async def pump() -> None:
            async with send:
                await CsvSource(write(tmp_path, b"to\n" + lines)).pump(send)

        tg.start_soon(pump)
        async with receive:
            async for chunk in receive:
                sizes.append(len(chunk))
    assert sum(sizes) == 20_000
    assert len(sizes) > 5
    assert max(sizes) <= 2048


async def test_pipe_rows_arrive_before_the_writer_finishes() -> None:
    """From a pipe, a complete row is delivered while the writer is still open (no waiting)."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    os.write(write_fd, b"to\n+919876543210\n")
    send, receive = anyio.create_memory_object_stream[list[InputRow]](10)
    async with anyio.create_task_group() as tg:

        async def pump() -> None:
            async with send:
                await CsvSource("-", stdin=reader).pump(send)

        tg.start_soon(pump)
        async with receive:
            with anyio.fail_after(10):
                first = await receive.receive()
            assert [r.fields["to"] for r in first] == ["+919876543210"]
            os.write(write_fd, b"+919876543211\n")
            os.close(write_fd)
            with anyio.fail_after(10):
                rest = [r async for chunk in receive for r in chunk]
            assert [r.fields["to"] for r in rest] == ["+919876543211"]
    reader.close()


async def test_another_delimiter_is_read_when_asked(tmp_path: Path) -> None:
    """Spreadsheet exports with semicolons work with delimiter=';'."""
    source = CsvSource(write(tmp_path, b"to;name\n+919876543210;Asha\n"), delimiter=";")
    rows = await read_all(source)
    assert rows[0].fields == {"to": "+919876543210", "name": "Asha"}


def test_a_delimiter_must_be_one_character(tmp_path: Path) -> None:
    """A typo like ';;' is a config error, not a silent misparse."""
    with pytest.raises(ConfigError, match="one character"):
        CsvSource(write(tmp_path, b"to\n"), delimiter=";;")


async def test_cr_only_line_endings_across_reads(tmp_path: Path) -> None:
    """Old Mac files end lines in CR, even when the first CR is the last byte of a read."""
    header = b"to," + b"n" * (_READ_SIZE - 4)  # its CR ends the first 64 KiB read exactly
    body = b"".join(b"+9198%08d,x\r" % n for n in range(10_000))
    rows = await read_all(CsvSource(write(tmp_path, header + b"\r" + body)))
    assert [r.error for r in rows] == [None] * 10_000
    assert rows[-1].fields["to"] == "+919800009999"


async def test_a_quote_never_closed_gives_back_the_lines_it_swallowed(tmp_path: Path) -> None:
    """A never-closed quote is one error row; every later line is read again as its own row."""
    # Also when the swallowed lines hit csv's field size limit long before the end of the file.
    later = b"".join(b"+9198%08d,x\n" % n for n in range(20_000))  # ~320 KB: past the limit
    data = b'to,name\n+911,ok\n+912,"never closed\n' + later
    rows = await read_all(CsvSource(write(tmp_path, data)))
    assert rows[1].error is not None
    assert rows[1].error == (
        "line 3: malformed CSV: a quote is not closed within 131072 characters; "
        "lines 4-8195 are read again as rows of their own"
    )
    assert [r.row for r in rows] == list(range(1, 20_003))
    assert [r.fields["to"] for r in rows[2:]] == [f"+9198{n:08d}" for n in range(20_000)]


@pytest.mark.parametrize(
    ("inside", "rows_after"),
    [
        pytest.param(b"+919800000099,anytime", 1, id="a-number-inside-the-quote"),
        pytest.param(b"your order ships today", 1, id="text-inside-the-quote"),
    ],
)
async def test_text_after_a_closing_quote_spoils_one_row_and_no_line_of_it_is_read_again(
    tmp_path: Path, inside: bytes, rows_after: int
) -> None:
    """The quote closed: the lines it spans were text of a field, never rows to send."""
    data = b'to,body\n+919800000001,"Call us:\n' + inside + b'" \n+919800000002,Hi Ravi\n'
    rows = await read_all(CsvSource(write(tmp_path, data)))
    assert [(r.row, r.fields, r.error) for r in rows] == [
        (1, {}, "line 2: malformed CSV: ',' expected after '\"' (the row spans lines 2-3)"),
        (2, {"to": "+919800000002", "body": "Hi Ravi"}, None),
    ]


async def test_one_line_read_again_is_named_as_one_line(tmp_path: Path) -> None:
    """A single line given back is named 'line N', not 'lines N-N'."""
    data = b'to,name\n+911,ok\n+912,"never closed\n+913,x\n'
    rows = await read_all(CsvSource(write(tmp_path, data)))
    assert [(r.row, r.error) for r in rows] == [
        (1, None),
        (
            2,
            "line 3: malformed CSV: the file ends inside a quoted field (a quote is never "
            "closed); line 4 is read again as a row of its own",
        ),
        (3, None),
    ]


async def test_only_the_lines_after_the_still_open_quote_are_read_again(tmp_path: Path) -> None:
    """Only the lines after the one a never-closed quote opens on are read again as rows."""
    # The record's first quoted field closed; its lines up to the open quote's are the broken row.
    data = b'to,a,b\n+911,"one\n+919800000099 two","never closed\n+913,x,y\n'
    rows = await read_all(CsvSource(write(tmp_path, data)))
    assert [(r.row, r.fields.get("to"), r.error) for r in rows] == [
        (
            1,
            None,
            "line 2: malformed CSV: the file ends inside a quoted field (a quote is never "
            "closed); the quote opens on line 3; line 4 is read again as a row of its own",
        ),
        (2, "+913", None),
    ]


async def test_a_long_quoted_field_that_closes_on_its_last_line_is_one_row(
    tmp_path: Path,
) -> None:
    """A quoted field over the limit that closes is too long, not unclosed: no line is a row."""
    field = b"+9198%08d text\n" % 1 + b"y" * 140_000
    data = b'to,body\n+911,"' + field + b'"\n+912,ok\n'
    rows = await read_all(CsvSource(write(tmp_path, data)))
    assert [(r.row, r.error) for r in rows] == [
        (1, "line 2: malformed CSV: a field is longer than 131072 characters (the row spans "
            "lines 2-3)"),
        (2, None),
    ]  # fmt: skip


async def test_a_row_with_bad_bytes_in_another_column_keeps_its_number(tmp_path: Path) -> None:
    """Only the mis-encoded column is unknown: the result can still say whom the row was for."""
    data = b"to,name\n+919800000001,caf\xe9\n\xff,ok\n"
    rows = await read_all(CsvSource(write(tmp_path, data)))
    assert [(r.fields, r.error) for r in rows] == [
        ({"to": "+919800000001"}, "line 2: column name: bytes that are not valid UTF-8"),
        ({"name": "ok"}, "line 3: column to: bytes that are not valid UTF-8"),
    ]
    plan = RowPlan(
        pod="IN",
        defaults=MessageDefaults(
            body="Hi", sender="KLRHXA", type="TXN", template_id="1107161234567890123"
        ),
    )
    preparer = RowPreparer(plan, normalize=PhoneNormalizer("+91"), now=datetime.now(UTC))
    preparer.check_header(("to", "name"))
    results = [preparer.prepare(r) for r in rows]
    assert [(r.to, r.error_code) for r in results if isinstance(r, RowResult)] == [
        ("+919800000001", "invalid_row"),
        ("", "invalid_row"),
    ]


@pytest.mark.parametrize(
    ("header_end", "row_end"),
    [
        pytest.param(b"\n", b"\r", id="lf-header-cr-rows"),
        pytest.param(b"\r\n", b"\r", id="crlf-header-cr-rows"),
        pytest.param(b"\r", b"\r\n", id="cr-header-crlf-rows"),
        pytest.param(b"\r", b"\n", id="cr-header-lf-rows"),
    ],
)
async def test_a_header_ending_unlike_the_rows_still_gives_every_row(
    tmp_path: Path, header_end: bytes, row_end: bytes
) -> None:
    """A header written apart from old Mac rows: each row is its own row, none merged."""
    data = b"to,name" + header_end + b"".join(b"+91%d,n%d" % (n, n) + row_end for n in range(3))
    rows = await read_all(CsvSource(write(tmp_path, data)))
    assert [(r.fields, r.error) for r in rows] == [
        ({"to": f"+91{n}", "name": f"n{n}"}, None) for n in range(3)
    ]


@pytest.mark.parametrize("row_end", [b"\r", b"\r\n", b"\n"], ids=["cr", "crlf", "lf"])
async def test_a_pipe_sending_the_header_apart_still_gives_every_row(row_end: bytes) -> None:
    """A header read alone from a pipe does not fix LF: lone-CR rows after it are still rows."""
    # ``(echo to,name; cat old_mac_rows.csv) | send-bulk -``: the read with the header has
    # nothing after its LF to judge by; CRLF or LF rows are unaffected.
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    os.write(write_fd, b"to,name\n")
    source = CsvSource("-", stdin=reader)
    header_read = anyio.Event()
    source.on_header(lambda _: header_read.set())
    send, receive = anyio.create_memory_object_stream[list[InputRow]](10)
    async with anyio.create_task_group() as tg:

        async def pump() -> None:
            async with send:
                await source.pump(send)

        tg.start_soon(pump)
        with anyio.fail_after(10):
            await header_read.wait()  # the header was read on its own
        os.write(write_fd, b"".join(b"+91%d,n%d" % (n, n) + row_end for n in range(3)))
        os.close(write_fd)
        async with receive:
            with anyio.fail_after(10):
                rows = [r async for chunk in receive for r in chunk]
    reader.close()
    assert [(r.fields, r.error) for r in rows] == [
        ({"to": f"+91{n}", "name": f"n{n}"}, None) for n in range(3)
    ]


async def test_crlf_split_across_reads_in_a_cr_file(tmp_path: Path) -> None:
    """A CRLF whose CR ends a 64 KiB read is one line ending, not a CR then a blank line."""
    header = b"to," + b"n" * 15 + b"\r"  # puts row 3853's CR at the read's last byte
    body = b"".join(b"+9198%08d,x\r\n" % n for n in range(10_000))
    assert (header + body)[_READ_SIZE - 2 : _READ_SIZE] == b"x\r"
    rows = await read_all(CsvSource(write(tmp_path, header + body)))
    assert [r.error for r in rows] == [None] * 10_000
    assert [r.fields["to"] for r in rows[4366:4369]] == [
        f"+9198{n:08d}" for n in (4366, 4367, 4368)
    ]


async def test_a_lone_cr_in_a_field_of_an_lf_file_stays_one_row(tmp_path: Path) -> None:
    """An LF file: a CR inside an unquoted field does not split the row in two."""
    data = b"to,name\n+911,As\rha\n+912,Ravi\n"
    rows = await read_all(CsvSource(write(tmp_path, data)))
    assert [(r.row, r.error) for r in rows] == [
        (1, "line 2: malformed CSV: a line break inside an unquoted field (quote the field)"),
        (2, None),
    ]


async def test_a_line_arriving_in_several_reads_is_one_row(tmp_path: Path) -> None:
    """The start of a line is kept across reads until its end comes (or the file ends)."""
    name = "x" * (_READ_SIZE * 3 // 2)  # under csv's field size limit
    data = f"to,name\n+911,{name}\n+912,{name}".encode()
    rows = await read_all(CsvSource(write(tmp_path, data)))
    assert [r.fields["name"] == name for r in rows] == [True, True]
