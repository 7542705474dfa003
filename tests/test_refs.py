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
