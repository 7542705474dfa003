"""What the client tells a caller about each attempt of a request, and the send the bulk
pipeline uses: the contract between ``_client`` and ``_dispatch``."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol

from ._exceptions import KaleyraError
from ._models import Message, SendResult

__all__ = ["Attempts", "ValidatedJsonSend", "ValidatedSend"]


class Attempts(Protocol):
    """Follows the attempts of one request: how the bulk pipeline journals at the last moment."""

    async def sending(self) -> None:
        """An attempt passed the limiter's queue; a last window check and the write follow.

        Raising here (anything but a :class:`KaleyraError`) abandons the request unsent.
        """

    def writing(self, attempt: int) -> None:
        """Attempt number ``attempt`` is written as soon as this returns (nothing is awaited in
        between). Raising here (anything but a :class:`KaleyraError`) abandons it unsent."""

    def failed(self, error: KaleyraError) -> None:
        """An attempt failed with ``error`` (it may be retried)."""


class ValidatedSend(Protocol):
    """Sends a validated message to E.164 numbers, reporting attempts: the pipeline's send."""

    def __call__(
        self, message: Message, recipients: Sequence[str], *, attempts: Attempts | None = None
    ) -> Awaitable[SendResult]: ...


class ValidatedJsonSend(Protocol):
    """Sends validated (E.164 number, message) nodes as one ``/sms/json`` request, reporting
    attempts: the pipeline's send for personalised rows. ``bodies[i]``, unless None, is node
    ``i``'s body instead of its message's (rows that share all but their body share a message).
    """

    def __call__(
        self,
        nodes: Sequence[tuple[str, Message]],
        *,
        bodies: Sequence[str | None] | None = None,
        attempts: Attempts | None = None,
    ) -> Awaitable[SendResult]: ...
