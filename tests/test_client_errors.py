"""KaleyraClient: error mapping, retries, its lifecycle and the API key's secrecy.

As in tests/test_client.py (whose helpers these tests share): answers come from a
``respx.Router``, through both network seams where ``answers`` is taken; waits are recorded,
never slept.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from kaleyra_async._client import KaleyraClient
from kaleyra_async._config import RetryPolicy, Secret
from kaleyra_async._exceptions import (
    APIError,
    AuthenticationError,
    ConfigError,
    ConnectError,
    KaleyraError,
    RateLimitError,
    RejectedError,
    ResponseLostError,
    ServerError,
    ValidationError,
)
from kaleyra_async._models import Message
from tests.conftest import Answers, Sleeps
from tests.test_client import BASE, KEY, SID, A, accepted, make_client, via_httpx


@pytest.fixture
async def client(answers: Answers, sleeps: Sleeps) -> AsyncIterator[KaleyraClient]:
    async with make_client(answers, sleeps) as c:
        yield c


# -- error mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "cls", "code"),
    [
        pytest.param(
            httpx.Response(400, json={"code": "E401", "message": "too long", "error": {}}),
            RejectedError,
            "E401",
            id="E401",
        ),
        pytest.param(
            httpx.Response(200, json={"id": "x", "error": {"message": "Invalid sender"}}),
            ServerError,
            None,
            id="2xx-with-error",
        ),
        pytest.param(
            httpx.Response(401, json={"code": "E100", "message": "bad key"}),
            AuthenticationError,
            "E100",
            id="401",
        ),
        pytest.param(httpx.Response(403, text="Forbidden"), AuthenticationError, None, id="403"),
        pytest.param(
            httpx.Response(502, html="<html><h1>Bad Gateway</h1></html>"),
            ServerError,
            None,
            id="502-html",
        ),
    ],
)
async def test_error_responses_raise_the_right_class(
    client: KaleyraClient,
    router: respx.Router,
    response: httpx.Response,
    cls: type[APIError],
    code: str | None,
) -> None:
    """Each error answer raises its class, with status, code and pod, after one attempt."""
    route = router.post(f"{BASE}/sms").mock(return_value=response)
    with pytest.raises(cls) as info:
        await client.send(
            Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"), [A]
        )
    assert type(info.value) is cls
    assert info.value.status_code == response.status_code
    assert info.value.kaleyra_code == code
    assert info.value.pod == "IN"
    assert info.value.attempts == 1
    assert route.call_count == 1


# -- retries -----------------------------------------------------------------------------------


async def test_429_with_retry_after_then_success(
    client: KaleyraClient, router: respx.Router, sleeps: Sleeps
) -> None:
    """A 429 is retried after at least Retry-After; the result reports 2 attempts."""
    route = router.post(f"{BASE}/sms").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0.05"}, json={"message": "Throttling"}),
            accepted(A),
        ]
    )
    result = await client.send(
        Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"), [A]
    )
    assert result.attempts == 2
    assert route.call_count == 2
    assert len(sleeps.waits) == 1
    assert sleeps.waits[0] >= 0.05


async def test_503_is_retried(client: KaleyraClient, router: respx.Router) -> None:
    """503 means not handled: sent again."""
    route = router.post(f"{BASE}/sms").mock(side_effect=[httpx.Response(503), accepted(A)])
    result = await client.send(
        Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"), [A]
    )
    assert (result.attempts, route.call_count) == (2, 2)


async def test_connect_error_is_retried(router: respx.Router, sleeps: Sleeps) -> None:
    """A connection that never opened is sent again."""
    route = router.post(f"{BASE}/sms").mock(
        side_effect=[httpx.ConnectError("refused"), accepted(A)]
    )
    async with make_client(via_httpx(router), sleeps) as client:
        result = await client.send(
            Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"), [A]
        )
    assert (result.attempts, route.call_count) == (2, 2)


async def test_persistent_429_gives_up_with_attempts(answers: Answers, sleeps: Sleeps) -> None:
    """After max_attempts 429s the RateLimitError is raised with attempts set."""
    route = answers.router.post(f"{BASE}/sms").mock(return_value=httpx.Response(429))
    retry = RetryPolicy(max_attempts=3, jitter_s=0)
    async with make_client(answers, sleeps, retry=retry) as client:
        with pytest.raises(RateLimitError) as info:
            await client.send(
                Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"),
                [A],
            )
    assert info.value.attempts == 3
    assert route.call_count == 3


AMBIGUOUS = [
    pytest.param(httpx.Response(500), ServerError, id="500"),
    pytest.param(httpx.Response(502), ServerError, id="502"),
    pytest.param(httpx.Response(504), ServerError, id="504"),
    pytest.param(httpx.ReadTimeout("timed out"), ResponseLostError, id="read-timeout"),
    pytest.param(httpx.RemoteProtocolError("disconnected"), ResponseLostError, id="disconnect"),
]


@pytest.mark.parametrize(("failure", "cls"), AMBIGUOUS)
async def test_fate_unknown_is_not_retried_by_default(
    router: respx.Router, sleeps: Sleeps, failure: Any, cls: type[KaleyraError]
) -> None:
    """500/502/504 and lost responses may have sent SMS: raised after exactly one call."""
    route = router.post(f"{BASE}/sms").mock(side_effect=[failure, accepted(A)])
    with pytest.raises(cls) as info:
        async with make_client(via_httpx(router), sleeps) as client:
            await client.send(
                Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"),
                [A],
            )
    assert info.value.fate_unknown
    assert info.value.attempts == 1
    assert route.call_count == 1


@pytest.mark.parametrize(("failure", "cls"), AMBIGUOUS)
async def test_fate_unknown_is_retried_when_ambiguous_allowed(
    router: respx.Router, sleeps: Sleeps, failure: Any, cls: type[KaleyraError]
) -> None:
    """retry_ambiguous=True opts in to at-least-once: the request is sent again."""
    route = router.post(f"{BASE}/sms").mock(side_effect=[failure, accepted(A)])
    async with make_client(
        via_httpx(router), sleeps, retry=RetryPolicy(retry_ambiguous=True, jitter_s=0)
    ) as client:
        result = await client.send(
            Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"), [A]
        )
    assert (result.attempts, route.call_count) == (2, 2)


async def test_status_lookups_retry_lost_responses(router: respx.Router, sleeps: Sleeps) -> None:
    """A status GET sends no SMS, so a lost response is retried even by default."""
    route = router.get(f"{BASE}/sms/status").mock(
        side_effect=[httpx.ReadTimeout("t"), httpx.Response(200, json={"data": []})]
    )
    async with make_client(via_httpx(router), sleeps) as client:
        assert await client.get_status(["m:1"]) == []
    assert route.call_count == 2


# -- lifecycle ---------------------------------------------------------------------------------


async def test_close_twice_is_safe_and_use_after_close_raises(
    answers: Answers, sleeps: Sleeps
) -> None:
    """aclose() is idempotent; every call afterwards raises KaleyraError without a request."""
    router = answers.router
    router.route().mock(return_value=accepted(A))
    client = make_client(answers, sleeps)
    await client.aclose()
    await client.aclose()
    with pytest.raises(KaleyraError, match="closed"):
        await client.send(
            Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"), [A]
        )
    with pytest.raises(KaleyraError, match="closed"):
        await client.get_status(["m:1"])
    with pytest.raises(KaleyraError, match="closed"):
        async with client:
            pass
    assert router.calls.call_count == 0
    assert "closed" in repr(client)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"pod": "XX"}, id="unknown-pod"),
        pytest.param({"sid": ""}, id="no-sid"),
        pytest.param({"api_key": ""}, id="no-key"),
        pytest.param({"base_url": "ftp://x"}, id="bad-base-url"),
        pytest.param({"otp_share": 1.0}, id="bad-otp-share"),
    ],
)
def test_invalid_arguments_raise_config_error(kwargs: dict[str, Any]) -> None:
    """Bad constructor arguments raise ConfigError, never mentioning the key."""
    options: dict[str, Any] = {"sid": SID, "api_key": KEY, **kwargs}
    with pytest.raises(ConfigError) as info:
        KaleyraClient(**options)
    assert KEY not in str(info.value)


# -- the key stays secret ----------------------------------------------------------------------


async def test_api_key_never_leaks(
    router: respx.Router, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    """Not in repr, not in any error's str/repr, not in any log record at DEBUG (the aiohttp
    seam's failures: tests/reliability/test_secrets.py)."""
    caplog.set_level(logging.DEBUG)
    router.post(f"{BASE}/sms").mock(
        side_effect=[
            httpx.Response(401, json={"message": "bad key"}),
            httpx.Response(429, headers={"Retry-After": "0.01"}),
            httpx.Response(500, text="<html>oops</html>"),
            httpx.ReadTimeout("timed out"),
            httpx.ConnectError("refused"),
            httpx.Response(503),
            accepted(A),
        ]
    )
    errors: list[BaseException] = []
    async with make_client(
        via_httpx(router), sleeps, retry=RetryPolicy(max_attempts=1), api_key=Secret(KEY)
    ) as client:
        assert KEY not in repr(client)
        assert SID in repr(client)
        assert "IN" in repr(client)
        assert "api.in.kaleyra.io" in repr(client)
        for _ in range(6):
            with pytest.raises(KaleyraError) as info:
                await client.send(
                    Message(
                        body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"
                    ),
                    [A],
                )
            errors.append(info.value)
        await client.send(
            Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"), [A]
        )
    assert {type(e) for e in errors} == {
        AuthenticationError,
        RateLimitError,
        ServerError,
        ResponseLostError,
        ConnectError,
    }
    for error in errors:
        assert KEY not in str(error)
        assert KEY not in repr(error)
        assert KEY not in repr(vars(error))
    assert caplog.records, "expected DEBUG records to check"
    for record in caplog.records:
        assert KEY not in record.getMessage()


