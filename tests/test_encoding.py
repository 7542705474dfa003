"""GSM-7 / UCS-2 detection and segment counting: hand-checked vectors, a reference walk, and
hypothesis properties against that walk."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaleyra_async._encoding import GSM_BASIC, GSM_EXTENSION, SegmentInfo, analyse

EMOJI = "😀"  # U+1F600: a surrogate pair in UTF-16


@pytest.mark.parametrize(
    ("body", "encoding", "units", "segments"),
    [
        pytest.param("", "GSM-7", 0, 1, id="empty-is-one-segment"),
        pytest.param("a" * 160, "GSM-7", 160, 1, id="gsm-160-single"),
        pytest.param("a" * 161, "GSM-7", 161, 2, id="gsm-161-two"),
        pytest.param("a" * 306, "GSM-7", 306, 2, id="gsm-306-two"),
        pytest.param("a" * 307, "GSM-7", 307, 3, id="gsm-307-three"),
        pytest.param("a" * 459, "GSM-7", 459, 3, id="gsm-459-three"),
        pytest.param("a" * 460, "GSM-7", 460, 4, id="gsm-460-four"),
        pytest.param("é" * 160, "GSM-7", 160, 1, id="gsm-accented-160-single"),
        pytest.param("ж" * 70, "UCS-2", 70, 1, id="ucs2-70-single"),
        pytest.param("ж" * 71, "UCS-2", 71, 2, id="ucs2-71-two"),
        pytest.param("ж" * 134, "UCS-2", 134, 2, id="ucs2-134-two"),
        pytest.param("ж" * 135, "UCS-2", 135, 3, id="ucs2-135-three"),
        pytest.param("a" * 159 + "€", "GSM-7", 161, 2, id="159-plain-plus-euro-is-161-septets"),
        pytest.param("a" * 158 + "€", "GSM-7", 160, 1, id="158-plain-plus-euro-fits-one"),
        pytest.param("€" * 80, "GSM-7", 160, 1, id="80-extension-chars-fit-one"),
        pytest.param("€" * 81, "GSM-7", 162, 2, id="81-extension-chars-two"),
        # 152 + 2 > 153: the escape pair moves whole to part 2, which then overflows into part 3;
        # dividing 306 septets by 153 would say 2.
        pytest.param("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3, id="euro-straddles-153"),
        pytest.param("a" * 151 + "€" + "a" * 153, "GSM-7", 306, 2, id="euro-ends-part-exactly"),
        pytest.param(EMOJI, "UCS-2", 2, 1, id="emoji-is-two-units"),
        pytest.param(EMOJI * 35, "UCS-2", 70, 1, id="35-emoji-fit-one"),
        pytest.param(EMOJI * 36, "UCS-2", 72, 2, id="36-emoji-two"),
        # 66 + 2 > 67: the surrogate pair moves whole to part 2; 134 / 67 would say 2.
        pytest.param("a" * 66 + EMOJI + "a" * 66, "UCS-2", 134, 3, id="emoji-straddles-67"),
        pytest.param("a" * 65 + EMOJI + "a" * 67, "UCS-2", 134, 2, id="emoji-ends-part-exactly"),
    ],
)
def test_analyse_vectors(body: str, encoding: str, units: int, segments: int) -> None:
    """Each vector has the hand-counted encoding, length and number of parts."""
    info = analyse(body)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)


def test_gsm_table_sizes() -> None:
    """The basic table has 127 characters (128 less the escape) and the extension table 10."""
    assert len(GSM_BASIC) == 127
    assert len(GSM_EXTENSION) == 10
    assert not GSM_BASIC & GSM_EXTENSION


@pytest.mark.parametrize(
    "char",
    [
        pytest.param(c, id=f"U+{ord(c):04X}")
        for c in "éùÇØÅÆßÉÄÖÑÜ§¿äöñüàΔΦΓΛΩΠΨΣΘΞ¡¤£¥èìòøåæ@$_\n\r"
    ],
)
def test_basic_table_characters_are_one_septet(char: str) -> None:
    """A character of the basic table keeps the body GSM-7 at 1 septet."""
    assert analyse("x" + char) == SegmentInfo(encoding="GSM-7", units=2, segments=1)


@pytest.mark.parametrize("char", [pytest.param(c, id=f"U+{ord(c):04X}") for c in "^{}\\[~]|€\f"])
def test_extension_characters_are_two_septets(char: str) -> None:
    """An extension-table character keeps the body GSM-7 but costs 2 septets."""
    assert analyse("x" + char) == SegmentInfo(encoding="GSM-7", units=3, segments=1)


@pytest.mark.parametrize(
    "char",
    [pytest.param(c, id=f"U+{ord(c):04X}") for c in "çáêíóúÃõ`\tαβЖअ\u00a0\x1b“”’…"],
)
def test_characters_outside_gsm_force_ucs2(char: str) -> None:
    """A character in neither table forces UCS-2 and is reported."""
    info = analyse("x" + char)
    assert info.encoding == "UCS-2"
    assert info.unicode_chars == (char,)
    assert info.units == 2


def test_unicode_chars_are_distinct_in_order_of_first_appearance() -> None:
    """unicode_chars lists each forcing character once, first seen first; GSM characters never."""
    info = analyse("Olá ç, é… ça" + EMOJI + "á")
    assert info.unicode_chars == ("á", "ç", "…", EMOJI)


def test_gsm_body_reports_no_unicode_chars() -> None:
    """A GSM-7 body with accented GSM letters has an empty unicode_chars."""
    info = analyse("Café à Zürich, 5€ [promo]")
    assert info.encoding == "GSM-7"
    assert info.unicode_chars == ()
    assert info.units == len("Café à Zürich, 5€ [promo]") + 3  # €, [ and ] are escaped


def test_segment_info_is_frozen() -> None:
    """SegmentInfo is an immutable value."""
    info = analyse("hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.segments = 2  # type: ignore[misc]


def _reference(body: str) -> tuple[str, int, int]:
    """A plain per-character walk, the definition the fast version must agree with."""
    gsm = all(c in GSM_BASIC or c in GSM_EXTENSION for c in body)
    if gsm:
        costs = [2 if c in GSM_EXTENSION else 1 for c in body]
        single, part = 160, 153
    else:
        costs = [2 if ord(c) > 0xFFFF else 1 for c in body]
        single, part = 70, 67
    units = sum(costs)
    if units <= single:
        return ("GSM-7" if gsm else "UCS-2", units, 1)
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, cost
        else:
            used += cost
    return ("GSM-7" if gsm else "UCS-2", units, segments)


@pytest.mark.parametrize("alphabet", ["gsm", "ucs2"])
def test_analyse_agrees_with_a_per_character_walk(alphabet: str) -> None:
    """On 2,000 random bodies with many 2-unit characters, analyse equals the reference walk."""
    rnd = random.Random(20240716)
    pool = "aé€{" if alphabet == "gsm" else "aж" + EMOJI
    for _ in range(2000):
        body = "".join(rnd.choice(pool) for _ in range(rnd.randint(0, 700)))
        info = analyse(body)
        assert (info.encoding, info.units, info.segments) == _reference(body), body


# -- properties (hypothesis) ----------------------------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None, database=None)
GSM_TEXT = st.text(alphabet=sorted(GSM_BASIC | GSM_EXTENSION), max_size=700)
ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(sorted(GSM_BASIC | GSM_EXTENSION)),
        st.sampled_from("çñ€éअ中ж"),
        st.sampled_from("😀🎉𝄞"),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=500,
)


@PROPERTY
@given(body=st.one_of(GSM_TEXT, ANY_TEXT))
def test_segment_counts_follow_the_gsm7_and_ucs2_rules(body: str) -> None:
    """Encoding, units and parts agree with a character-by-character packing of the body."""
    info = analyse(body)
    assert (info.encoding, info.units, info.segments) == _reference(body)
    forcing = [c for c in dict.fromkeys(body) if c not in GSM_BASIC and c not in GSM_EXTENSION]
    assert list(info.unicode_chars) == forcing


@PROPERTY
@given(body=st.one_of(GSM_TEXT, ANY_TEXT), more=st.one_of(GSM_TEXT, ANY_TEXT))
def test_a_longer_body_never_needs_fewer_segments(body: str, more: str) -> None:
    """Appending text never lowers the part count (nor turns UCS-2 back into GSM-7)."""
    short, long = analyse(body), analyse(body + more)
    assert long.segments >= short.segments
    assert not (short.encoding == "UCS-2" and long.encoding == "GSM-7")


def test_no_gsm_character_is_one_the_body_rules_refuse() -> None:
    """The preparer skips the control-character scan for a body analyse finds GSM-7: that is
    sound only while every GSM 03.38 character passes the body's rules."""
    from kaleyra_async._models import Message
    from kaleyra_async._validate import check_own_body

    message = Message(body="x", sender="KLRHXA", type="TXN")
    for char in sorted(GSM_BASIC | GSM_EXTENSION):
        check_own_body(message, f"a{char}b")  # raises for a refused character
    with pytest.raises(ValueError, match="control character"):
        check_own_body(message, "a\x1bb")  # ESC: the scan still runs without gsm_text
