"""References naming the run and the request, sent in ``ref`` so that a delivery receipt can be
tied to its rows even when the send's answer was lost (Kaleyra returns ``ref`` in the callback).
"""

from __future__ import annotations

import dataclasses
import secrets

from ._batching import Batch
from ._limits import MAX_REF_CHARS
from ._models import Message

__all__ = ["RequestReferences"]


class RequestReferences:
    """``ka-<run>-<n>``: a random run id and the request's number in the run.

    Only requests that ask for receipts (a ``callback_profile_id``) get one, and a ``ref`` the
    user filled (a column or the library call) is left as it is.
    """

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id or secrets.token_hex(4)
        self._issued = 0

    def next(self) -> str:
        self._issued += 1
        ref = f"ka-{self.run_id}-{self._issued}"
        assert len(ref) <= MAX_REF_CHARS
        return ref

    def apply(self, batch: Batch) -> Batch:
        """The batch with a reference in ``ref`` when it asks for receipts and has none; on
        ``/sms/json``, in each node that asks and has none (and in the batch's top-level part,
        which the journal keeps)."""
        message = batch.message
        if batch.endpoint == "sms/json":
            asking = [r.base.callback_profile_id and r.base.ref is None for r in batch.rows]
            if not any(asking):
                return batch
            ref = self.next()
            # Rows that shared a base share its copy: one message object keeps the request's
            # one-shared-message paths (a personalised campaign's rows differ by body alone).
            copies: dict[int, Message] = {}

            def with_ref(base: Message) -> Message:
                copy = copies.get(id(base))
                if copy is None:
                    copy = copies[id(base)] = dataclasses.replace(base, ref=ref)
                return copy

            rows = tuple(
                dataclasses.replace(r, base=with_ref(r.base)) if ask else r
                for r, ask in zip(batch.rows, asking, strict=True)
            )
            return dataclasses.replace(
                batch, message=dataclasses.replace(message, ref=ref), rows=rows
            )
        if message.callback_profile_id is None or message.ref is not None:
            return batch
        return dataclasses.replace(batch, message=dataclasses.replace(message, ref=self.next()))
