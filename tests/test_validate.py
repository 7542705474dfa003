"""Field rules from the API spec: every rule's accept side, reject side and boundaries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from kaleyra_async._limits import TYPES_BY_POD
from kaleyra_async._request_rules import validate_recipients
from kaleyra_async._validate import (
    validate_body,
    validate_flash,
    validate_ref_custom,
    validate_sender,
    validate_template_data,
    validate_template_id,
    validate_time,
    validate_type,
    validate_unicode,
)
from tests.conftest import numbers, rejects

NOW = datetime(2025, 1, 15, 10, 0, 0, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))


# -- type ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "pod", "expected"),
    [
        pytest.param("TXN", "IN", "TXN", id="in-txn"),
        pytest.param("txnd", "IN", "TXND", id="in-lower-case"),
        pytest.param(" mkt ", "in", "MKT", id="in-whitespace-and-lower-pod"),
        pytest.param("OTP", "IN", "OTP", id="in-otp"),
        pytest.param("DEFAULT", "SG", "DEFAULT", id="sg-default"),
        pytest.param("otp", "EU", "OTP", id="eu-otp"),
        pytest.param("Default", "NA", "DEFAULT", id="na-default"),
    ],
)
def test_type_accepts_the_pods_types(value: str, pod: str, expected: str) -> None:
    """A type the pod knows is accepted in any case and returned upper-case."""
    assert validate_type(value, pod=pod) == expected


@pytest.mark.parametrize(
    ("value", "pod"),
    [
        pytest.param("DEFAULT", "IN", id="default-on-in"),
        pytest.param("TXN", "SG", id="txn-on-sg"),
        pytest.param("MKT", "EU", id="mkt-on-eu"),
        pytest.param("", "IN", id="empty"),
        pytest.param("PROMO", "IN", id="unknown"),
    ],
)
def test_type_rejects_other_types(value: str, pod: str) -> None:
    """A type the pod does not know is refused with the allowed list."""
    error = rejects(lambda: validate_type(value, pod=pod), "type", "allowed_values")
    assert ", ".join(TYPES_BY_POD[pod]) in error.reason


# -- sender --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "pod", "expected"),
    [
        pytest.param("KLRHXA", "IN", "KLRHXA", id="in-dlt-header"),
        pytest.param("klrhxa", "IN", "KLRHXA", id="in-dlt-header-upper-cased"),
        pytest.param("919876543210", "IN", "919876543210", id="in-numeric"),
        pytest.param("1" * 15, "IN", "1" * 15, id="in-numeric-15"),
        pytest.param("Acme", "SG", "Acme", id="sg-alnum-case-kept"),
        pytest.param("A" * 11, "EU", "A" * 11, id="eu-alnum-11"),
        pytest.param("Shop24", "NA", "Shop24", id="na-letters-and-digits"),
        pytest.param("1" * 15, "SG", "1" * 15, id="sg-numeric-15"),
        pytest.param("+17000000004", "NA", "+17000000004", id="two-way-plus"),
        pytest.param("+919876543210", "IN", "+919876543210", id="in-plus"),
        pytest.param("Acme24", "IN", "Acme24", id="in-alnum-case-kept"),
        pytest.param("KLRHXAB", "IN", "KLRHXAB", id="in-7-letters"),
    ],
)
def test_sender_accepts_the_pages_shapes(value: str, pod: str, expected: str) -> None:
    """1-11 alphanumerics or up to 15 digits ("+" allowed) on every pod; a 6-letter sender on
    IN is a DLT header and is upper-cased (the DLT rule itself is _india's)."""
    assert validate_sender(value, pod=pod) == expected


@pytest.mark.parametrize(
    ("value", "pod"),
    [
        pytest.param("1" * 16, "IN", id="in-numeric-16"),
        pytest.param("+" + "1" * 16, "NA", id="plus-16-digits"),
        pytest.param("++1234", "NA", id="two-plus"),
        pytest.param("١٢٣٤", "SG", id="non-ascii-digits"),
        pytest.param("", "IN", id="in-empty"),
        pytest.param("A" * 12, "SG", id="sg-alnum-12"),
        pytest.param("Acme Shop", "SG", id="sg-space"),
        pytest.param("Acme-1", "EU", id="eu-dash"),
        pytest.param("1" * 16, "NA", id="na-numeric-16"),
        pytest.param("", "SG", id="sg-empty"),
    ],
)
def test_sender_rejects_other_shapes(value: str, pod: str) -> None:
    """A sender of another shape is refused."""
    rejects(lambda: validate_sender(value, pod=pod), "sender", "format")


# -- unicode and flash ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("AUTO", "AUTO", id="AUTO"),
        pytest.param("auto", "AUTO", id="auto-lower"),
        pytest.param("Auto", "AUTO", id="Auto"),
        pytest.param("0", "0", id="str-0"),
        pytest.param("1", "1", id="str-1"),
        pytest.param(0, "0", id="int-0"),
        pytest.param(1, "1", id="int-1"),
        pytest.param(True, "1", id="true"),
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
    ],
)
def test_unicode_accepts_auto_0_1(value: str | int | None, expected: str | None) -> None:
    """unicode is AUTO, 0 or 1; None and "" leave it out."""
    assert validate_unicode(value) == expected


