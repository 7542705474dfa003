"""Phone-number normalisation to E.164: accepted formats, the national-number rule, the cache."""

from __future__ import annotations

import pickle
import random

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaleyra_async import _phone
from kaleyra_async._exceptions import ValidationError
from kaleyra_async._phone import PhoneNormalizer, all_e164, is_e164


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("+919876543210", "+919876543210", id="e164"),
        pytest.param("  +919876543210\n", "+919876543210", id="surrounding-whitespace"),
        pytest.param("+91 98765 43210", "+919876543210", id="spaces"),
        pytest.param("+91-98765-43210", "+919876543210", id="dashes"),
        pytest.param("+91.98765.43210", "+919876543210", id="dots"),
        pytest.param("+1 (415) 555-2671", "+14155552671", id="parentheses"),
        pytest.param("(+91) 98765/43210", "+919876543210", id="plus-inside-parentheses"),
        pytest.param("+91\u00a098765\u201343210", "+919876543210", id="nbsp-and-en-dash"),
        pytest.param("0091 98765 43210", "+919876543210", id="00-international-prefix"),
        pytest.param("+44 (0)7911 123456", "+447911123456", id="trunk-zero-after-country-code"),
        pytest.param("+447911123456", "+447911123456", id="uk-mobile"),
        pytest.param("+6581234567", "+6581234567", id="singapore-mobile"),
        pytest.param("+390612345678", "+390612345678", id="italian-leading-zero-kept"),
    ],
)
def test_international_input_is_normalised(raw: str, expected: str) -> None:
    """International numbers in common human formats become E.164, with or without a default."""
    assert PhoneNormalizer()(raw) == expected
    assert PhoneNormalizer("+1")(raw) == expected


@pytest.mark.parametrize(
    ("prefix", "raw", "expected"),
    [
        pytest.param("+91", "9876543210", "+919876543210", id="in-national"),
        pytest.param("+91", "98765 43210", "+919876543210", id="in-national-formatted"),
        pytest.param("+91", "09876543210", "+919876543210", id="in-trunk-prefix"),
        pytest.param("+91", "919876543210", "+919876543210", id="in-country-code-without-plus"),
        pytest.param("+1", "(415) 555-2671", "+14155552671", id="us-national"),
        pytest.param("+1", "1 415 555 2671", "+14155552671", id="us-with-trunk-1"),
        pytest.param("+1", "011 44 7911 123456", "+447911123456", id="us-idd-011"),
        pytest.param("+44", "07911 123456", "+447911123456", id="uk-trunk-zero"),
        pytest.param("+65", "8123 4567", "+6581234567", id="sg-national"),
    ],
)
def test_national_numbers_take_the_default_prefix(prefix: str, raw: str, expected: str) -> None:
    """Without "+" or "00" a number is national and is read in the default prefix's country."""
    assert PhoneNormalizer(prefix)(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("9876543210", id="national"),
        pytest.param("919876543210", id="country-code-without-plus"),
        pytest.param("4155552671", id="us-national-that-is-also-a-swiss-prefix"),
        pytest.param("09876543210", id="trunk-prefix"),
    ],
)
def test_digits_without_plus_are_rejected_without_a_default_prefix(raw: str) -> None:
    """With no default prefix, digits without "+"/"00" are never guessed to be international."""
    with pytest.raises(ValidationError) as info:
        PhoneNormalizer()(raw)
    assert (info.value.field, info.value.rule) == ("to", "missing_country_code")
    assert "country code" in info.value.reason
    assert "default country prefix" in info.value.reason


