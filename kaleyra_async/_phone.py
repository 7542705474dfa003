"""Phone-number normalisation to E.164, validated with ``phonenumbers`` and cached (pure).

The one rule for numbers written without a country code
--------------------------------------------------------

A number is *international* when it starts with ``+`` or ``00`` (after spaces, dashes, dots,
slashes and parentheses are removed). Every other number is *national*:

* with a default prefix configured (``PhoneNormalizer("+91")``), it is parsed as a number of that
  prefix's country, so ``98765 43210``, ``098765 43210`` (trunk prefix) and ``919876543210`` (the
  country code without ``+``, which phonenumbers recognises for the default country only) all
  become ``+919876543210``;
* without a default prefix it is rejected (rule ``missing_country_code``).

Digits without ``+`` are never guessed to be international: ``4155552671`` read as international
is ``+41 55 552 67 1`` (Switzerland), and a guess that happens to be valid would send the SMS to
the wrong country. Kaleyra echoes recipients without ``+``; put the ``+`` back before feeding
them in again.

Speed
-----

Most bulk input is already E.164, so ``parse`` is skipped where it cannot change the answer:
the country code is split off with phonenumbers' own country-code table and the number, exactly
as written, is checked against ``is_valid_number``'s rules, compiled once per country code into
one regex per number length (``_validators``; tests/test_phone.py compares the decision with
``is_valid_number`` across every country code). If it is valid, the input already *is* its
E.164 form. A national number is first tried the same way with the default prefix in front.
Only input that fails this (``+44 (0)7911 123456``, ``09876543210``: a trunk prefix that
``parse`` removes) pays for ``parse``. Results, failures included, are cached per normalizer in
a bounded LRU of 4,096 inputs: enough for numbers that repeat close together (OTP traffic,
duplicated rows), small enough to keep a million distinct numbers from growing memory.

"Valid" is phonenumbers' ``is_valid_number``: fixed-line numbers pass too; whether a number can
receive SMS is only known from its delivery report.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Final, NamedTuple

import phonenumbers

from ._exceptions import ValidationError

__all__ = ["PhoneNormalizer", "all_e164", "is_e164"]

# phonenumbers otherwise looks up (through re's 512-entry cache) one metadata pattern per number
# type on every validation; the patterns come from fixed metadata, so this cache is bounded.
# New in phonenumbers 9.0.43.
if hasattr(phonenumbers, "enable_pattern_cache"):
    phonenumbers.enable_pattern_cache()

_E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_E164_LIST: Final = re.compile(r"\+[1-9][0-9]{6,14}(?:,\+[1-9][0-9]{6,14})*")
_PLUS_DIGITS: Final = re.compile(r"\+[0-9]+")
_MAYBE_PLUS_DIGITS: Final = re.compile(r"\+?[0-9]+")
_PREFIX: Final = re.compile(r"\+[1-9][0-9]{0,2}")
# Formatting people type into numbers: whitespace (incl. no-break spaces), dashes, dots, slashes
# and parentheses. Anything else (letters, "ext.", "tel:") makes the input not a number.
_DROP_FORMATTING: Final = str.maketrans(
    "", "", " \t-./()\u00a0\u2007\u202f\u2010\u2011\u2012\u2013\u2014\u2212"
)
#: Longer input is rejected before any work (and before it can occupy the cache).
_MAX_INPUT_CHARS: Final = 64
#: E.164 allows at most 15 digits; the shortest valid numbers (Niue, St Helena) have 7.
_MAX_DIGITS: Final = 15
_MIN_DIGITS: Final = 7
_SEPARATORS: Final = re.compile(r"[,;|]|\s+(?=\+)")
_DIGIT: Final = re.compile(r"[0-9]")
_COUNTRY_CODES: Final = frozenset(str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


class _Rejection(NamedTuple):
    """A cached failure: cheap to keep, turned into a fresh ValidationError on every call."""

    rule: str
    reason: str


_EMPTY: Final = _Rejection("empty", "is empty")
_TOO_LONG_INPUT: Final = _Rejection(
    "too_long", f"is longer than {_MAX_INPUT_CHARS} characters: not a phone number"
)
_NOT_A_NUMBER: Final = _Rejection(
    "not_a_number",
    "is not a phone number: only digits, a leading + and spaces, dashes, dots, slashes or "
    "parentheses are allowed",
)
_MISSING_CC: Final = _Rejection(
    "missing_country_code",
    "has no country code: write it as +<country code><number> (or 00<country code><number>), "
    "or configure a default country prefix",
)
_SEVERAL: Final = _Rejection(
    "several_numbers",
    "holds more than one number: put one number per row (an OTP goes to exactly one number)",
)
_TOO_LONG: Final = _Rejection("too_long", f"has more than {_MAX_DIGITS} digits")
_TOO_SHORT: Final = _Rejection("too_short", "has too few digits to be a phone number")
_UNKNOWN_CC: Final = _Rejection("unknown_country_code", "does not start with a known country code")


@functools.cache
def _invalid_for(country_code: int) -> _Rejection:
    """One shared rejection per country code, so cached failures cost no extra strings."""
    region = phonenumbers.region_code_for_country_code(country_code)
    return _Rejection("invalid_number", f"is not a valid number for +{country_code} ({region})")


def is_e164(s: str) -> bool:
    """Return True if ``s`` has the shape of an E.164 number: ``+``, then 7 to 15 digits.

    A shape check only (no country or length rules); use :class:`PhoneNormalizer` to validate.
    """
    return _E164.fullmatch(s) is not None


def all_e164(numbers: Sequence[object]) -> bool:
    """Return True if every item is a str with the shape of :func:`is_e164` (one regex match)."""
    try:
        joined = ",".join(numbers)  # type: ignore[arg-type]
    except TypeError:  # an item that is not a str
        return False
    # A comma inside an item would add one: the count keeps items and commas in step.
    return joined.count(",") == len(numbers) - 1 and _E164_LIST.fullmatch(joined) is not None


class PhoneNormalizer:
    """Turns phone numbers as people write them into E.164, or says why it cannot.

    Accepted: ``+919876543210``, ``+91 98765-43210``, ``+1 (415) 555-2671``, ``0091 98765
    43210`` and, with a default prefix, national numbers (see the module docstring for the rule).
    Rejected: empty input, letters or extensions, numbers without a country code when no default
    prefix is configured, numbers phonenumbers does not consider valid for their country.

    One instance per run; it keeps an LRU cache of ``cache_size`` inputs (successes and failures),
    about 170 bytes each. Thread-safe.

    Args:
        default_prefix: the country prefix for national numbers, ``"+"`` and 1-3 digits
            (``"+91"``); None rejects national numbers.
        cache_size: how many distinct inputs to remember; 0 disables the cache.

    Raises:
        ValidationError: on field ``country_prefix`` if ``default_prefix`` is malformed or not the
            code of a country.
    """

    __slots__ = ("_lookup", "default_prefix", "region")

    def __init__(self, default_prefix: str | None = None, *, cache_size: int = 4096) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self.default_prefix = default_prefix
        #: The region national numbers are parsed in ("IN" for "+91"), or None.
        self.region = None if default_prefix is None else _region_for_prefix(default_prefix)
        region = self.region

        def normalize(raw: str) -> str | _Rejection:
            return _normalize(raw, default_prefix, region)

        self._lookup = functools.lru_cache(maxsize=cache_size)(normalize)

    def __call__(self, raw: str) -> str:
        """Return ``raw`` as an E.164 number (``"+919876543210"``).

        Raises:
            ValidationError: on field ``to``; ``rule`` is one of ``empty``, ``too_long``,
                ``not_a_number``, ``several_numbers``, ``missing_country_code``, ``too_short``,
                ``unknown_country_code``, ``invalid_number``.
        """
        if len(raw) > _MAX_INPUT_CHARS:
            raise ValidationError("to", _TOO_LONG_INPUT.rule, _TOO_LONG_INPUT.reason)
        result = self._lookup(raw)
        if isinstance(result, str):
            return result
        # A new exception each time: re-raising one cached instance would grow its traceback.
        raise ValidationError("to", result.rule, result.reason)

    def cache_info(self) -> functools._CacheInfo:
        """Hits, misses and size of the cache (for tests and metrics)."""
        return self._lookup.cache_info()

    def __repr__(self) -> str:
        return f"PhoneNormalizer({self.default_prefix!r})"


def _region_for_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or _PREFIX.fullmatch(prefix) is None:
        raise ValidationError(
            "country_prefix", "format", f"{prefix!r} is not '+' followed by 1-3 digits, e.g. '+91'"
        )
    region = phonenumbers.region_code_for_country_code(int(prefix[1:]))
    if region not in phonenumbers.SUPPORTED_REGIONS:  # "ZZ": unassigned, "001": non-geographic
        raise ValidationError(
            "country_prefix",
            "unknown_country_code",
            f"{prefix!r} is not the country code of a country",
        )
    return region


def _normalize(raw: str, prefix: str | None, region: str | None) -> str | _Rejection:
    text = raw.strip()
    if not text:
        return _EMPTY
    if _PLUS_DIGITS.fullmatch(text) is None:
        text = text.translate(_DROP_FORMATTING)
        if text.startswith("00"):
            text = "+" + text[2:]
        if _MAYBE_PLUS_DIGITS.fullmatch(text) is None:
            return _SEVERAL if _is_several(raw) else _NOT_A_NUMBER
    if text[0] == "+":
        return _international(text)
    if prefix is None or region is None:
        return _MISSING_CC
    return _national(text, prefix, region)


def _is_several(raw: str) -> bool:
    """Two or more things that look like numbers, separated by , ; | or a space before a +."""
    parts = _SEPARATORS.split(raw)
    return sum(len(_DIGIT.findall(part)) >= _MIN_DIGITS for part in parts) >= 2


def _international(text: str) -> str | _Rejection:
    """``text`` is "+" and ASCII digits."""
    split = _split(text)
    if isinstance(split, _Rejection):
        return split
    if _is_valid_as_written(*split):
        return text  # "+", country code and national significant number: already E.164
    # Not valid as written; parse() also removes a trunk prefix written after the country code
    # ("+44 (0)7911 123456"), so give it a chance before rejecting.
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return _invalid_for(split[0])
    if phonenumbers.is_valid_number(parsed):
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return _invalid_for(split[0])


def _national(text: str, prefix: str, region: str) -> str | _Rejection:
    """``text`` is ASCII digits, read as a number of ``region``."""
    if len(text) > _MAX_DIGITS + 3:  # room for a trunk or international prefix
        return _TOO_LONG
    # Most national input is the number without its country code: try that first, as it is
    # three times cheaper than parse().
    candidate = prefix + text
    split = _split(candidate)
    if not isinstance(split, _Rejection) and _is_valid_as_written(*split):
        return candidate
    # Otherwise let phonenumbers read it the region's way: a trunk prefix ("0..."), the country
    # code without "+" ("91..."), or the region's international prefix ("011..." in the US).
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.TOO_LONG:
            return _TOO_LONG
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            return _UNKNOWN_CC  # the region's international prefix followed by no country code
        return _TOO_SHORT
    if not phonenumbers.is_valid_number(number):
        return _invalid_for(number.country_code)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _split(text: str) -> tuple[int, str] | _Rejection:
    """Split "+<digits>" into its country code and national significant number."""
    digits = len(text) - 1
    if digits > _MAX_DIGITS:
        return _TOO_LONG
    if digits < _MIN_DIGITS:
        return _TOO_SHORT
    # Country codes are prefix-free, so at most one of the three candidates is a code.
    for cc_len in (1, 2, 3):
        if text[1 : 1 + cc_len] in _COUNTRY_CODES:
            return int(text[1 : 1 + cc_len]), text[1 + cc_len :]
    return _UNKNOWN_CC


def _is_valid_as_written(country_code: int, nsn: str) -> bool:
    """phonenumbers' is_valid_number on the number exactly as written, without parse().

    ``nsn`` is ASCII digits. Uses the country code's precompiled patterns (``_validators``): the
    same decision as phonenumbers; tests/test_phone.py compares the two across every country
    code.
    """
    regions = _validators(country_code)
    if regions is None:
        return _is_valid_by_phonenumbers(country_code, nsn)
    # region_code_for_number: the first region whose leading digits start the number, or that
    # has no leading digits and in which the number is valid; the answer is validity there.
    for leading_digits, by_length in regions:
        pattern = by_length.get(len(nsn))
        valid = pattern is not None and pattern.fullmatch(nsn) is not None
        if leading_digits is None:
            if valid:
                return True
        elif leading_digits.match(nsn) is not None:
            return valid
    return False


def _is_valid_by_phonenumbers(country_code: int, nsn: str) -> bool:
    """phonenumbers' own is_valid_number on the number as written."""
    return bool(phonenumbers.is_valid_number(_as_written(country_code, nsn)))


