"""The sandbox as a command and a child process: URL line, clean SIGTERM, flushed ledger."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import orjson
import pytest

from kaleyra_async._cli import build_parser, main
from kaleyra_async.sandbox import FailRule, FaultSpec, Sandbox, SandboxConfig, SandboxProcess
from kaleyra_async.sandbox._command import _config
from kaleyra_async.sandbox._process import config_to_args
from tests.conftest import ok_fields

SEND = {**ok_fields(), "to": "+919876543210,+14155550123"}


def test_subprocess_prints_its_url_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """The child prints its URL, serves, exits 0 on SIGTERM and leaves a flushed ledger."""
    ledger = tmp_path / "ledger.ndjson"
    config = SandboxConfig(ledger_path=str(ledger), flush_interval_s=3600, keep_in_memory=True)
    with SandboxProcess(config) as proc:
        assert proc.base_url.startswith("http://127.0.0.1:")
        assert proc.sid == config.sid
        response = httpx.post(
            f"{proc.base_url}/v1/{proc.sid}/sms",
            json=SEND,
            headers={"api-key": proc.api_key},
        )
        assert response.status_code == 202
        stats = proc.fetch_stats()
        records = httpx.get(f"{proc.base_url}/_sandbox/ledger").json()["records"]
    assert proc.returncode == 0
    assert (stats["requests_total"], stats["accepted_recipients"]) == (1, 2)
    lines = [orjson.loads(line) for line in ledger.read_bytes().splitlines()]
    assert [line["message_id"] for line in lines] == [
        d["message_id"] for d in response.json()["data"]
    ]
    assert lines == records


async def test_async_subprocess_runner() -> None:
    """`async with SandboxProcess(...)` starts and stops the child without blocking the loop."""
    statuses: list[int] = []
    async with (
        SandboxProcess(SandboxConfig(rate_per_s=1)) as proc,
        httpx.AsyncClient(
            base_url=f"{proc.base_url}/v1/{proc.sid}", headers={"api-key": proc.api_key}
        ) as client,
    ):
        # The child limits by its real clock, 1 request per sliding second. On a loaded machine
        # two requests may land a second apart, but 20 back to back cannot all do so (that
        # would take 19 s), so a 429 is certain without depending on the machine's speed.
        while 429 not in statuses and len(statuses) < 20:
            statuses.append((await client.post("/sms", json=SEND)).status_code)
        stats = (await client.get(f"{proc.base_url}/_sandbox/stats")).json()
    assert proc.returncode == 0
    assert statuses[0] == 202
    assert statuses[-1] == 429
    assert set(statuses) == {202, 429}
    assert stats["by_status"] == {"202": len(statuses) - 1, "429": 1}


async def test_a_busy_port_fails_the_start_with_exit_code_1() -> None:
    """If the port is taken the child exits 1 and the runner raises instead of hanging."""
    async with Sandbox() as taken:
        proc = SandboxProcess(SandboxConfig(port=taken.port), startup_timeout_s=10)
        with pytest.raises(RuntimeError, match="exited before it was listening"):
            await proc.astart()
    assert proc.returncode == 1


def test_config_to_args_round_trips_through_the_cli_parser() -> None:
    """The arguments SandboxProcess passes rebuild exactly the same config."""
    config = SandboxConfig(
        port=0,
        rate_per_s=500,
        latency_ms=50.0,
        slow_ms=1500.0,
        faults=FaultSpec((("429", 0.05), ("slow", 0.01))),
        seed=42,
        fail_rules=(FailRule("13", "UnDelivered", "NET-ERR"),),
        ledger_path="/tmp/ledger.ndjson",
        keep_in_memory=False,
        pod="SG",
    )
    args = build_parser().parse_args(["sandbox", *config_to_args(config)])
    assert _config(args) == config
    assert args.handler.__name__ == "run"


def test_cli_defaults_match_the_documented_ones() -> None:
    """Without options: port 8787, sandbox credentials, no faults, ledger not kept in memory."""
    config = _config(build_parser().parse_args(["sandbox"]))
    assert config == SandboxConfig(port=8787, keep_in_memory=False)


def test_bad_fault_spec_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A mistake in --faults stops argument parsing with exit code 2 and says what is wrong."""
    with pytest.raises(SystemExit) as exc_info:
        main(["sandbox", "--faults", "teapot=0.1"])
    assert exc_info.value.code == 2
    assert "unknown fault 'teapot'" in capsys.readouterr().err


def test_invalid_values_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A value the config refuses (negative latency) exits 2 with the reason on stderr."""
    assert main(["sandbox", "--latency-ms", "-5"]) == 2
    assert "latency_ms must be >= 0" in capsys.readouterr().err


def test_realtime_takes_effect_where_permitted_and_says_so_where_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Asked for real-time priority, the child runs at SCHED_FIFO where the system permits it
    and says so; where it does not, the child runs as usual, serves, and says it is not."""
    with SandboxProcess(SandboxConfig(), realtime=True) as proc:
        assert proc.realtime == (os.sched_getscheduler(proc.pid) == os.SCHED_FIFO)
        assert proc.fetch_stats()["requests_total"] == 0

    def refused(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refused)
    with SandboxProcess(SandboxConfig(), realtime=True) as proc:
        assert proc.realtime is False
        assert os.sched_getscheduler(proc.pid) == os.SCHED_OTHER
        assert proc.fetch_stats()["requests_total"] == 0