@pytest.mark.parametrize(
    ("prefix", "raw", "rule"),
    [
        pytest.param(None, "", "empty", id="empty"),
        pytest.param(None, "   ", "empty", id="blank"),
        pytest.param(None, "abc", "not_a_number", id="letters"),
        pytest.param(None, "+91 98765 43210 ext. 5", "not_a_number", id="extension"),
        pytest.param(None, "tel:+919876543210", "not_a_number", id="tel-uri"),
        pytest.param(None, "1-800-FLOWERS", "not_a_number", id="vanity"),
        pytest.param(None, "+91 98765+43210", "not_a_number", id="plus-in-the-middle"),
        pytest.param(None, "+919876543210,+919876543211", "several_numbers", id="comma-list"),
        pytest.param(None, "+91 98765 43210 +91 98765 43211", "several_numbers", id="two-numbers"),
        pytest.param(None, "+91;98765", "not_a_number", id="one-number-with-a-semicolon"),
        pytest.param(None, "+９１９８７６５４３２１０", "not_a_number", id="fullwidth-digits"),
        pytest.param(None, "+" + "9" * 16, "too_long", id="16-digits"),
        pytest.param(None, "+9" + " " * 70, "too_long", id="longer-than-64-chars"),
        pytest.param(None, "+12345", "too_short", id="5-digits"),
        pytest.param(None, "+999123456789", "unknown_country_code", id="unassigned-code"),
        pytest.param(None, "+0123456789", "unknown_country_code", id="leading-zero"),
        pytest.param(None, "+91123456789", "invalid_number", id="invalid-for-india"),
        pytest.param(None, "+1 555 123 4567", "invalid_number", id="invalid-for-nanp"),
        pytest.param("+91", "12345", "invalid_number", id="short-national"),
        pytest.param("+91", "1", "too_short", id="one-digit-national"),
        pytest.param("+91", "9" * 19, "too_long", id="long-national"),
        pytest.param("+1", "011", "too_short", id="idd-alone"),
    ],
)
def test_rejections_name_field_and_rule(prefix: str | None, raw: str, rule: str) -> None:
    """Every rejection is a ValidationError on field "to" with a specific rule."""
    with pytest.raises(ValidationError) as info:
        PhoneNormalizer(prefix)(raw)
    assert (info.value.field, info.value.rule) == ("to", rule)
    assert str(info.value).startswith("to: ")


def test_invalid_number_reason_names_the_country() -> None:
    """The reason for an invalid number says which country code it was checked against."""
    with pytest.raises(ValidationError, match=r"\+91 \(IN\)"):
        PhoneNormalizer()("+91123456789")


@pytest.mark.parametrize(
    ("prefix", "rule"),
    [
        pytest.param("91", "format", id="no-plus"),
        pytest.param("+", "format", id="plus-only"),
        pytest.param("+9123", "format", id="four-digits"),
        pytest.param("+0", "format", id="zero"),
        pytest.param(" +91", "format", id="whitespace"),
        pytest.param("", "format", id="empty"),
        pytest.param("+999", "unknown_country_code", id="unassigned"),
        pytest.param("+800", "unknown_country_code", id="non-geographic"),
    ],
)
def test_bad_default_prefix_is_rejected(prefix: str, rule: str) -> None:
    """default_prefix must be "+" and 1-3 digits naming a country's code."""
    with pytest.raises(ValidationError) as info:
        PhoneNormalizer(prefix)
    assert (info.value.field, info.value.rule) == ("country_prefix", rule)


@pytest.mark.parametrize(
    ("prefix", "region"),
    [pytest.param("+91", "IN", id="in"), pytest.param("+1", "US", id="nanp"), (None, None)],
)
def test_default_prefix_sets_the_region(prefix: str | None, region: str | None) -> None:
    """The region national numbers are parsed in is the prefix's main country."""
    assert PhoneNormalizer(prefix).region == region


def test_negative_cache_size_is_refused() -> None:
    """cache_size must not be negative."""
    with pytest.raises(ValueError, match="cache_size"):
        PhoneNormalizer(cache_size=-1)


def test_repeated_numbers_hit_the_cache() -> None:
    """A repeated input is answered from the cache, failures included."""
    normalize = PhoneNormalizer("+91")
    for _ in range(3):
        assert normalize("98765 43210") == "+919876543210"
        with pytest.raises(ValidationError):
            normalize("12345")
    info = normalize.cache_info()
    assert (info.hits, info.misses, info.currsize) == (4, 2, 2)


def test_cache_is_bounded() -> None:
    """The cache never holds more than cache_size inputs."""
    normalize = PhoneNormalizer(cache_size=10)
    for n in range(50):
        normalize(f"+9198765{n:05d}")
    assert normalize.cache_info().currsize == 10


def test_cached_failure_raises_a_fresh_exception() -> None:
    """Each call raises a new ValidationError, so tracebacks do not pile up on one instance."""
    normalize = PhoneNormalizer()
    errors = []
    for _ in range(2):
        with pytest.raises(ValidationError) as info:
            normalize("abc")
        errors.append(info.value)
    assert errors[0] is not errors[1]
    assert pickle.loads(pickle.dumps(errors[0])).rule == "not_a_number"


def test_instances_have_separate_caches() -> None:
    """Two normalizers with different prefixes do not share answers."""
    assert PhoneNormalizer("+91")("9876543210") == "+919876543210"
    with pytest.raises(ValidationError):
        PhoneNormalizer()("9876543210")


