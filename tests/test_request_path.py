"""The one request path: what it tells the limiter when a request does not go out."""

from __future__ import annotations

import anyio
import pytest

from kaleyra_async import KaleyraError
from kaleyra_async._config import RetryPolicy, Secret
from kaleyra_async._protocol import WireRequest
from kaleyra_async._request_path import RequestPath


class _Limiter:
    """Grants every turn at once and records the turns given back."""

    def __init__(self) -> None:
        self.released: list[object] = []

    async def acquire(self, *, otp: bool, recipients: int = 1, admit: bool = True) -> object:
        return "the turn"

    async def admit(self, ticket: object = None) -> None:
        """Nothing to wait for."""

    def release(self, ticket: object = None) -> None:
        self.released.append(ticket)

    def sent(self, ticket: object = None) -> None:
        raise AssertionError("nothing may be written")

    def pause(self, seconds: float) -> None:
        """Never asked."""


async def test_a_turn_granted_after_the_client_closed_is_given_back() -> None:
    """The client closed while a request waited for its turn: the request fails before any
    write, and its turn goes back to the limiter (other processes sharing the limit get it)."""
    limiter = _Limiter()

    def closed() -> None:
        raise KaleyraError("the KaleyraClient is closed")

    path = RequestPath(
        object(),  # type: ignore[arg-type]  # never reached: nothing is sent
        base_url="http://127.0.0.1:9",
        headers=(),
        key=Secret("key"),
        pod="IN",
        retry=RetryPolicy(),
        sleep=anyio.sleep,
        make_limiter=lambda: (limiter, None),
        check_open=closed,
    )
    with pytest.raises(KaleyraError, match="closed"):
        await path.call(WireRequest("POST", "/sms", (), b"{}"), lambda *_a, **_k: None)
    assert limiter.released == ["the turn"]
