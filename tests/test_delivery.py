"""The receipts' merge rules: status spellings, no downgrade, expiry, unknown rows settled."""

from __future__ import annotations

import pytest

from kaleyra_async._delivery import (
    DeliverySummary,
    ReceiptRecord,
    deliver_row,
    normalize_status,
    verdict_of,
)

HOUR = 3600.0


def receipt(status: str, *, at: float = 0.0, trace: str = "", mid: str = "r:1") -> ReceiptRecord:
    return ReceiptRecord(
        message_id=mid, status=status, status_trace=trace, timestamp=f"t{at}", received_s=at
    )


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        pytest.param("Delivered", "delivered", id="Delivered"),
        pytest.param("DELIVERED", "delivered", id="DELIVERED"),
        pytest.param("DELIVRD", "delivered", id="DELIVRD"),
        pytest.param("UnDelivered", "undelivered", id="UnDelivered"),
        pytest.param("Undelivered", "undelivered", id="Undelivered"),
        pytest.param("NotSent", "not_sent", id="NotSent"),
        pytest.param("NOT-SENT", "not_sent", id="NOT-SENT"),
        pytest.param("Not Sent", "not_sent", id="Not Sent"),
        pytest.param("Failed", "failed", id="Failed"),
        pytest.param("Sent", "sent", id="Sent"),
        pytest.param("SENT", "sent", id="SENT"),
        pytest.param("NotFound", None, id="NotFound"),
        pytest.param("", None, id="empty"),
    ],
)
def test_status_spellings(raw: str, state: str | None) -> None:
    """Each of Kaleyra's spellings maps to one state; unknown words map to none."""
    assert normalize_status(raw) == state


def test_final_status_is_not_downgraded_by_a_later_sent() -> None:
    """Delivered then Sent (out of order) stays delivered."""
    verdict = verdict_of([receipt("Delivered", at=1), receipt("Sent", at=2)])
    assert (verdict.state, verdict.at) == ("delivered", "t1")


def test_first_final_receipt_wins() -> None:
    """A second, different final report is a duplicate, not applied."""
    verdict = verdict_of(
        [
            receipt("Sent"),
            receipt("UnDelivered", at=1, trace="ABSENT-SUB"),
            receipt("Delivered", at=2),
        ]
    )
    assert (verdict.state, verdict.trace) == ("undelivered", "ABSENT-SUB")


def test_sent_then_delivered_is_delivered() -> None:
    assert verdict_of([receipt("SENT"), receipt("DELIVERED", at=5)]).state == "delivered"


def sent_row(**extra: object) -> dict[str, object]:
    return {"row": 1, "to": "+919999999999", "status": "sent", "message_id": "r:1", **extra}


def test_row_with_final_receipt() -> None:
    """Keys kept, delivery and its time added."""
    out = deliver_row(
        sent_row(attempts=1),
        verdict_of([receipt("Delivered", at=3)]),
        None,
        now_s=10,
        accepted_s=0,
        expire_after_s=72 * HOUR,
    )
    assert out == {
        **sent_row(attempts=1),
        "delivery": "delivered",
        "delivery_trace": None,
        "delivered_at": "t3",
    }


@pytest.mark.parametrize(
    ("age_h", "expected"),
    [pytest.param(71, "pending", id="young"), pytest.param(73, "expired", id="old")],
)
def test_no_final_receipt_is_pending_then_expired(age_h: float, expected: str) -> None:
    """Accepted rows without a final receipt expire after expire_after."""
    out = deliver_row(
        sent_row(),
        verdict_of([receipt("Sent")]),
        None,
        now_s=age_h * HOUR,
        accepted_s=0,
        expire_after_s=72 * HOUR,
    )
    assert (out["delivery"], out["delivered_at"]) == (expected, None)


def test_never_accepted_rows_have_no_delivery() -> None:
    for status in ("failed", "invalid", "skipped", "unknown"):
        out = deliver_row(
            {"row": 1, "to": "x", "status": status},
            None,
            None,
            now_s=0,
            accepted_s=None,
            expire_after_s=1,
        )
        assert out["delivery"] is None and out["status"] == status


def test_unknown_row_settled_by_a_receipt() -> None:
    """An unknown row whose ref and number match a receipt becomes sent, with its id."""
    row = {
        "row": 7,
        "to": "+919999999999",
        "status": "unknown",
        "message_id": None,
        "error_code": "response_lost",
        "ref": "run1-42",
    }
    found = verdict_of([receipt("Delivered", at=2, mid="req:3")])
    out = deliver_row(row, None, found, now_s=5, accepted_s=0, expire_after_s=HOUR)
    assert (out["status"], out["message_id"], out["resolved_by"], out["delivery"]) == (
        "sent",
        "req:3",
        "receipt",
        "delivered",
    )


def test_summary_counts_states_rate_and_traces() -> None:
    summary = DeliverySummary()
    for line in (
        {"delivery": "delivered"},
        {"delivery": "undelivered", "delivery_trace": "ABSENT-SUB"},
        {"delivery": "pending"},
        {"delivery": None},
        {"delivery": "delivered", "resolved_by": "receipt"},
    ):
        summary.add(line)
    assert summary.states["delivered"] == 2 and summary.accepted == 4
    assert summary.delivery_rate == 0.5
    assert summary.traces == {"ABSENT-SUB": 1} and summary.resolved == 1