def _library(raw: str, region: str | None) -> str | None:
    """The plain phonenumbers answer: parse, is_valid_number, format as E.164."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _ours(normalize: PhoneNormalizer, raw: str) -> str | None:
    try:
        return normalize(raw)
    except ValidationError:
        return None


@pytest.mark.parametrize(
    ("prefix", "region", "country_code"),
    [
        pytest.param("+91", "IN", "91", id="in"),
        pytest.param("+1", "US", "1", id="nanp"),
        pytest.param("+44", "GB", "44", id="gb"),
        pytest.param("+65", "SG", "65", id="sg"),
        pytest.param("+39", "IT", "39", id="it"),
    ],
)
def test_fast_paths_agree_with_phonenumbers(prefix: str, region: str, country_code: str) -> None:
    """On random digit strings, the fast paths give exactly phonenumbers' parse/validate/format."""
    rnd = random.Random(int(country_code))
    normalize = PhoneNormalizer(prefix, cache_size=0)
    checked = valid = 0
    for _ in range(1500):
        national = str(rnd.randint(6, 9)) + "".join(
            rnd.choice("0123456789") for _ in range(rnd.randint(6, 11))
        )
        for raw in ("+" + country_code + national, national, "0" + national):
            library = _library(raw, region)
            assert _ours(normalize, raw) == library, raw
            checked += 1
            valid += library is not None
    assert valid >= 100  # the sample holds many valid numbers, not only rejections
    assert checked - valid >= 100  # and many invalid ones


_COUNTRY_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_DIGITS = "0123456789"


def _reference(country_code: int, nsn: str) -> bool:
    """phonenumbers' is_valid_number on the number as written (after checking it is as written)."""
    number = _phone._as_written(country_code, nsn)
    assert phonenumbers.national_significant_number(number) == nsn
    return bool(phonenumbers.is_valid_number(number))


def _example_numbers(country_code: int) -> list[str]:
    """The metadata's example national numbers of every type, in every region of the code."""
    examples = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
            country_code, region
        )
        assert metadata is not None
        for desc in (
            metadata.general_desc,
            metadata.fixed_line,
            metadata.mobile,
            metadata.toll_free,
            metadata.premium_rate,
            metadata.shared_cost,
            metadata.personal_number,
            metadata.voip,
            metadata.pager,
            metadata.uan,
            metadata.voicemail,
            metadata.emergency,
            metadata.no_international_dialling,
        ):
            if desc is not None and desc.example_number:
                examples.append(desc.example_number)
    return examples


def _samples(country_code: int, rnd: random.Random) -> set[str]:
    """Examples, their neighbours, and random numbers (many sharing an example's first digits)."""
    examples = _example_numbers(country_code)
    samples = set(examples)
    for example in examples:
        width = len(example)
        samples |= {str(int(example) + delta).zfill(width) for delta in (-1, 1)}
        samples |= {example + digit for digit in _DIGITS}
        samples |= {example[:-1], example[1:], "0" + example}
    for _ in range(600):
        samples.add("".join(rnd.choices(_DIGITS, k=rnd.randint(4, 17))))
        if examples:
            example = rnd.choice(examples)
            keep = rnd.randint(1, len(example))
            length = max(keep, len(example) + rnd.choice((-1, 0, 0, 1)))
            samples.add(example[:keep] + "".join(rnd.choices(_DIGITS, k=length - keep)))
    samples.discard("")
    return samples


def test_every_country_code_is_compiled() -> None:
    """The fast validator covers every country code phonenumbers knows (none falls back)."""
    assert [cc for cc in _COUNTRY_CODES if _phone._validators(cc) is None] == []


def test_fast_validator_agrees_with_phonenumbers_for_every_country_code() -> None:
    """On examples of every type, their neighbours and random numbers: is_valid_number's answer."""
    rnd = random.Random(5)
    checked = valid = 0
    codes_with_valid = set()
    for country_code in _COUNTRY_CODES:
        for nsn in sorted(_samples(country_code, rnd)):
            expected = _reference(country_code, nsn)
            assert _phone._is_valid_as_written(country_code, nsn) is expected, (country_code, nsn)
            checked += 1
            if expected:
                valid += 1
                codes_with_valid.add(country_code)
    assert codes_with_valid == set(_COUNTRY_CODES)  # a valid number seen in every code
    assert valid >= 20_000  # many valid numbers ...
    assert checked - valid >= 100_000  # ... and many more invalid ones