@pytest.mark.parametrize("value", [pytest.param(v, id=repr(v)) for v in ["2", "yes", 2, -1, "on"]])
def test_unicode_rejects_other_values(value: str | int) -> None:
    """Any other unicode value is refused."""
    rejects(lambda: validate_unicode(value), "unicode", "allowed_values")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(True, True, id="bool-true"),
        pytest.param(False, False, id="bool-false"),
        pytest.param(1, True, id="int-1"),
        pytest.param(0, False, id="int-0"),
        pytest.param("1", True, id="str-1"),
        pytest.param("0", False, id="str-0"),
        pytest.param("true", True, id="true"),
        pytest.param("FALSE", False, id="FALSE"),
        pytest.param(" True ", True, id="padded"),
        pytest.param(None, False, id="none"),
        pytest.param("", False, id="empty"),
    ],
)
def test_flash_accepts_0_1_true_false(value: str | int | bool | None, expected: bool) -> None:
    """flash is 0/1 or true/false in any case; None and "" are not flash."""
    assert validate_flash(value) is expected


@pytest.mark.parametrize("value", [pytest.param(v, id=repr(v)) for v in ["yes", "2", 2, "on"]])
def test_flash_rejects_other_values(value: str | int) -> None:
    """Any other flash value is refused."""
    rejects(lambda: validate_flash(value), "flash", "allowed_values")


# -- time ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2025-01-15T10:15:00+00:00", "2025-01-15T10:15:00+00:00", id="exactly-15-min"),
        pytest.param("2025-01-15T10:15:00Z", "2025-01-15T10:15:00+00:00", id="z-suffix"),
        pytest.param("2025-01-15T15:45:00+05:30", "2025-01-15T15:45:00+05:30", id="offset-kept"),
        pytest.param("2025-01-15 10:30+00:00", "2025-01-15T10:30:00+00:00", id="space-no-seconds"),
        pytest.param("2025-01-15T10:20:00.75+00:00", "2025-01-15T10:20:00+00:00", id="fraction"),
        pytest.param(
            "2025-04-15T10:00:00+00:00", "2025-04-15T10:00:00+00:00", id="exactly-3-months"
        ),
        pytest.param("2025-04-15T15:30:00+05:30", "2025-04-15T15:30:00+05:30", id="3-months-ist"),
    ],
)
def test_time_accepts_the_window(value: str, expected: str) -> None:
    """From exactly 15 minutes to exactly 3 calendar months after now, with an offset."""
    assert validate_time(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        pytest.param("2025-01-15T10:14:59+00:00", "too_soon", id="14m59s"),
        pytest.param("2025-01-15T15:44:59+05:30", "too_soon", id="14m59s-ist"),
        pytest.param("2025-01-14T10:00:00+00:00", "too_soon", id="past"),
        pytest.param("2025-04-15T10:00:01+00:00", "too_late", id="3-months-and-1s"),
        pytest.param("2025-07-01T00:00:00+00:00", "too_late", id="6-months"),
        pytest.param("2025-01-15T12:00:00", "timezone_required", id="naive"),
        pytest.param("15-01-2025 12:00:00", "format", id="legacy-hexa-format"),
        pytest.param("tomorrow", "format", id="words"),
        pytest.param("", "format", id="empty"),
    ],
)
def test_time_rejects_outside_the_window(value: str, rule: str) -> None:
    """Earlier than 15 minutes, later than 3 months, naive or unparseable times are refused."""
    rejects(lambda: validate_time(value, now=NOW), "time", rule)


