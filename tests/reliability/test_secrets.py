"""Secrets: the API key shows nowhere (where requests may go: test_transport_safety.py).

Each test makes a unique random key and greps everything the run produced for it: stdout and
stderr (with DEBUG logging on), log records, the results file and its journal, the sandbox's
ledger, exception text, reprs and tracebacks. Runs that fail are checked too: a refused key, a
config error, no server, faults, a server that echoes the key back.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import subprocess
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from kaleyra_async import (
    BulkOptions,
    Config,
    ConfigError,
    KaleyraClient,
    KaleyraError,
    Secret,
    load_config,
)
from kaleyra_async._config import HttpConfig, RetryPolicy
from kaleyra_async._models import RowResult
from kaleyra_async._sources import RecordSource
from kaleyra_async.sandbox import Sandbox, SandboxConfig, parse_faults
from tests.conftest import bulk, cli_env, numbers, run_cli, write_csv

pytestmark = pytest.mark.timeout(120)

TLS = Path(__file__).parent.parent / "data" / "tls"
#: India's DLT rule: every message to a +91 number from the IN pod names its template.
TEMPLATE_ID = "1107161234567890123"


def assert_hidden(key: str, *texts: str | bytes, where: str = "") -> None:
    """Neither the key nor a recognisable piece of it (12 characters at either end) is shown."""
    pieces = {key, key[:12], key[-12:]}
    for text in texts:
        found = text if isinstance(text, str) else text.decode("utf-8", "replace")
        for piece in pieces:
            assert piece not in found, f"the API key shows in {where or 'output'}: {found[:300]!r}"


def everything_in(exc: BaseException) -> list[str]:
    """An exception as anything might show it: str, repr, args, attributes, the whole chain."""
    shown = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        shown += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return shown


# -- reprs ---------------------------------------------------------------------------------------


def test_secret_config_and_client_never_show_the_key(key: str) -> None:
    """Secret, Config (loaded from the environment or a file) and the client mask the key."""
    secret = Secret(key)
    assert secret.reveal() == key
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    config = load_config(None, env={"KALEYRA_SID": "HX1", "KALEYRA_API_KEY": key})
    client = KaleyraClient.from_config(config)
    shown = [
        repr(secret), str(secret), f"{secret}", f"{secret!r}", "{} {!r}".format(secret, secret),  # noqa: UP032
        repr(config), str(config), repr(config.api_key), repr(client), str(client),
        repr(dataclasses.replace(config, base_url="http://127.0.0.1:1")),
    ]  # fmt: skip
    assert_hidden(key, *shown, where="a repr")
    assert "********" in repr(config)


def _state_reprs(obj: object, depth: int = 4, seen: set[int] | None = None) -> list[str]:
    """The repr of an object and of everything it holds, as a debugger or error reporter
    dumping its state would show it."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth == 0:
        return []
    seen.add(id(obj))
    shown = [repr(obj)]
    children: list[object] = []
    if isinstance(obj, dict):
        children += [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set | frozenset):
        children += list(obj)
    for attrs in (getattr(obj, "__dict__", None),):
        if isinstance(attrs, dict):
            children += attrs.values()
    for slot in getattr(type(obj), "__slots__", ()):
        if isinstance(slot, str) and hasattr(obj, slot):
            children.append(getattr(obj, slot))
    for child in children:
        if not isinstance(child, str | bytes | int | float | bool | type(None)):
            shown += _state_reprs(child, depth - 1, seen)
    return shown


@pytest.mark.parametrize("seam", ["aiohttp", "httpx"])
async def test_the_clients_whole_state_does_not_show_the_key(key: str, seam: Any) -> None:
    """vars() of the client, its seam, headers and connection pool, a few levels deep."""
    config = load_config(None, env={"KALEYRA_SID": "HX1", "KALEYRA_API_KEY": key})
    config = dataclasses.replace(config, http=HttpConfig(transport=seam))
    async with KaleyraClient.from_config(config) as client:
        shown = _state_reprs(client)
        assert any("Seam" in text for text in shown)  # the walk went into the seam
        assert_hidden(key, *shown, where="the client's state")
        assert any("api-key" in text for text in shown)  # the header is there, masked