def _as_written(country_code: int, nsn: str) -> phonenumbers.PhoneNumber:
    """The PhoneNumber parse() would build: its national significant number is ``nsn``."""
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(nsn))
    if len(nsn) > 1 and nsn[0] == "0":  # record leading zeros the way parse() does (Italy, ...)
        zeros = len(nsn) - len(nsn.lstrip("0"))
        number.italian_leading_zero = True
        number.number_of_leading_zeros = min(zeros, len(nsn) - 1)
    return number


class _Region(NamedTuple):
    """One region's share of a country code, compiled for ``_is_valid_as_written``."""

    #: Matched at the start of the number to pick this region among those sharing a code (as
    #: region_code_for_number does); None: the region is picked only if the number is valid in it.
    leading_digits: re.Pattern[str] | None
    #: By length of the national significant number: one pattern whose fullmatch is the region's
    #: validity at that length. Lengths not here are never valid.
    by_length: dict[int, re.Pattern[str]]


# The number types _number_type_helper tries: a number matching the general description is valid
# if it matches one of these (mobile too, unless its pattern is the fixed-line one). Which type
# matches does not matter, only whether one does, so the commonest go first in the alternation.
_TYPE_DESCS: Final = (
    "fixed_line",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)


@functools.cache
def _validators(country_code: int) -> tuple[_Region, ...] | None:
    """The compiled validity rules of ``country_code``, or None to leave it to phonenumbers.

    Mirrors is_valid_number -> region_code_for_number -> is_valid_number_for_region ->
    _number_type_helper. Metadata it does not expect (missing, or a region with another code,
    or a general description without possible lengths) is left to phonenumbers rather than
    guessed. Compiled on first use of each code.
    """
    region_codes = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not region_codes:
        return None
    single = len(region_codes) == 1
    regions = []
    for region_code in region_codes:
        if not single and region_code == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
            return None  # region_code_for_number would skip it; never happens in the metadata
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
            country_code, region_code
        )
        if metadata is None or (
            region_code != phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
            and metadata.country_code != country_code
        ):
            return None
        by_length = _compile_region(metadata)
        if by_length is None:
            return None
        # With a single region, region_code_for_number picks it without looking at the number.
        leading = None if single or metadata.leading_digits is None else metadata.leading_digits
        regions.append(_Region(None if leading is None else re.compile(leading), by_length))
    return tuple(regions)


def _compile_region(metadata: phonenumbers.PhoneMetadata) -> dict[int, re.Pattern[str]] | None:
    """Per length: general pattern AND (any type pattern whose possible lengths admit it)."""
    general = metadata.general_desc
    if general is None or not general.possible_length or not general.national_number_pattern:
        return None
    descs = [getattr(metadata, name) for name in _TYPE_DESCS]
    if not metadata.same_mobile_and_fixed_line_pattern:
        descs.insert(0, metadata.mobile)
    by_length = {}
    for length in general.possible_length:
        # _is_number_matching_desc: a desc without possible lengths admits every length; an
        # empty pattern matches nothing. (Its match-then-fullmatch is fullmatch.)
        alternatives = [
            f"(?:{desc.national_number_pattern})"
            for desc in descs
            if desc is not None
            and desc.national_number_pattern
            and (not desc.possible_length or length in desc.possible_length)
        ]
        if alternatives:
            # The lookahead requires the general pattern to match the whole number too.
            general_whole = f"(?=(?:{general.national_number_pattern})\\Z)"
            by_length[length] = re.compile(general_whole + "(?:" + "|".join(alternatives) + ")")
    return by_length