@pytest.mark.parametrize(
    ("now", "last_ok"),
    [
        pytest.param(
            datetime(2025, 11, 30, 8, 0, tzinfo=UTC), "2026-02-28T08:00:00+00:00", id="feb"
        ),
        pytest.param(
            datetime(2023, 11, 30, 8, 0, tzinfo=UTC), "2024-02-29T08:00:00+00:00", id="leap"
        ),
        pytest.param(
            datetime(2025, 10, 31, 8, 0, tzinfo=UTC), "2026-01-31T08:00:00+00:00", id="year"
        ),
    ],
)
def test_three_months_clamps_to_the_months_last_day(now: datetime, last_ok: str) -> None:
    """3 calendar months from the 30th/31st ends on the shorter month's last day."""
    assert validate_time(last_ok, now=now) == last_ok
    later = (datetime.fromisoformat(last_ok) + timedelta(seconds=1)).isoformat()
    rejects(lambda: validate_time(later, now=now), "time", "too_late")


def test_time_needs_an_aware_now() -> None:
    """A naive ``now`` is a programming error, not a validation failure."""
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_time("2025-01-15T12:00:00+00:00", now=datetime(2025, 1, 15))


# -- body and template ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "template_id"),
    [
        pytest.param("Hello", None, id="body"),
        pytest.param("x" * 4000, None, id="4000-chars"),
        pytest.param("😀" * 4000, None, id="4000-emoji"),
        pytest.param(None, "123456789012", id="template-only"),
        pytest.param("", "123456789012", id="empty-body-with-template"),
        pytest.param("a\tb\r\nc\fd", None, id="tab-newlines-form-feed"),
    ],
)
def test_body_accepts(body: str | None, template_id: str | None) -> None:
    """A body of at most 4000 characters, or no body with a template id."""
    validate_body(body, template_id=template_id)


@pytest.mark.parametrize(
    ("body", "template_id", "rule"),
    [
        pytest.param(None, None, "required", id="neither"),
        pytest.param("", None, "required", id="empty"),
        pytest.param("  \n", None, "required", id="whitespace"),
        pytest.param("x" * 4001, None, "max_length", id="4001-chars"),
        pytest.param("x" * 4001, "123456789012", "max_length", id="4001-with-template"),
        pytest.param("Hi\x00there", None, "control_character", id="nul"),
        pytest.param("Hi\x1b[31m", None, "control_character", id="escape"),
    ],
)
def test_body_rejects(body: str | None, template_id: str | None, rule: str) -> None:
    """No body without a template id, or more than 4000 characters (E401), is refused."""
    error = rejects(lambda: validate_body(body, template_id=template_id), "body", rule)
    if rule == "max_length":
        assert "E401" in error.reason


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("1" * 12, id="12-digits"),
        pytest.param("1" * 30, id="30-digits"),
        pytest.param("1107161234567890123", id="19-digit-dlt"),
    ],
)
def test_template_id_accepts_12_to_30_digits(value: str) -> None:
    """A template id is 12 to 30 digits."""
    assert validate_template_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("1" * 11, id="11-digits"),
        pytest.param("1" * 31, id="31-digits"),
        pytest.param("12345678901a", id="letter"),
        pytest.param("", id="empty"),
        pytest.param("١٢٣٤٥٦٧٨٩٠١٢", id="non-ascii-digits"),
    ],
)
def test_template_id_rejects_others(value: str) -> None:
    """Anything but 12 to 30 ASCII digits is refused."""
    rejects(lambda: validate_template_id(value), "template_id", "format")


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        pytest.param(
            {"name": "Asha", "otp": "1234"}, (("name", "Asha"), ("otp", "1234")), id="map"
        ),
        pytest.param([("a", "x" * 30)], (("a", "x" * 30),), id="30-chars"),
        pytest.param([("a", "")], (("a", ""),), id="empty-value"),
        pytest.param((), (), id="none"),
    ],
)
def test_template_data_accepts(
    pairs: dict[str, str] | Iterable[tuple[str, str]], expected: tuple[tuple[str, str], ...]
) -> None:
    """Template values of at most 30 characters, returned as ordered pairs."""
    assert validate_template_data(pairs) == expected


