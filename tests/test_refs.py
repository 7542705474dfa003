"""Request references: only requests that ask for receipts get one; a user's ref is kept."""

from __future__ import annotations

import re

from kaleyra_async._batching import Batch, PreparedRow
from kaleyra_async._models import Message
from kaleyra_async._refs import RequestReferences


def batch(**fields: object) -> Batch:
    message = Message(body="hi", sender="KLRHXA", **fields)  # type: ignore[arg-type]
    row = PreparedRow(row=1, to="+919876543210", base=message, segments=1, encoding="GSM-7")
    return Batch(message, (row,))


def test_requests_asking_for_receipts_get_numbered_references() -> None:
    refs = RequestReferences()
    first = refs.apply(batch(callback_profile_id="IN_x")).message.ref
    second = refs.apply(batch(callback_profile_id="IN_x")).message.ref
    assert first is not None and re.fullmatch(r"ka-[0-9a-f]{8}-1", first)
    assert second == first[:-1] + "2"
    assert RequestReferences().run_id != refs.run_id


def test_no_reference_without_receipts_or_over_the_users_own() -> None:
    refs = RequestReferences("run")
    assert refs.apply(batch()).message.ref is None
    assert refs.apply(batch(callback_profile_id="IN_x", ref="mine")).message.ref == "mine"


def test_json_rows_sharing_a_base_still_share_one_message_once_referenced() -> None:
    """Personalised rows (one base, bodies of their own) asking for receipts get the request's
    reference on one copy of their base, not one copy each: the request stays one shared
    message with bodies apart."""
    base = Message(body="", sender="KLRHXA", callback_profile_id="IN_x")
    other = Message(body="", sender="KLRHXB", callback_profile_id="IN_x")
    rows = tuple(
        PreparedRow(
            row=n,
            to=f"+91987654321{n}",
            base=base if n < 3 else other,
            segments=1,
            encoding="GSM-7",
            body=f"Hello {n}",
        )
        for n in range(4)
    )
    referenced = RequestReferences("run").apply(Batch(base, rows, endpoint="sms/json"))
    bases = [r.base for r in referenced.rows]
    assert {b.ref for b in bases} == {"ka-run-1"}
    assert bases[0] is bases[1] is bases[2]
    assert bases[3] is not bases[0] and bases[3].sender == "KLRHXB"
    assert [r.body for r in referenced.rows] == [f"Hello {n}" for n in range(4)]
