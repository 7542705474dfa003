"""Cutting a byte stream into lines (pure: fed bytes, no I/O).

Lines may end in LF or CRLF, mixed freely. In a file of old Mac exports' lone-CR endings (its
first line ends in a lone CR, or only its first line ends in LF) CR, CRLF and LF all end lines.
Elsewhere a lone CR is text, which csv refuses outside quotes.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

__all__ = ["LineSplitter"]

_LF: Final = b"\n"
#: The mode for files with lone-CR line endings: any of CR, CRLF and LF ends a line.
_ANY_END: Final = b"\r"
_ANY_END_SPLIT: Final = re.compile(rb"(?<=\n)|(?<=\r)(?!\n)")


class LineSplitter:
    """Turns the reads of a stream into its lines, each with its line ending kept.

    csv.reader wants the endings: they matter inside quoted fields. The first line loses a UTF-8
    byte order mark (Excel's 'CSV UTF-8' starts with one).
    """

    def __init__(self) -> None:
        #: The start of a line whose end has not been read yet, in the reads it came in:
        #: joining them only once the line ends keeps a long line linear to read.
        self._tail: list[bytes] = []
        #: What ends a line: LF (which covers CRLF), or _ANY_END in a file whose lines end in a
        #: lone CR. None until the first line ending has been seen.
        self._newline: bytes | None = None
        #: LF was chosen on a first line alone (nothing after it in that read, typical of a
        #: pipe whose writer sent the header apart): the next line ending seen may overrule it.
        self._lf_unconfirmed = False
        self._first = True

    def feed(self, data: bytes) -> list[bytes]:
        """The lines that ``data`` completes, in order; the rest waits for the next read."""
        if not data:
            return []
        tail = self._tail
        newline = self._newline
        if newline is None:
            # Until a line ending is seen, the tail holds none, but for a CR as its last byte.
            newline = self._detect_newline(tail[-1][-1:] + data if tail else data)
            if newline is None:
                tail.append(data)
                return []
        elif self._lf_unconfirmed:
            newline = self._confirm_lf(data)
            if newline == _ANY_END:
                # The tail holds everything read since the first line's LF (no LF came since).
                data = b"".join(tail) + data
                tail.clear()
        lines = self._split_any_end(data) if newline == _ANY_END else self._split_lf(data)
        return self._strip_bom(lines)

    def finish(self) -> list[bytes]:
        """At the end of the stream: its last line if no line ending closed it, else nothing."""
        if not self._tail:
            return []
        last = b"".join(self._tail)
        self._tail.clear()
        return self._strip_bom([last])

    def _strip_bom(self, lines: list[bytes]) -> list[bytes]:
        if self._first and lines:
            self._first = False
            lines[0] = lines[0].removeprefix(codecs.BOM_UTF8)
        return lines

    def _split_lf(self, data: bytes) -> list[bytes]:
        tail = self._tail
        parts = data.split(_LF)
        last = parts.pop()
        if not parts:
            tail.append(last)
            return []
        if tail:
            tail.append(parts[0])
            parts[0] = b"".join(tail)
            tail.clear()
        if last:
            tail.append(last)
        return [part + _LF for part in parts]

    def _split_any_end(self, data: bytes) -> list[bytes]:
        """Split at CR, CRLF and LF: files with lone-CR endings are often mixed with others."""
        tail = self._tail
        parts = _ANY_END_SPLIT.split(data)  # zero-width: the endings stay on the lines
        last = parts.pop()
        if not last and data.endswith(b"\r"):
            last = parts.pop()  # its LF may be the next read's first byte
        if tail and tail[-1].endswith(b"\r") and not data.startswith(_LF):
            parts.insert(0, b"".join(tail))  # a CR the last read ended on was a line ending
            tail.clear()
        elif tail and parts:
            tail.append(parts[0])
            parts[0] = b"".join(tail)
            tail.clear()
        if last:
            tail.append(last)
        return parts

    def _detect_newline(self, data: bytes) -> bytes | None:
        """LF, unless lines end in a lone CR (old Mac exports): _ANY_END then.

        A lone CR as the first line ending decides it; so does a first line ending in LF when the
        rest of the read has a lone CR and no LF (a header written apart from old Mac rows). An
        LF in the rest of the read keeps LF, so a CR inside a field of an LF file stays text.
        """
        cr = data.find(b"\r")
        lf = data.find(_LF)
        if cr != -1 and (lf == -1 or cr + 1 < lf):
            if cr + 1 == len(data):
                return None  # its LF may come with the next read
            self._newline = _ANY_END
        elif lf != -1:
            rest = data[lf + 1 :]
            cr = rest.find(b"\r")
            lone_cr = cr != -1 and cr + 1 < len(rest) and _LF not in rest
            self._newline = _ANY_END if lone_cr else _LF
            # Nothing after the first line to judge by (a pipe delivering the header on its
            # own): keep looking at the next reads until a line ending shows which it is.
            self._lf_unconfirmed = not lone_cr and _LF not in rest and cr in (-1, len(rest) - 1)
        return self._newline

    def _confirm_lf(self, data: bytes) -> bytes:
        """The same decision as :meth:`_detect_newline` for the first read after an LF line
        that came alone: LF if an LF comes (that LF then stands), _ANY_END if a lone CR comes
        without one, still LF (unconfirmed) while neither has come."""
        seen = self._tail[-1][-1:] + data if self._tail else data
        if _LF in seen:
            self._lf_unconfirmed = False
            return _LF
        cr = seen.find(b"\r")
        if cr != -1 and cr + 1 < len(seen):
            self._lf_unconfirmed = False
            self._newline = _ANY_END
            return _ANY_END
        return _LF
