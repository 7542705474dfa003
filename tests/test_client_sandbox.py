"""KaleyraClient against the sandbox over a real loopback socket: every endpoint, error paths."""

from __future__ import annotations

import pytest

from kaleyra_async import (
    AuthenticationError,
    KaleyraClient,
    Message,
    PodConfig,
    RateLimitError,
    RejectedError,
    RetryPolicy,
    SenderId,
    ServerError,
    ValidationError,
)
from kaleyra_async._client import validated_send
from kaleyra_async.sandbox import Sandbox, parse_faults

pytestmark = pytest.mark.timeout(60)

TEMPLATE = "1107161234567890123"
A, B = "+919876543210", "+919876543211"


def client_for(sandbox: Sandbox, **kwargs: object) -> KaleyraClient:
    options: dict[str, object] = {
        "sid": sandbox.sid,
        "api_key": sandbox.api_key,
        "base_url": sandbox.base_url,
        "rate_limit": PodConfig(rate_per_s=10_000),
        **kwargs,
    }
    return KaleyraClient(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_every_endpoint_round_trips(sandbox: Sandbox, transport: str) -> None:
    """/sms, OTP, /messages, sender create/delete and status, over both transports."""
    from kaleyra_async import HttpConfig

    async with client_for(sandbox, http=HttpConfig(transport=transport)) as client:  # type: ignore[arg-type]
        sms = await client.send_sms(
            to=[A, B], sender="KLRHXA", type="TXN", body="Shipped", template_id=TEMPLATE
        )
        otp = await client.send_otp(
            to=A, sender="KLRHXA", body="1234 is your OTP", template_id=TEMPLATE
        )
        msg = await client.send_message(
            to=B, sender="KLRHXA", type="MKT", body="Sale", template_id=TEMPLATE
        )
        created = await client.create_sender_ids([SenderId("ADPAIX", "d", entity_id="1" * 12)])
        deleted = await client.delete_sender_ids(["ADPAIX"])
        statuses = await client.get_status([r.message_id for r in sms.receipts])
    assert sorted(sms.message_ids()) == [A, B]
    assert [r.recipient for r in otp.receipts] == [A]
    assert msg.receipts[0].recipient == B
    assert created[0].code == "MSG106"
    assert deleted[0].code == "MSG108"
    assert [s.status for s in statuses] == ["Sent", "Sent"]
    ledger = {r.message_id: r for r in sandbox.ledger_records()}
    for receipt in (*sms.receipts, *otp.receipts, *msg.receipts):
        assert ledger[receipt.message_id].recipient == receipt.recipient
    assert ledger[otp.receipts[0].message_id].type == "OTP"


async def test_wrong_key_is_an_authentication_error(sandbox: Sandbox) -> None:
    """401 from the sandbox becomes AuthenticationError after one attempt."""
    async with client_for(sandbox, api_key="not-the-key") as client:
        with pytest.raises(AuthenticationError) as info:
            await client.send_sms(to=A, sender="KLRHXA", type="TXN", body="x", template_id=TEMPLATE)
    assert info.value.status_code == 401
    assert info.value.attempts == 1
    assert "not-the-key" not in str(info.value)


async def test_sandbox_rejects_what_the_client_would_have_caught(sandbox: Sandbox) -> None:
    """Skipping client validation, the sandbox answers each broken rule with its code."""
    dlt = {"sender": "KLRHXA", "template_id": TEMPLATE}
    cases = [
        (Message(body="x" * 4001, type="TXN", **dlt), [A], "E401"),
        (Message(type="TXN", sender="KLRHXA", template_id="123"), [A], "E407"),
        (Message(body="x", type="DEFAULT"), [A], "E408"),
        (Message(type="TXN"), [A], "E406"),
        (Message(type="TXN", template_data=(("v", "y" * 31),), **dlt), [A], "E413"),
        (Message(body="x", type="TXN", sender="KLRHXA"), [A], "E417"),
        (Message(body="x", type="TXN", template_id=TEMPLATE), [A], "E418"),
    ]
    async with client_for(sandbox) as client:
        for message, to, code in cases:
            with pytest.raises(RejectedError) as info:
                await validated_send(client)(message, to)
            assert info.value.kaleyra_code == code, (message, info.value)
            assert info.value.status_code == 400
    assert sandbox.ledger_records() == []


async def test_otp_guard_holds_on_the_pipelines_send(sandbox: Sandbox) -> None:
    """No path through the client sends an OTP to two numbers: nothing reaches the sandbox."""
    async with client_for(sandbox) as client:
        with pytest.raises(ValidationError) as info:
            await validated_send(client)(Message(body="1234", type="OTP"), [A, B])
    assert info.value.rule == "otp_single_recipient"
    assert sandbox.stats.requests_total == 0


async def test_sender_id_errors_carry_per_item_reasons(sandbox: Sandbox) -> None:
    """A duplicate sender fails the create with MSG134 and a reason naming the item."""
    async with client_for(sandbox) as client:
        entity = "1" * 12
        await client.create_sender_ids([SenderId("ADPAIX", "d", entity_id=entity)])
        with pytest.raises(RejectedError) as info:
            await client.create_sender_ids(
                [
                    SenderId("BANKIN", "d", entity_id=entity),
                    SenderId("ADPAIX", "d", entity_id=entity),
                ]
            )
    assert info.value.kaleyra_code == "MSG134"
    assert any("ADPAIX" in item for item, _ in info.value.details)


@pytest.mark.parametrize("sandbox", [{"rate_per_s": 3}], indirect=True)
async def test_429_carries_retry_after_and_is_retried(sandbox: Sandbox) -> None:
    """Over the sandbox's rate: 429 with Retry-After; without retries it surfaces as such."""
    async with client_for(sandbox, retry=RetryPolicy(max_attempts=1)) as client:
        for _ in range(3):
            await client.send_sms(to=A, sender="KLRHXA", type="TXN", body="x", template_id=TEMPLATE)
        with pytest.raises(RateLimitError) as info:
            await client.send_sms(to=A, sender="KLRHXA", type="TXN", body="x", template_id=TEMPLATE)
    assert info.value.retry_after_s is not None
    assert info.value.retry_after_s >= 1
    assert info.value.safe_to_retry


@pytest.mark.parametrize(
    "sandbox", [{"faults": parse_faults("500_after_accept=1.0"), "seed": 1}], indirect=True
)
async def test_500_after_accept_is_fate_unknown_and_not_resent(sandbox: Sandbox) -> None:
    """The sandbox accepted the SMS and answered 500: one attempt, fate_unknown, in ledger once."""
    async with client_for(sandbox) as client:
        with pytest.raises(ServerError) as info:
            await client.send_sms(to=A, sender="KLRHXA", type="TXN", body="x", template_id=TEMPLATE)
    assert info.value.fate_unknown
    assert info.value.attempts == 1
    assert len(sandbox.ledger_records()) == 1
