"""Where requests may go: the sandbox stays on this machine, TLS is verified, and plain HTTP to
another machine is called out (the key's secrecy in everything a run produced: test_secrets.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from kaleyra_async import (
    ConfigError,
    KaleyraClient,
    load_config,
)
from kaleyra_async._cli import build_parser
from kaleyra_async._config import HttpConfig, RetryPolicy
from kaleyra_async._exceptions import ConnectError
from kaleyra_async.sandbox import Sandbox, SandboxConfig

from .test_secrets import TEMPLATE_ID, TLS, assert_hidden, everything_in

# -- the sandbox stays on this machine -----------------------------------------------------------


async def test_the_sandbox_listens_on_loopback_by_default() -> None:
    """SandboxConfig and `kaleyra_async sandbox` both bind 127.0.0.1 unless told otherwise."""
    assert SandboxConfig().host == "127.0.0.1"
    assert build_parser().parse_args(["sandbox"]).host == "127.0.0.1"
    async with Sandbox(SandboxConfig()) as running:
        assert running.base_url.startswith("http://127.0.0.1:")
        sockets = running._server.sockets if running._server else ()  # type: ignore[attr-defined]
        assert sockets and {s.getsockname()[0] for s in sockets} == {"127.0.0.1"}


async def test_the_sandbox_command_announces_a_loopback_address() -> None:
    """`python -m kaleyra_async sandbox --port 0` says it listens on 127.0.0.1."""
    command = [sys.executable, "-m", "kaleyra_async", "sandbox", "--port", "0"]
    async with await anyio.open_process(command) as process:
        assert process.stdout is not None
        line = b""
        with anyio.fail_after(30):
            while not line.endswith(b"\n"):
                line += await process.stdout.receive(1)
        process.terminate()
        await process.wait()
    assert line.startswith(b"sandbox listening on http://127.0.0.1:"), line


# -- TLS is verified, and plain HTTP to another machine is called out ----------------------------


class _Recorder(asyncio.Protocol):
    """Records any request bytes that reach the server after a completed handshake."""

    def __init__(self, received: list[bytes]) -> None:
        self.received = received

    def data_received(self, data: bytes) -> None:
        self.received.append(data)


@pytest.fixture
async def untrusted_tls_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A TLS server on loopback with a self-signed certificate that no client trusts."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS / "localhost.crt", TLS / "localhost.key")
    received: list[bytes] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Recorder(received), "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}", received
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_an_untrusted_certificate_is_refused_before_anything_is_sent(
    key: str, transport: Any, untrusted_tls_server: tuple[str, list[bytes]]
) -> None:
    """Both transports verify certificates: a self-signed one is a ConnectError (never sent),
    and the server reads no request (the key never crosses an unverified connection)."""
    url, received = untrusted_tls_server
    async with KaleyraClient(
        sid="HX1",
        api_key=key,
        base_url=url,
        http=HttpConfig(transport=transport, connect_timeout_s=10),
        retry=RetryPolicy(max_attempts=1),
    ) as client:
        with pytest.raises(ConnectError) as caught:
            await client.send_sms(
                "+919876543210", body="Hello", sender="KLRHXA", template_id=TEMPLATE_ID
            )
    assert "certificate" in str(caught.value).lower()
    assert received == []
    assert_hidden(key, *everything_in(caught.value))


def test_there_is_no_setting_to_turn_verification_off(tmp_path: Path) -> None:
    """The config has no verify/insecure knob: such a key is refused, not ignored."""
    for line in ("verify = false", "insecure = true", "ssl_verify = false"):
        config = tmp_path / "kaleyra.toml"
        config.write_text(f"[http]\n{line}\n")
        with pytest.raises(ConfigError, match=r"^http\.\w+: unknown key"):
            load_config(config, env={"KALEYRA_SID": "HX1", "KALEYRA_API_KEY": "k"})
    assert {f.name for f in dataclasses.fields(HttpConfig)}.isdisjoint(
        {"verify", "insecure", "ssl", "ssl_verify", "tls_verify"}
    )
    assert all(c.host.startswith("https://") for c in load_config(None, env={
        "KALEYRA_SID": "HX1", "KALEYRA_API_KEY": "k"}).pods.values())  # fmt: skip


@pytest.mark.parametrize(
    ("base_url", "warned"),
    [
        pytest.param("http://sms-gateway.example.com", True, id="http-remote"),
        pytest.param("http://10.1.2.3:8080", True, id="http-private-ip"),
        pytest.param("http://localhost.example.com", True, id="http-lookalike"),
        pytest.param("http://127.0.0.1:8787", False, id="http-loopback"),
        pytest.param("http://localhost:8787", False, id="http-localhost"),
        pytest.param("http://[::1]:8787", False, id="http-ipv6-loopback"),
        pytest.param("https://sms-gateway.example.com", False, id="https"),
        pytest.param(None, False, id="the-pod"),
    ],
)
def test_plain_http_to_another_machine_is_warned_about(
    base_url: str | None, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """An API key over plain HTTP to another host draws a warning naming the host."""
    caplog.set_level(logging.WARNING)
    KaleyraClient(sid="HX1", api_key="k", base_url=base_url)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if warned:
        assert len(warnings) == 1
        assert base_url in warnings[0] and "unencrypted" in warnings[0]
    else:
        assert warnings == []


def test_a_pod_host_over_plain_http_is_warned_about_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The warning covers a [pods.X] host override, not only base_url."""
    config = tmp_path / "kaleyra.toml"
    config.write_text('[pods.IN]\nhost = "http://kaleyra-proxy.internal"\n')
    loaded = load_config(config, env={"KALEYRA_SID": "HX1", "KALEYRA_API_KEY": "k"})
    caplog.set_level(logging.WARNING)
    KaleyraClient.from_config(loaded)
    assert any("http://kaleyra-proxy.internal" in r.getMessage() for r in caplog.records)
