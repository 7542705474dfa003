"""KaleyraClient: golden requests per endpoint, the OTP guard and validation before any request.

Answers come from a ``respx.Router``. Tests taking ``answers`` run through both network seams:
the default aiohttp one (over loopback, to a server that asks the router) and the httpx one
(``httpx.MockTransport``). Tests of transport failures that only respx can stage, and of how the
URL is composed, use the httpx seam alone. Waits are recorded, never slept.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

from kaleyra_async._client import USER_AGENT, KaleyraClient, validated_send
from kaleyra_async._config import Config, HttpConfig, PodConfig, RetryPolicy, Secret
from kaleyra_async._exceptions import (
    ValidationError,
)
from kaleyra_async._models import Message, MessageStatus, Receipt, SenderId
from tests.conftest import UPSTREAM, Answers, Sleeps

KEY = "s3cr3t-api-key-0123456789"
SID = "HXIN1234567890IN"
BASE = f"{UPSTREAM}/v1/{SID}"
A, B, C = "+919876543210", "+919876543211", "+14155552671"
FAST = PodConfig(rate_per_s=1e6, burst=1000)


def accepted(*recipients: str, request_id: str = "req-1") -> httpx.Response:
    """The documented /messages 202 body for ``recipients``."""
    return httpx.Response(
        202,
        json={
            "id": request_id,
            "sender": "KLRHXA",
            "type": "TXN",
            "totalCount": len(recipients),
            "data": [
                {"message_id": f"{request_id}:{i + 1}", "recipient": r.lstrip("+")}
                for i, r in enumerate(recipients)
            ],
            "error": {},
        },
    )


def make_client(answers: Answers, sleeps: Sleeps, **kwargs: Any) -> KaleyraClient:
    options: dict[str, Any] = {
        "sid": SID,
        "api_key": KEY,
        "pod": "IN",
        "rate_limit": FAST,
        "retry": RetryPolicy(jitter_s=0.0),
        "_sleep": sleeps,
        **answers.client_options(),
    }
    options.update(kwargs)
    return KaleyraClient(**options)


def via_httpx(router: respx.Router) -> Answers:
    """The router behind the httpx seam alone: for failures only respx can stage."""
    return Answers(router, "httpx")


@pytest.fixture
async def client(answers: Answers, sleeps: Sleeps) -> AsyncIterator[KaleyraClient]:
    async with make_client(answers, sleeps) as c:
        yield c


def sent_json(route: respx.Route, index: int = 0) -> Any:
    return json.loads(route.calls[index].request.content)


def assert_common_headers(request: httpx.Request, content_type: str = "application/json") -> None:
    assert request.headers["api-key"] == KEY
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT
    assert request.headers["content-type"] == content_type


# -- golden requests ---------------------------------------------------------------------------


async def test_send_sms_golden_request(client: KaleyraClient, router: respx.Router) -> None:
    """POST /v1/<SID>/sms with the key header and the exact JSON body; numbers normalised."""
    route = router.post(f"{BASE}/sms").mock(return_value=accepted(A, B))
    result = await client.send_sms(
        ["+91 98765 43210", B],
        body="Your order shipped",
        sender="klrhxa",
        template_id="1107161234567890123",
        template_data={"name": "Asha"},
        flash=True,
        ref_custom=["r1"],
        callback_profile_id="IN_09b3dfa7",
    )
    assert route.call_count == 1
    request = route.calls[0].request
    assert_common_headers(request)
    assert sent_json(route) == {
        "to": f"{A},{B}",
        "sender": "KLRHXA",
        "type": "TXN",
        "body": "Your order shipped",
        "template_id": "1107161234567890123",
        "template_data": {"name": "Asha"},
        "flash": "1",
        "ref_custom": ["r1"],
        "callback_profile_id": "IN_09b3dfa7",
    }
    assert result.request_id == "req-1"
    assert result.receipts == (Receipt("req-1:1", A), Receipt("req-1:2", B))
    assert result.attempts == 1


async def test_send_form_encoding(answers: Answers, sleeps: Sleeps) -> None:
    """http.encoding="form" posts application/x-www-form-urlencoded fields."""
    route = answers.router.post(f"{BASE}/sms").mock(return_value=accepted(A))
    async with make_client(answers, sleeps, http=HttpConfig(encoding="form")) as client:
        await client.send_sms(
            A, sender="KLRHXA", body="hi & bye", template_id="1107161234567890123"
        )
    request = route.calls[0].request
    assert_common_headers(request, "application/x-www-form-urlencoded")
    assert urllib.parse.parse_qsl(request.content.decode()) == [
        ("to", A),
        ("sender", "KLRHXA"),
        ("type", "TXN"),
        ("body", "hi & bye"),
        ("template_id", "1107161234567890123"),
    ]


async def test_send_message_uses_messages_endpoint(
    client: KaleyraClient, router: respx.Router
) -> None:
    """send_message posts to /messages with source=API."""
    route = router.post(f"{BASE}/messages").mock(return_value=accepted(A))
    await client.send_message(A, sender="KLRHXA", body="hello", template_id="1107161234567890123")
    assert sent_json(route) == {
        "to": A,
        "sender": "KLRHXA",
        "type": "TXN",
        "body": "hello",
        "template_id": "1107161234567890123",
        "source": "API",
    }


async def test_send_otp_golden_request(client: KaleyraClient, router: respx.Router) -> None:
    """send_otp sends type OTP to one number."""
    route = router.post(f"{BASE}/sms").mock(return_value=accepted(A))
    await client.send_otp(
        A, sender="KLRHXA", body="Your code is 1234", template_id="1107161234567890123"
    )
    assert sent_json(route) == {
        "to": A,
        "sender": "KLRHXA",
        "type": "OTP",
        "body": "Your code is 1234",
        "template_id": "1107161234567890123",
    }


async def test_create_sender_ids_golden_request(
    client: KaleyraClient, router: respx.Router
) -> None:
    """POST /sms/sender with data[]; the answer is returned per request."""
    route = router.post(f"{BASE}/sms/sender").mock(
        return_value=httpx.Response(
            200, json={"code": "MSG106", "message": "created", "data": [], "error": {}}
        )
    )
    results = await client.create_sender_ids([SenderId("adpaix", "alerts", "IN", "123456789012")])
    assert_common_headers(route.calls[0].request)
    assert sent_json(route) == {
        "data": [
            {
                "sender": "ADPAIX",
                "description": "alerts",
                "iso_code": "in",
                "entity_id": "123456789012",
            }
        ]
    }
    assert [r.code for r in results] == ["MSG106"]


async def test_create_sender_ids_chunks_by_5000(
    client: KaleyraClient, router: respx.Router
) -> None:
    """5,001 sender IDs take two requests: 5,000 then 1."""
    route = router.post(f"{BASE}/sms/sender").mock(
        return_value=httpx.Response(200, json={"code": "MSG106", "message": "ok", "error": {}})
    )
    items = [SenderId(f"{i:06d}", "alerts", entity_id="1" * 12) for i in range(5001)]
    results = await client.create_sender_ids(items)
    assert len(results) == 2
    assert [len(sent_json(route, i)["data"]) for i in range(2)] == [5000, 1]


async def test_delete_sender_ids_golden_request_and_chunks(
    client: KaleyraClient, router: respx.Router
) -> None:
    """DELETE /sms/sender with {"sender": [...]}, 100 names per request."""
    route = router.delete(f"{BASE}/sms/sender").mock(
        return_value=httpx.Response(
            200,
            json={
                "code": "MSG108",
                "message": "Sender ID(s) deleted successfully",
                "data": [],
                "error": {},
            },
        )
    )
    names = [f"S{i:05d}" for i in range(101)]
    results = await client.delete_sender_ids(names)
    assert_common_headers(route.calls[0].request)
    assert sent_json(route, 0) == {"sender": names[:100]}
    assert sent_json(route, 1) == {"sender": names[100:]}
    assert [r.code for r in results] == ["MSG108", "MSG108"]


async def test_get_status_golden_request(client: KaleyraClient, router: respx.Router) -> None:
    """GET /sms/status?message_ids=a,b with Content-Type: application/json."""
    route = router.get(f"{BASE}/sms/status").mock(
        return_value=httpx.Response(
            200,
            json={
                "data": [
                    {"campaign_id": "m:1", "status": "Delivered", "status_details": "DELIVRD"}
                ],
                "error": {},
            },
        )
    )
    statuses = await client.get_status(["m:1", "m:2"])
    request = route.calls[0].request
    assert_common_headers(request)
    assert request.url.params["message_ids"] == "m:1,m:2"
    assert request.content == b""
    assert statuses == [MessageStatus(message_id="m:1", status="Delivered", detail="DELIVRD")]


async def test_get_status_chunks_by_100(client: KaleyraClient, router: respx.Router) -> None:
    """More than 100 ids are looked up in several requests."""
    route = router.get(f"{BASE}/sms/status").mock(
        return_value=httpx.Response(200, json={"data": [], "error": {}})
    )
    await client.get_status([f"m:{i}" for i in range(250)])
    assert route.call_count == 3


@pytest.mark.parametrize(
    ("kwargs", "url"),
    [
        pytest.param({"pod": "SG"}, f"https://api.kaleyra.io/v1/{SID}/sms", id="sg-pod-host"),
        pytest.param(
            {"base_url": "http://127.0.0.1:8787/"},
            f"http://127.0.0.1:8787/v1/{SID}/sms",
            id="base-url-overrides",
        ),
        pytest.param(
            {"rate_limit": PodConfig(host="https://custom.example", rate_per_s=1e6)},
            f"https://custom.example/v1/{SID}/sms",
            id="pod-config-host",
        ),
    ],
)
async def test_url_is_host_v1_sid_path(
    router: respx.Router, sleeps: Sleeps, kwargs: dict[str, Any], url: str
) -> None:
    """URL = (base_url or the pod's host) + /v1/<SID> + path."""
    route = router.post(url).mock(return_value=accepted(C))
    async with make_client(via_httpx(router), sleeps, **kwargs) as client:
        await client.send(
            Message(
                body="hi",
                type="DEFAULT" if "pod" in kwargs else "TXN",
                sender="KLRHXA",
                template_id="1107161234567890123",
            ),
            [C],
        )
    assert route.call_count == 1


async def test_from_config(router: respx.Router) -> None:
    """from_config takes the account, pod, host and country prefix from a Config."""
    config = Config(sid=SID, api_key=Secret(KEY), base_url="http://sandbox.test")
    route = router.post(f"http://sandbox.test/v1/{SID}/sms").mock(return_value=accepted(A))
    transport = httpx.MockTransport(router.async_handler)
    async with KaleyraClient.from_config(config, transport=transport) as client:
        assert client.pod == "IN"
        await client.send_sms(A, sender="KLRHXA", body="hi", template_id="1107161234567890123")
    assert route.calls[0].request.headers["api-key"] == KEY


# -- validation before any request -------------------------------------------------------------


@pytest.mark.parametrize("validated", [False, True])
async def test_otp_guard_raises_before_any_request(
    client: KaleyraClient, router: respx.Router, validated: bool
) -> None:
    """An OTP to two numbers never reaches the network, through send or the pipeline's send."""
    router.route().mock(return_value=accepted(A, B))
    send = validated_send(client) if validated else client.send
    with pytest.raises(ValidationError) as info:
        await send(
            Message(body="code 1", type="OTP", sender="KLRHXA", template_id="1107161234567890123"),
            [A, B],
        )
    assert info.value.rule == "otp_single_recipient"
    assert router.calls.call_count == 0


@pytest.mark.parametrize(
    ("recipients", "rule"),
    [
        pytest.param([], "required", id="none"),
        pytest.param([f"+9198765{i:05d}" for i in range(101)], "max_recipients", id="101"),
    ],
)
@pytest.mark.parametrize("validated", [False, True])
async def test_recipient_count_is_always_checked(
    client: KaleyraClient,
    router: respx.Router,
    recipients: list[str],
    rule: str,
    validated: bool,
) -> None:
    """1..100 recipients per request, checked by the pipeline's send too."""
    router.route().mock(return_value=accepted(A))
    send = validated_send(client) if validated else client.send
    with pytest.raises(ValidationError) as info:
        await send(
            Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"),
            recipients,
        )
    assert info.value.rule == rule
    assert router.calls.call_count == 0


async def test_invalid_number_and_message_raise_before_any_request(
    client: KaleyraClient, router: respx.Router
) -> None:
    """A bad number or a bad field is a ValidationError and no request is made."""
    router.route().mock(return_value=accepted(A))
    with pytest.raises(ValidationError):
        await client.send(
            Message(body="x", type="TXN", sender="KLRHXA", template_id="1107161234567890123"),
            ["not a number"],
        )
    with pytest.raises(ValidationError):
        await client.send(
            Message(body="x", type="NOPE", sender="KLRHXA", template_id="1107161234567890123"), [A]
        )
    assert router.calls.call_count == 0


async def test_the_pipelines_send_skips_normalisation(
    client: KaleyraClient, router: respx.Router
) -> None:
    """validated_send sends numbers and message as given (the pipeline did the work)."""
    route = router.post(f"{BASE}/sms").mock(return_value=accepted(A))
    await validated_send(client)(Message(body="x", type="TXN", sender="klrhxa"), [A])
    assert sent_json(route)["sender"] == "klrhxa"


async def test_country_prefix_normalises_national_numbers(answers: Answers, sleeps: Sleeps) -> None:
    """country_prefix turns a national number into E.164."""
    route = answers.router.post(f"{BASE}/sms").mock(return_value=accepted(A))
    async with make_client(answers, sleeps, country_prefix="+91") as client:
        await client.send_sms(
            "98765 43210", sender="KLRHXA", body="x", template_id="1107161234567890123"
        )
    assert sent_json(route)["to"] == A