def test_the_sandbox_config_does_not_show_its_key(key: str) -> None:
    """The sandbox's expected key is left out of its config's repr."""
    assert_hidden(key, repr(SandboxConfig(api_key=key)), where="SandboxConfig")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("{key}\n", id="trailing-newline"),
        pytest.param("{key}\r\nX-Injected: 1", id="header-injection"),
        pytest.param(" {key}", id="leading-space"),
        pytest.param("{key}\x00", id="nul"),
        pytest.param("{key}é", id="non-ascii"),
    ],
)
async def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it(
    key: str, bad: str
) -> None:
    """A stray newline or non-ASCII character is a ConfigError naming the key, not its value.

    Regression: h11 quoted the illegal header value (the whole key) in its error, which went
    into every row's result and stderr; aiohttp's refusal was classified "response lost", so
    rows that never left were reported unknown; a non-ASCII key raised UnicodeEncodeError
    holding the key, with a traceback.
    """
    value = bad.format(key=key)
    with pytest.raises(ConfigError) as from_env:
        load_config(None, env={"KALEYRA_SID": "HX1", "KALEYRA_API_KEY": value})
    assert str(from_env.value).startswith("environment variable KALEYRA_API_KEY: ")
    for transport in ("aiohttp", "httpx"):
        with pytest.raises(ConfigError) as direct:
            KaleyraClient(sid="HX1", api_key=value, http=HttpConfig(transport=transport))
        assert str(direct.value).startswith("api_key: ")
        assert_hidden(key, *everything_in(direct.value), where="the error")
    assert_hidden(key, *everything_in(from_env.value), where="the error")


# -- a server that echoes the key back -----------------------------------------------------------


def echoing(request: httpx.Request) -> httpx.Response:
    """A hostile or buggy server that quotes the api-key header in every error it sends."""
    echoed = request.headers["api-key"]
    recipients = orjson.loads(request.content)["to"].split(",")
    digits = recipients[0].lstrip("+")
    text = f"key {echoed} rejected"
    answers = {
        "1": httpx.Response(400, json={"code": "E401", "message": text, "error": {"to": text}}),
        "2": httpx.Response(500, json={"error": [{"param": echoed, "message": text}]}),
        "3": httpx.Response(200, text=f"<html><p>{text}</p></html>"),
        "4": httpx.Response(429, json={"message": text}, headers={"Retry-After": "0"}),
        "5": httpx.Response(
            202,
            json={
                "id": "r5",
                "data": [{"message_id": "r5:1", "recipient": digits}],
                "error": {"message": text},
            },
        ),
        "6": httpx.Response(503, text=text),
        "7": httpx.Response(401, json={"code": "E100", "message": text}),
    }
    return answers[digits[-1]]


def echo_config(key: str) -> Config:
    config = load_config(None, env={"KALEYRA_SID": "HX1", "KALEYRA_API_KEY": key})
    return dataclasses.replace(
        config,
        defaults=dataclasses.replace(
            config.defaults, body="Hello", sender="KLRHXA", template_id=TEMPLATE_ID
        ),
        retry=RetryPolicy(max_attempts=2, initial_backoff_s=0, jitter_s=0),
        dispatch=dataclasses.replace(config.dispatch, batch_size=1, concurrency=1),
    )


async def test_errors_that_quote_the_key_are_scrubbed(key: str) -> None:
    """Whatever status carries the echo (400, 500, 2xx garbage, 429, 503, 401), the error the
    caller gets holds no trace of the key: not its text, details, body, args or chain."""
    transport = httpx.MockTransport(echoing)
    async with KaleyraClient(
        sid="HX1",
        api_key=key,
        retry=RetryPolicy(max_attempts=1),
        transport=transport,
    ) as client:
        for last in "123467":
            with pytest.raises(KaleyraError) as caught:
                await client.send_sms(
                    f"+91987654321{last}", body="Hello", sender="KLRHXA", template_id=TEMPLATE_ID
                )
            exc = caught.value
            assert_hidden(key, *everything_in(exc), where=f"error {last}")
            assert_hidden(key, repr(getattr(exc, "details", ())), repr(getattr(exc, "body", {})))
        result = await client.send_sms(
            "+919876543215", body="Hello", sender="KLRHXA", template_id=TEMPLATE_ID
        )
        assert_hidden(key, repr(result), where="a SendResult")


