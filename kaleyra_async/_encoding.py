"""GSM-7 / UCS-2 detection and SMS segment counting (pure).

A body that uses only the GSM 03.38 default alphabet (3GPP TS 23.038, the basic table plus its
extension table) travels as GSM-7: 160 septets in a single SMS, 153 per part once it has to be
concatenated (the user data header takes the rest). An extension character (``€ ^ { } [ ] ~ \\ |``
and form feed) is an escape plus a character: 2 septets that must stay in one part. Any other
character forces UCS-2: 70 UTF-16 code units in one SMS, 67 per part; a character outside the
Basic Multilingual Plane (most emoji) is a surrogate pair of 2 units that must stay in one part.

Because a pair never straddles two parts, the number of parts is found by walking the body, not
by dividing its length. Division gives the same answer when the body has no 2-unit character,
so the walk only runs when it has one, and it steps over runs of 1-unit characters at once.

This runs once per distinct body (the pipeline caches by body), in O(n) with set look-ups.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

from ._models import Encoding

__all__ = [
    "GSM_BASIC",
    "GSM_EXTENSION",
    "SegmentInfo",
    "analyse",
]

#: The GSM 03.38 basic character set, in table order (0x00-0x7F) without the escape (0x1B).
#: Note what is *not* here: lower-case "ç" (only "Ç" is), "`", most accented letters (only
#: "à ä å è é ì ñ ò ö ø ù ü Ä Å Ç É Ñ Ö Ø Ü" are), and Greek letters other than the capitals
#: "Δ Φ Γ Λ Ω Π Ψ Σ Θ Ξ".
GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ" + "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
#: The extension table: each costs 2 septets (escape + character).
GSM_EXTENSION: Final = frozenset("\f^{}\\[~]|€")
_GSM: Final = GSM_BASIC | GSM_EXTENSION

# Regular expressions and str.find keep the per-character work in C.
_GSM_CLASS: Final = re.escape("".join(sorted(_GSM)))
_ALL_GSM: Final = re.compile(f"[{_GSM_CLASS}]*")
_ASTRAL: Final = re.compile("[\U00010000-\U0010ffff]")
_GSM_EXTENSION_CHARS: Final = tuple(sorted(GSM_EXTENSION))


GSM_SINGLE_SEPTETS: Final = 160
GSM_PART_SEPTETS: Final = 153
UCS2_SINGLE_UNITS: Final = 70
UCS2_PART_UNITS: Final = 67


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SegmentInfo:
    """How a body travels: its encoding, its length in that encoding and its number of parts."""

    encoding: Encoding
    #: Septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2.
    units: int
    #: SMS parts the body is sent (and billed) as; an empty body counts as 1.
    segments: int
    #: The distinct characters that forced UCS-2, in order of first appearance; () for GSM-7
    #: and for a message that asked for UCS-2 itself (``unicode="1"``).
    unicode_chars: tuple[str, ...] = ()


def analyse(body: str, *, unicode: str | None = None) -> SegmentInfo:
    """Return the encoding, length and number of SMS parts of ``body``.

    ``unicode`` is the message's setting: ``"1"`` forces UCS-2; ``"0"`` forces GSM-7, where a
    character outside GSM 03.38 is counted as one septet (the pages do not say what Kaleyra
    makes of it: we expect it replaced, not sent) and is not listed as forcing Unicode; ``None``
    or ``"AUTO"`` detects the encoding from the body. An empty body is 0 units in 1 segment (a
    template message with no body of its own still goes out as at least one SMS).
    """
    all_gsm = _ALL_GSM.fullmatch(body) is not None
    if unicode == "0" or (all_gsm and unicode != "1"):
        doubles = _find_all(body, _GSM_EXTENSION_CHARS)
        septets = len(body) + len(doubles)
        segments = _segments(len(body), septets, doubles, GSM_SINGLE_SEPTETS, GSM_PART_SEPTETS)
        return SegmentInfo(encoding="GSM-7", units=septets, segments=segments)
    units = len(body.encode("utf-16-le", "surrogatepass")) // 2
    doubles = [m.start() for m in _ASTRAL.finditer(body)] if units > len(body) else []
    segments = _segments(len(body), units, doubles, UCS2_SINGLE_UNITS, UCS2_PART_UNITS)
    forcing = () if unicode == "1" else tuple(ch for ch in dict.fromkeys(body) if ch not in _GSM)
    return SegmentInfo(encoding="UCS-2", units=units, segments=segments, unicode_chars=forcing)


def _find_all(body: str, chars: tuple[str, ...]) -> list[int]:
    """The sorted indexes in ``body`` of every occurrence of any of ``chars``."""
    positions: list[int] = []
    for ch in chars:
        i = body.find(ch)
        while i >= 0:
            positions.append(i)
            i = body.find(ch, i + 1)
    positions.sort()
    return positions


def _segments(length: int, units: int, doubles: list[int], single: int, part: int) -> int:
    """Parts needed for a body of ``length`` characters and ``units`` units.

    ``doubles`` are the indexes of the 2-unit characters, in order. The walk fills each part with
    the single-unit run up to the next 2-unit character, then that character if both its units
    still fit, so it costs O(parts + 2-unit characters), not O(length).
    """
    if units <= single:
        return 1
    if not doubles:
        return -(-units // part)
    segments = 0
    i = 0  # next character to place
    d = 0  # next entry of doubles
    while i < length:
        segments += 1
        room = part
        while i < length:
            next_double = doubles[d] if d < len(doubles) else length
            run = next_double - i  # single-unit characters before it
            if run >= room:
                i += room
                break
            i = next_double
            room -= run
            if i == length or room < 2:
                break  # done, or the pair does not fit: it starts the next part
            i += 1
            room -= 2
            d += 1
    return segments
