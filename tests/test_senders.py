"""Sender-ID rules for the create and delete calls: accept side, reject side and boundaries."""

from __future__ import annotations

import pytest

from kaleyra_async._limits import MAX_SENDER_IDS_PER_CREATE
from kaleyra_async._models import SenderId
from kaleyra_async._request_rules import chunked
from kaleyra_async._senders import validate_sender_id, validate_sender_ids, validate_sender_names
from tests.conftest import rejects

#: What an Indian sender ID needs beside its name: a description and the DLT entity id.
ENTITY = "1" * 12


def india(sender: str, **fields: str) -> SenderId:
    return SenderId(sender, **{"description": "Alerts", "entity_id": ENTITY, **fields})


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param(
            SenderId("adpaia", " Alerts ", " IN ", " 1107161234567890123 "),
            SenderId("ADPAIA", "Alerts", "in", "1107161234567890123"),
            id="india-normalised",
        ),
        pytest.param(india("123456"), india("123456"), id="india-6-digits"),
        pytest.param(india("AD1AIA"), india("AD1AIA"), id="india-letters-and-digits"),
        pytest.param(SenderId("Acme", "Alerts", iso_code="SG"),
                     SenderId("Acme", "Alerts", iso_code="sg"), id="sg-no-entity"),
        pytest.param(SenderId("Acme", "Alerts", iso_code="sg", entity_id=""),
                     SenderId("Acme", "Alerts", iso_code="sg"), id="empty-entity-elsewhere"),
        pytest.param(india("A" * 11, iso_code="gb"), india("A" * 11, iso_code="gb"),
                     id="11-chars-12-digit-entity"),
        pytest.param(india("ADPAIA", entity_id="1" * 30), india("ADPAIA", entity_id="1" * 30),
                     id="30-digit-entity"),
        pytest.param(SenderId("+17000000004", "Two-way", iso_code="us"),
                     SenderId("+17000000004", "Two-way", iso_code="us"), id="two-way-number"),
    ],
)  # fmt: skip
def test_sender_id_accepts(item: SenderId, expected: SenderId) -> None:
    """India: 6 letters and digits, a description and the entity id; elsewhere 1-11
    alphanumerics or a number and a description; entity id 12-30 digits."""
    assert validate_sender_id(item, index=0) == expected


@pytest.mark.parametrize(
    ("item", "field", "rule"),
    [
        pytest.param(india("ADPAI"), "senders[3].sender", "format", id="india-5"),
        pytest.param(india("ADPAIAX"), "senders[3].sender", "format", id="india-7"),
        pytest.param(india(""), "senders[3].sender", "format", id="empty"),
        pytest.param(india("A" * 12, iso_code="sg"), "senders[3].sender", "format", id="12"),
        pytest.param(india("Acme Co", iso_code="sg"), "senders[3].sender", "format", id="space"),
        pytest.param(india("ADPAIA", iso_code="ind"), "senders[3].iso_code", "format", id="ind"),
        pytest.param(india("ADPAIA", iso_code=""), "senders[3].iso_code", "format", id="no-iso"),
        pytest.param(india("ADPAIA", description=" "), "senders[3].description", "required",
                     id="blank-description"),
        pytest.param(SenderId("ADPAIA"), "senders[3].description", "required",
                     id="no-description"),
        pytest.param(india("ADPAIA", entity_id=""), "senders[3].entity_id", "required",
                     id="india-no-entity"),
        pytest.param(india("ADPAIA", entity_id="1" * 11), "senders[3].entity_id", "format",
                     id="entity-11"),
        pytest.param(india("ADPAIA", entity_id="1" * 31), "senders[3].entity_id", "format",
                     id="entity-31"),
        pytest.param(india("ADPAIA", entity_id="11071612345678901x"), "senders[3].entity_id",
                     "format", id="entity-letter"),
    ],
)  # fmt: skip
def test_sender_id_rejects(item: SenderId, field: str, rule: str) -> None:
    """Errors name the item's index and field."""
    rejects(lambda: validate_sender_id(item, index=3), field, rule)


def test_sender_ids_validates_each_and_keeps_order() -> None:
    """validate_sender_ids normalises every item, in order."""
    items = [india("adpaia"), SenderId("Shop", "Alerts", iso_code="SG")]
    assert validate_sender_ids(items) == [
        india("ADPAIA"),
        SenderId("Shop", "Alerts", iso_code="sg"),
    ]


@pytest.mark.parametrize(
    ("items", "field", "rule"),
    [
        pytest.param([], "senders", "required", id="empty"),
        pytest.param([india("ADPAIA"), india("adpaia")], "senders[1].sender", "duplicate",
                     id="duplicate-after-normalising"),
        pytest.param([india("ADPAIA"), india("BAD")], "senders[1].sender", "format",
                     id="second-bad"),
    ],
)  # fmt: skip
def test_sender_ids_rejects(items: list[SenderId], field: str, rule: str) -> None:
    """No items, a repeated sender or a bad item is refused."""
    rejects(lambda: validate_sender_ids(items), field, rule)


def test_sender_ids_has_no_upper_bound() -> None:
    """More than one call's worth is accepted: chunked() splits it."""
    items = [india(f"{n:06d}") for n in range(MAX_SENDER_IDS_PER_CREATE + 1)]
    checked = validate_sender_ids(items)
    assert [len(c) for c in chunked(checked, MAX_SENDER_IDS_PER_CREATE)] == [5000, 1]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(["ADPAIA", " JSONSEND "], ["ADPAIA", "JSONSEND"], id="stripped"),
        pytest.param(["A", "B", "A"], ["A", "B"], id="repeats-dropped"),
        pytest.param("ADPAIA", ["ADPAIA"], id="single-string"),
        pytest.param(["old name"], ["old name"], id="no-shape-rule"),
    ],
)
def test_sender_names_accepts(names: list[str] | str, expected: list[str]) -> None:
    """Names to delete are stripped, kept in order, and repeats are dropped."""
    assert validate_sender_names(names) == expected


@pytest.mark.parametrize(
    ("names", "field"),
    [
        pytest.param([], "senders", id="empty-list"),
        pytest.param(["A", " "], "senders[1]", id="blank-name"),
    ],
)
def test_sender_names_rejects(names: list[str], field: str) -> None:
    """An empty list or a blank name is refused."""
    rejects(lambda: validate_sender_names(names), field, "required")