async def test_a_bulk_run_logs_and_records_no_key_at_debug_level(
    key: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """send_bulk with every logger at DEBUG against the echoing server: no log record, result
    line, journal line, summary or reason shows the key."""
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "results.ndjson"
    records = [{"to": f"+91987654321{n}"} for n in "1234567"]
    seen: list[RowResult] = []
    summary = await bulk(
        RecordSource(records),
        echo_config(key),
        BulkOptions(out=str(out)),
        on_results=seen.extend,
        transport=httpx.MockTransport(echoing),
    )
    assert summary.aborted is not None  # the 401 stopped the run
    assert {r.status for r in seen} >= {"failed", "unknown", "sent"}
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    logged = [formatter.format(record) for record in caplog.records]
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    assert_hidden(key, *logged, where="the logs")
    assert_hidden(key, *(repr(r) for r in seen), repr(summary), where="the results")
    files = [out.read_bytes(), Path(f"{out}.journal").read_bytes()]  # noqa: ASYNC240
    assert_hidden(key, *files, where="the files")


# -- the CLI, end to end -------------------------------------------------------------------------


@pytest.fixture
async def sandbox(key: str, tmp_path: Path) -> AsyncIterator[Sandbox]:
    config = SandboxConfig(
        api_key=key,
        faults=parse_faults(
            "503=0.15,500_after_accept=0.1,reset_before=0.1,reset_after_accept=0.1"
        ),
        seed=11,
        ledger_path=str(tmp_path / "ledger.ndjson"),
    )
    async with Sandbox(config) as running:
        yield running


def produced(done: subprocess.CompletedProcess[bytes], *paths: Path) -> list[bytes]:
    """stdout, stderr and every file the run wrote."""
    return [done.stdout, done.stderr, *(p.read_bytes() for p in paths if p.exists())]


BULK = (
    *("--sender", "KLRHXA", "--type", "TXN", "--body", "Hello"),
    *("--template-id", "1107161234567890123", "--no-progress", "-vv"),
)


@pytest.mark.slow
async def test_cli_runs_that_succeed_or_fail_show_the_key_nowhere(
    key: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    """send-bulk at DEBUG level with faults, with a wrong key, with no server; send and status
    with a wrong key: stdout, stderr, results, journal and ledger never hold the key."""
    src = tmp_path / "in.csv"
    write_csv(src, [*numbers(40), "bad"])
    config = tmp_path / "kaleyra.toml"
    config.write_text(
        f'[account]\napi_key = "{key}"\nsid = "{sandbox.sid}"\n'
        "[retry]\ninitial_backoff_s = 0.01\njitter_s = 0\n[dispatch]\nbatch_size = 5\n"
    )
    ledger = tmp_path / "ledger.ndjson"

    # The right key, read from a config file, with faults on.
    out = tmp_path / "ok.ndjson"
    done = await run_cli(
        *["send-bulk", src, "--out", out, "-c", config, "--base-url", sandbox.base_url, *BULK],
        env=cli_env(),
    )
    assert done.returncode == 1, done.stderr.decode()  # one invalid row; faults leave unknowns
    assert b"DEBUG" in done.stderr
    assert sandbox.stats.accepted_recipients > 0
    await sandbox.aclose()  # flush the ledger
    assert_hidden(key, *produced(done, out, Path(f"{out}.journal"), ledger), where="a good run")

    # A wrong key (ours, sent to a sandbox that expects another): 401, the run stops itself.
    async with Sandbox(SandboxConfig(api_key="another-key")) as other:
        account = {"KALEYRA_SID": other.sid, "KALEYRA_API_KEY": key}
        wrong = tmp_path / "wrong.ndjson"
        done = await run_cli(
            *["send-bulk", src, "--out", wrong, "--base-url", other.base_url, *BULK],
            env=cli_env(**account),
        )
        assert done.returncode == 2 and b"stopped itself" in done.stderr
        assert_hidden(key, *produced(done, wrong, Path(f"{wrong}.journal")), where="a 401 run")
        for command in (
            [
                "send",
                "--to",
                "+919876543210",
                "--body",
                "Hi",
                "--sender",
                "KLRHXA",
                "--template-id",
                "1" * 19,
            ],
            ["status", "some-id"],
        ):
            done = await run_cli(
                *[*command, "--base-url", other.base_url, "-vv"], env=cli_env(**account)
            )
            assert done.returncode != 0 and b"401" in done.stderr
            assert_hidden(key, *produced(done), where=f"{command[0]} with a 401")

    # No server at all: connection refused, the run stops itself.
    closed = tmp_path / "closed.ndjson"
    account = {"KALEYRA_SID": "HX1", "KALEYRA_API_KEY": key}
    done = await run_cli(
        *["send-bulk", src, "--out", closed, "--base-url", "http://127.0.0.1:9", *BULK],
        env=cli_env(**account),
    )
    assert done.returncode == 2, done.stderr.decode()
    assert_hidden(key, *produced(done, closed, Path(f"{closed}.journal")), where="no server")


@pytest.mark.parametrize(
    "toml",
    [
        pytest.param('[account]\napi_key = "{key}"\nsid = 5\n', id="wrong-type"),
        pytest.param('[account]\napi_key = "{key}"\nsid = "HX1"\ncolour = 1\n', id="unknown-key"),
        pytest.param('[account]\napi_key = "{key}\nsid = "HX1"\n', id="unterminated-string"),
        pytest.param('[account]\napi_key = "{key}\\n"\nsid = "HX1"\n', id="newline-in-key"),
        pytest.param('[account]\napi_key = "{key}"\n[dispatch]\nbatch_size = 0\n', id="bad-value"),
    ],
)
async def test_config_errors_name_the_key_not_its_value(
    key: str, toml: str, tmp_path: Path
) -> None:
    """A broken config file gives a one-line error (exit 2, no traceback) without the key."""
    config = tmp_path / "kaleyra.toml"
    config.write_text(toml.format(key=key))
    src = tmp_path / "in.csv"
    src.write_text("to\n+919876543210\n")
    done = await run_cli(*["send-bulk", src, "-c", config, *BULK], env=cli_env())
    assert done.returncode == 2
    assert b"Traceback" not in done.stderr
    assert done.stderr.decode().count("error:") == 1
    assert_hidden(key, *produced(done), where="a config error")