async def test_api_key_echoed_by_a_server_is_masked(answers: Answers, sleeps: Sleeps) -> None:
    """A server that echoes the key in its error body does not leak it into our exception."""
    answers.router.post(f"{BASE}/sms").mock(
        return_value=httpx.Response(
            400, json={"code": "E999", "message": f"bad key {KEY}", "error": {"key": KEY}}
        )
    )
    async with make_client(answers, sleeps, api_key=Secret(KEY)) as client:
        with pytest.raises(RejectedError) as info:
            await client.send(
                Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"),
                [A],
            )
    error = info.value
    assert error.kaleyra_code == "E999"
    assert "********" in str(error)
    assert KEY not in f"{error} {error!r} {vars(error)!r}"


async def test_a_429_pauses_every_sender_for_retry_after(answers: Answers, sleeps: Sleeps) -> None:
    """Retry-After is about the account: the next request, from any sender, waits it out too."""
    stamps: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        stamps.append(anyio.current_time())
        if len(stamps) == 1:
            return httpx.Response(429, headers={"Retry-After": "0.3"})
        return accepted(A)

    answers.router.post(f"{BASE}/sms").mock(side_effect=answer)
    async with make_client(answers, sleeps, retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(RateLimitError):
            await client.send(
                Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"),
                [A],
            )
        await client.send(
            Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"), [A]
        )
    assert stamps[1] - stamps[0] >= 0.3


async def test_send_otp_with_a_list_is_a_validation_error(client: KaleyraClient) -> None:
    """send_otp(to=[a, b]) is refused by the OTP rule, not with a TypeError."""
    with pytest.raises(ValidationError) as info:
        await client.send_otp(
            to=[A, A], sender="KLRHXA", template_id="1107161234567890123", body="1234"
        )  # type: ignore[arg-type]
    assert info.value.rule == "otp_single_recipient"
