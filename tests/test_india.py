"""India's DLT rules and the fidelity rules of a row: template id and header on +91 from the IN
pod, refs and ref_custom cells, callback profile per row, segments under a forced encoding."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from kaleyra_async._batching import PreparedRow
from kaleyra_async._config import MessageDefaults
from kaleyra_async._exceptions import ConfigError
from kaleyra_async._india import check_dlt, dlt_applies
from kaleyra_async._models import InputRow, Message, RowResult
from kaleyra_async._phone import PhoneNormalizer
from kaleyra_async._prepare import RowPlan, RowPreparer
from tests.conftest import rejects

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TEMPLATE = "1107160000000000001"


def preparer(pod: str = "IN", header: tuple[str, ...] = ("to",), **defaults: object) -> RowPreparer:
    fields: dict[object, object] = {"body": "Hi", "sender": "KLRHXA", **defaults}
    plan = RowPlan(pod=pod, defaults=MessageDefaults(**fields))  # type: ignore[arg-type]
    prep = RowPreparer(plan, normalize=PhoneNormalizer(None), now=NOW)
    prep.check_header(header)
    return prep


def prepared(prep: RowPreparer, **fields: str) -> PreparedRow:
    out = prep.prepare(InputRow(1, fields))
    assert isinstance(out, PreparedRow), out
    return out


def invalid(prep: RowPreparer, **fields: str) -> RowResult:
    out = prep.prepare(InputRow(1, fields))
    assert isinstance(out, RowResult), out
    return out


# -- the rule itself ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod", "number", "applies"),
    [
        ("IN", "+919876543210", True),
        ("IN", "+6591234567", False),
        ("SG", "+919876543210", False),
        ("NA", "+12025550123", False),
    ],
)
def test_dlt_applies_to_indian_numbers_from_the_in_pod(
    pod: str, number: str, applies: bool
) -> None:
    """Only the IN pod sending to +91 is bound by DLT."""
    assert dlt_applies(pod, number) is applies


def test_dlt_needs_a_template_id() -> None:
    """A message without a template id is refused, naming the DLT rule."""
    error = rejects(lambda: check_dlt(Message(body="Hi", sender="KLRHXA")), "template_id",
                    "missing_template_id")  # fmt: skip
    assert "DLT" in str(error)


@pytest.mark.parametrize("sender", ["Acme", "KLRHXA1", "KLR1XA"])
def test_dlt_needs_a_six_letter_header(sender: str) -> None:
    """A sender that is not 6 letters (nor a number) cannot reach an Indian number."""
    message = Message(body="Hi", sender=sender, template_id=TEMPLATE)
    rejects(lambda: check_dlt(message), "sender", "dlt_header")


@pytest.mark.parametrize("sender", ["KLRHXA", "919876543210", "+17000000004"])
def test_dlt_accepts_a_header_or_a_number(sender: str) -> None:
    """A 6-letter header or a numeric sender with a template id passes."""
    check_dlt(Message(body="Hi", sender=sender, template_id=TEMPLATE))


# -- rows -----------------------------------------------------------------------------------------


def test_in_pod_without_any_template_source_stops_before_any_row() -> None:
    """No --template-id, config value nor column on the IN pod: one ConfigError naming DLT."""
    with pytest.raises(ConfigError, match="DLT"):
        preparer("IN")


def test_in_pod_row_without_template_id_is_invalid() -> None:
    """A template_id column that is empty on one row: that row is missing_template_id."""
    prep = preparer("IN", header=("to", "template_id"))
    result = invalid(prep, to="+919876543210", template_id="")
    assert (result.status, result.error_code) == ("invalid", "missing_template_id")
    assert prepared(prep, to="+919876543210", template_id=TEMPLATE).message.template_id == TEMPLATE


def test_in_pod_row_to_another_country_needs_no_template() -> None:
    """DLT binds Indian numbers only: a +65 row from the IN pod goes without a template."""
    prep = preparer("IN", header=("to", "template_id", "sender"))
    row = prepared(prep, to="+6591234567", template_id="", sender="Acme")
    assert row.message.sender == "Acme"
    assert invalid(prep, to="+919876543210", template_id=TEMPLATE, sender="Acme").error_code == (
        "invalid_dlt_sender"
    )


def test_no_sender_anywhere_stops_before_any_row() -> None:
    """Without a sender in the options, config or columns: one ConfigError."""
    with pytest.raises(ConfigError, match="no sender"):
        preparer("SG", sender=None)


def test_body_with_template_data_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """A body makes template data moot: one warning at the header, not one per row."""
    with caplog.at_level(logging.WARNING):
        preparer("SG", header=("to", "code"), template_data_columns=("code",))
    assert [r.message for r in caplog.records if "template" in r.message].__len__() == 1


def test_ref_columns_reach_the_message() -> None:
    """ref, ref1, ref2, callback_profile_id and ref_custom columns are per-row fields."""
    header = ("to", "ref", "ref1", "ref2", "callback_profile_id", "ref_custom")
    prep = preparer("SG", header=header)
    row = prepared(prep, to="+6591234567", ref="run-1", ref1="a", ref2="b",
                   callback_profile_id="cb7", ref_custom='["John","Doe"]')  # fmt: skip
    m = row.message
    assert (m.ref, m.ref1, m.ref2, m.callback_profile_id, m.ref_custom) == (
        "run-1", "a", "b", "cb7", ("John", "Doe"),
    )  # fmt: skip
    single = prepared(prep, to="+6591234568", ref="", ref1="", ref2="", callback_profile_id="",
                      ref_custom="single")  # fmt: skip
    assert (single.message.ref_custom, single.message.callback_profile_id) == (("single",), None)


@pytest.mark.parametrize(
    ("cell", "field", "code"),
    [
        ("['John','Doe']", "ref_custom", "invalid_ref_custom"),
        ("[1, 2]", "ref_custom", "invalid_ref_custom"),
    ],
)
def test_bad_ref_custom_cell_is_invalid(cell: str, field: str, code: str) -> None:
    """The page's own "['John','Doe']" is not JSON: the row is invalid and says so."""
    prep = preparer("SG", header=("to", "ref_custom"))
    result = invalid(prep, to="+6591234567", ref_custom=cell)
    assert result.error_code == code
    assert field in (result.error or "")


def test_long_ref_is_invalid() -> None:
    """ref is at most 255 characters."""
    prep = preparer("SG", header=("to", "ref"))
    assert prepared(prep, to="+6591234567", ref="r" * 255).message.ref == "r" * 255
    assert invalid(prep, to="+6591234567", ref="r" * 256).error_code == "invalid_ref"


# -- segments follow the message's unicode setting -------------------------------------------------


@pytest.mark.parametrize(
    ("unicode", "body", "encoding", "segments", "forcing"),
    [
        (None, "A" * 100, "GSM-7", 1, ()),
        ("1", "A" * 100, "UCS-2", 2, ()),
        ("AUTO", "Ж" * 10, "UCS-2", 1, ("Ж",)),
        ("0", "Ж" * 160, "GSM-7", 1, ()),
        ("0", "Ж" * 161, "GSM-7", 2, ()),
    ],
)
def test_segments_follow_the_unicode_setting(
    unicode: str | None, body: str, encoding: str, segments: int, forcing: tuple[str, ...]
) -> None:
    """unicode=1 is UCS-2 even for plain text; unicode=0 counts every character as a septet and
    lists nothing as forcing Unicode."""
    prep = preparer("SG", body=body, unicode=unicode)
    row = prepared(prep, to="+6591234567")
    assert (row.encoding, row.segments, row.unicode_chars) == (encoding, segments, forcing)