@pytest.mark.parametrize(
    ("pairs", "field", "rule"),
    [
        pytest.param([("name", "x" * 31)], "template_data.name", "max_length", id="31-chars"),
        pytest.param([("n", 5)], "template_data.n", "type", id="not-a-string"),
        pytest.param([("", "x")], "template_data", "name_required", id="no-name"),
        pytest.param([("a", "x"), ("a", "y")], "template_data", "duplicate", id="duplicate"),
    ],
)
def test_template_data_rejects(pairs: Any, field: str, rule: str) -> None:
    """A value over 30 characters is refused on template_data.<name>."""
    rejects(lambda: validate_template_data(pairs), field, rule)


# -- ref_custom ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["a"] * 5, ("a",) * 5, id="5-values"),
        pytest.param(["x" * 50], ("x" * 50,), id="50-chars"),
        pytest.param("campaign-7", ("campaign-7",), id="single-string-is-one-value"),
        pytest.param((), (), id="none"),
    ],
)
def test_ref_custom_accepts(values: Iterable[str] | str, expected: tuple[str, ...]) -> None:
    """At most 5 values of at most 50 characters."""
    assert validate_ref_custom(values) == expected


@pytest.mark.parametrize(
    ("values", "field", "rule"),
    [
        pytest.param(["a"] * 6, "ref_custom", "max_items", id="6-values"),
        pytest.param(["ok", "x" * 51], "ref_custom[1]", "max_length", id="51-chars"),
        pytest.param([3], "ref_custom[0]", "type", id="not-a-string"),
    ],
)
def test_ref_custom_rejects(values: Any, field: str, rule: str) -> None:
    """Six values, or a value over 50 characters, is refused."""
    rejects(lambda: validate_ref_custom(values), field, rule)


# -- recipients ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "message_type"),
    [
        pytest.param(1, "TXN", id="1"),
        pytest.param(100, "TXN", id="100"),
        pytest.param(100, "DEFAULT", id="100-default"),
        pytest.param(1, "OTP", id="otp-1"),
        pytest.param(1, "otp", id="otp-lower-case"),
    ],
)
def test_recipients_accepts(count: int, message_type: str) -> None:
    """1 to 100 recipients; exactly 1 for OTP."""
    validate_recipients(numbers(count), message_type=message_type)


@pytest.mark.parametrize(
    ("recipients", "message_type", "field", "rule"),
    [
        pytest.param([], "TXN", "to", "required", id="none"),
        pytest.param(numbers(101), "TXN", "to", "max_recipients", id="101"),
        pytest.param(numbers(2), "OTP", "to", "otp_single_recipient", id="otp-2"),
        pytest.param(numbers(2), "otp", "to", "otp_single_recipient", id="otp-2-lower-case"),
        pytest.param([], "OTP", "to", "required", id="otp-none"),
        pytest.param(["+919876543210", "9876543210"], "TXN", "to[1]", "format", id="not-e164"),
    ],
)
def test_recipients_rejects(
    recipients: list[str], message_type: str, field: str, rule: str
) -> None:
    """No recipients, more than 100, an OTP to several (E404) or a raw number is refused."""
    rejects(lambda: validate_recipients(recipients, message_type=message_type), field, rule)