@pytest.mark.parametrize(
    "mobile_pattern",
    [
        pytest.param(r"[4-9]\d{3,5}", id="mobile-differs"),
        # phonenumbers then skips mobile, though its lengths admit more than fixed line's
        pytest.param(r"[1-5]\d{3,6}", id="mobile-same-as-fixed-line"),
    ],
)
def test_compiled_region_decides_as_the_number_type_helper(mobile_pattern: str) -> None:
    """Type lengths, the general pattern and the same-mobile rule count as in phonenumbers.

    Synthetic metadata where each rule changes answers (the real metadata rarely shows it).
    """
    desc = phonenumbers.PhoneNumberDesc
    metadata = phonenumbers.PhoneMetadata(
        id="XX",
        country_code=999,
        register=False,
        general_desc=desc(national_number_pattern=r"[1-8]\d{3,5}", possible_length=(4, 5, 6)),
        fixed_line=desc(national_number_pattern=r"[1-5]\d{3,6}", possible_length=(4,)),
        mobile=desc(national_number_pattern=mobile_pattern, possible_length=(5, 6)),
        toll_free=desc(national_number_pattern=r"80\d{2,4}"),  # no lengths: the general ones
        voip=desc(national_number_pattern="", possible_length=(4,)),  # empty: matches nothing
    )
    by_length = _phone._compile_region(metadata)
    assert by_length is not None
    rnd = random.Random(7)
    outcomes = set()
    for length in range(1, 8):
        for head in range(100):
            for _ in range(3):
                nsn = (f"{head:02d}" + "".join(rnd.choices(_DIGITS, k=length)))[:length]
                pattern = by_length.get(len(nsn))
                ours = pattern is not None and pattern.fullmatch(nsn) is not None
                number_type = phonenumbers.phonenumberutil._number_type_helper(nsn, metadata)
                expected = number_type != phonenumbers.PhoneNumberType.UNKNOWN
                assert ours is expected, nsn
                outcomes.add((len(nsn), expected))
    assert {(4, True), (5, True), (6, True), (5, False), (7, False)} <= outcomes


def test_general_description_without_lengths_is_left_to_phonenumbers() -> None:
    """Metadata without the general possible lengths is not compiled (not seen in practice)."""
    metadata = phonenumbers.PhoneMetadata(
        id="XX",
        country_code=999,
        register=False,
        general_desc=phonenumbers.PhoneNumberDesc(national_number_pattern=r"\d{4}"),
        fixed_line=phonenumbers.PhoneNumberDesc(national_number_pattern=r"\d{4}"),
    )
    assert _phone._compile_region(metadata) is None


@given(
    country_code=st.sampled_from(_COUNTRY_CODES),
    nsn=st.text(alphabet=_DIGITS, min_size=1, max_size=17),
)
def test_fast_validator_agrees_with_phonenumbers_on_any_digits(country_code: int, nsn: str) -> None:
    """Any country code and any digit string: the fast validator gives is_valid_number's answer."""
    assert _phone._is_valid_as_written(country_code, nsn) is _reference(country_code, nsn)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("+919876543210", True, id="india"),
        pytest.param("+1234567", True, id="7-digits"),
        pytest.param("+123456789012345", True, id="15-digits"),
        pytest.param("+123456", False, id="6-digits"),
        pytest.param("+1234567890123456", False, id="16-digits"),
        pytest.param("919876543210", False, id="no-plus"),
        pytest.param("+0123456789", False, id="leading-zero"),
        pytest.param("+91 9876543210", False, id="space"),
        pytest.param("+919876543210\n", False, id="trailing-newline"),
        pytest.param("+٩١٩٨٧٦٥٤٣٢١٠", False, id="arabic-indic-digits"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_e164_is_a_shape_check(value: str, expected: bool) -> None:
    """is_e164 accepts "+" and 7-15 ASCII digits not starting with 0, nothing else."""
    assert is_e164(value) is expected


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        (["+919876543210"], True),
        (["+919876543210", "+14155550100", "+447700900123"], True),
        (["+919876543210", "919876543210"], False),
        (["+919876543210", ""], False),
        (["+0123456789"], False),
        # One item holding two numbers joins to a valid-looking list: the comma count catches it.
        (["+919876543210,+14155550100"], False),
        (["+919876543210", 919876543210], False),
    ],
)
def test_all_e164_answers_as_is_e164_for_every_item(numbers: list[object], expected: bool) -> None:
    assert all_e164(numbers) is expected
    assert expected == all(isinstance(n, str) and is_e164(n) for n in numbers)
