"""Cutting bytes into lines: LF, CRLF and lone-CR files, reads split anywhere, no I/O."""

from __future__ import annotations

import pytest

from kaleyra_async._lines import LineSplitter


def split(*reads: bytes) -> list[bytes]:
    """The lines of a stream that arrived in ``reads``, its end included."""
    splitter = LineSplitter()
    lines = [line for data in reads for line in splitter.feed(data)]
    return lines + splitter.finish()


@pytest.mark.parametrize(
    ("reads", "lines"),
    [
        pytest.param([b"to\na\nb\n"], [b"to\n", b"a\n", b"b\n"], id="lf"),
        pytest.param([b"to\r\na\r\n"], [b"to\r\n", b"a\r\n"], id="crlf"),
        pytest.param([b"to\r\na\nb\r\n"], [b"to\r\n", b"a\n", b"b\r\n"], id="crlf-lf-mixed"),
        pytest.param([b"to\ra\rb\r"], [b"to\r", b"a\r", b"b\r"], id="lone-cr"),
        pytest.param([b"to\ra\r\nb\n"], [b"to\r", b"a\r\n", b"b\n"], id="cr-file-takes-every-end"),
        pytest.param([b"to\na\rb\r"], [b"to\n", b"a\r", b"b\r"], id="lf-header-cr-rows"),
        pytest.param([b"to\na\rb\n"], [b"to\n", b"a\rb\n"], id="cr-in-a-field-of-an-lf-file"),
        pytest.param([b"to\na\nb"], [b"to\n", b"a\n", b"b"], id="final-line-without-newline"),
        pytest.param([b"to\ra\r"], [b"to\r", b"a\r"], id="final-cr-at-eof"),
        pytest.param([b"to"], [b"to"], id="no-line-ending-at-all"),
        pytest.param([b"to\r"], [b"to\r"], id="one-cr-then-eof"),
        pytest.param([b""], [], id="empty"),
        pytest.param([b"a\n\nb\n"], [b"a\n", b"\n", b"b\n"], id="blank-line-kept"),
    ],
)
def test_lines_keep_their_endings(reads: list[bytes], lines: list[bytes]) -> None:
    """Each line ends where the file's kind of ending says, with that ending kept."""
    assert split(*reads) == lines


@pytest.mark.parametrize(
    ("reads", "lines"),
    [
        pytest.param(
            [b"to\r", b"\na\r\n"], [b"to\r\n", b"a\r\n"], id="crlf-split-after-the-first-cr"
        ),
        pytest.param(
            [b"to\ra\r", b"\nb\r"], [b"to\r", b"a\r\n", b"b\r"], id="crlf-split-in-a-cr-file"
        ),
        pytest.param(
            [b"to\r", b"\na\rb\r\n"],
            [b"to\r\n", b"a\rb\r\n"],
            id="crlf-split-after-the-first-cr-a-cr-in-a-field-stays-text",
        ),
        pytest.param([b"to\ra\r", b"b\r"], [b"to\r", b"a\r", b"b\r"], id="cr-ends-a-read"),
        pytest.param([b"to\r", b"a\r"], [b"to\r", b"a\r"], id="first-cr-ends-the-first-read"),
        pytest.param([b"to\n", b"a\rb\r"], [b"to\n", b"a\r", b"b\r"], id="header-alone-cr-rows"),
        pytest.param(
            [b"to\n", b"a\r\nb\r\n"], [b"to\n", b"a\r\n", b"b\r\n"], id="header-alone-crlf"
        ),
        pytest.param([b"to\n", b"a\nb\n"], [b"to\n", b"a\n", b"b\n"], id="header-alone-lf-rows"),
        pytest.param(
            [b"to\n", b"a\rb\n"], [b"to\n", b"a\rb\n"], id="header-alone-a-cr-in-a-field-stays-text"
        ),
        pytest.param(
            [b"to\n", b"a", b"\r", b"b\r"],
            [b"to\n", b"a\r", b"b\r"],
            id="header-alone-cr-decided-a-read-later",
        ),
        pytest.param(
            [b"to\n", b"a\r", b"\nb\r\n"],
            [b"to\n", b"a\r\n", b"b\r\n"],
            id="header-alone-crlf-split-in-the-next-reads",
        ),
        pytest.param([b"to\na", b"bc\nd\n"], [b"to\n", b"abc\n", b"d\n"], id="a-line-over-reads"),
        pytest.param([b"x" * 5, b"y" * 5, b"\n"], [b"x" * 5 + b"y" * 5 + b"\n"], id="no-end-yet"),
    ],
)
def test_reads_may_end_anywhere(reads: list[bytes], lines: list[bytes]) -> None:
    """A CRLF, a first line or a line split between reads gives the lines of the whole."""
    assert split(*reads) == lines


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"to,name\n+911,a\n+912,b\n", id="lf"),
        pytest.param(b"to,name\r\n+911,a\r\n+912,b\r\n", id="crlf"),
        pytest.param(b"to,name\r+911,a\r+912,b\r", id="lone-cr"),
        pytest.param(b"to,name\n+911,a\r+912,b\r", id="lf-header-cr-rows"),
        pytest.param(b"to,name\r\n+911,a\r+912,b\r", id="crlf-header-cr-rows"),
        pytest.param(b"to,name\r+911,a\r\n+912,b\r\n", id="cr-header-crlf-rows"),
        pytest.param(b"to,name\r+911,a\n+912,b\n", id="cr-header-lf-rows"),
        pytest.param(b'to,body\r\n+911,"one\r\ntwo"\r\n+912,b', id="quoted-crlf-no-final-end"),
    ],
)
def test_where_the_reads_fall_does_not_change_the_lines(data: bytes) -> None:
    """Lines of one ending (the first may differ) come out alike read whole, split or bytewise."""
    whole = split(data)
    assert b"".join(whole) == data
    for cut in range(1, len(data)):
        assert split(data[:cut], data[cut:]) == whole, cut
    assert split(*(data[i : i + 1] for i in range(len(data)))) == whole


@pytest.mark.parametrize(
    ("reads", "lines"),
    [
        pytest.param([b"\xef\xbb\xbfto\r\na\r\n"], [b"to\r\n", b"a\r\n"], id="bom"),
        pytest.param([b"\xef", b"\xbb", b"\xbfto\n"], [b"to\n"], id="bom-over-reads"),
        pytest.param([b"\xef\xbb\xbf"], [b""], id="bom-alone"),
        pytest.param([b"to\n\xef\xbb\xbfa\n"], [b"to\n", b"\xef\xbb\xbfa\n"], id="later-bom-kept"),
    ],
)
def test_a_bom_is_dropped_from_the_first_line_only(reads: list[bytes], lines: list[bytes]) -> None:
    """Excel's UTF-8 byte order mark is not part of the first column name."""
    assert split(*reads) == lines
