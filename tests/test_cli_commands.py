"""The one-shot commands (send, create-senders, delete-senders, status) against the sandbox."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from kaleyra_async._cli import build_parser
from kaleyra_async._cli_common import config_from
from kaleyra_async.sandbox import Sandbox, SandboxConfig
from tests.conftest import cli_env, run_cli

pytestmark = pytest.mark.timeout(60)


async def run(sandbox: Sandbox, command: str, *args: str) -> tuple[int, str, str]:
    """``command`` against the sandbox: exit code, stdout, stderr."""
    done = await run_cli(command, "--base-url", sandbox.base_url, *args, env=cli_env(sandbox))
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_send_prints_one_message_id_per_recipient(sandbox: Sandbox) -> None:
    """`send` sends one request and prints number and message id for each recipient."""
    code, out, err = await run(
        sandbox, "send", "--to", "+919876543210, 09876543211", "--country-prefix", "+91",
        "--sender", "KLRHXA", "--type", "TXN", "--body", "Hello", "--template-id", "1" * 19,
    )  # fmt: skip
    assert code == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert [number for number, _ in lines] == ["+919876543210", "+919876543211"]
    ledger = sandbox.ledger_records()
    assert sorted(r.message_id for r in ledger) == sorted(mid for _, mid in lines)


async def test_send_otp_to_two_numbers_is_refused_before_sending(sandbox: Sandbox) -> None:
    """The OTP guard: exit 2, a message naming the rule, and no request at all."""
    code, _, err = await run(
        sandbox, "send", "--to", "+919876543210,+919876543211",
        "--sender", "KLRHXA", "--type", "OTP", "--body", "1234 is your OTP",
        "--template-id", "1107161234567890123",
    )  # fmt: skip
    assert code == 2
    assert "exactly one recipient" in err
    assert sandbox.stats.requests_total == 0


async def test_send_with_a_refused_key_exits_2_like_send_bulk(sandbox: Sandbox) -> None:
    """A wrong API key is a setup error: exit 2 from `send` too, with the error, no key."""
    done = await run_cli(
        "send", "--base-url", sandbox.base_url, "--to", "+919876543210", "--sender", "KLRHXA",
        "--type", "TXN", "--body", "Hi", "--template-id", "1" * 19,
        env=cli_env(sandbox, KALEYRA_API_KEY="wrong-key"),
    )  # fmt: skip
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "401" in err and "wrong-key" not in err
    assert sandbox.ledger_records() == []


async def test_sender_ids_round_trip_and_status(sandbox: Sandbox, tmp_path: Path) -> None:
    """create-senders from a CSV, delete-senders, and status of a sent message."""
    senders = tmp_path / "senders.csv"
    senders.write_text(
        "sender,description,iso_code,entity_id\n"
        "ADPAIX,Alerts,in,123456789012\nBANKIN,Bank,in,123456789012\n"
    )
    code, out, err = await run(sandbox, "create-senders", str(senders))
    assert code == 0, err
    assert out.startswith("MSG106")
    code, out, err = await run(sandbox, "delete-senders", "ADPAIX", "BANKIN")
    assert code == 0, err
    assert out.startswith("MSG108")
    code, out, err = await run(sandbox, "delete-senders", "ADPAIX")
    assert code == 1
    assert "MSG134" in err
    assert "ADPAIX" in err  # the per-item reason names the sender

    code, out, _ = await run(
        sandbox, "send", "--to", "+919876543210", "--sender", "KLRHXA", "--type", "TXN",
        "--body", "Hi", "--template-id", "1" * 19,
    )  # fmt: skip
    message_id = out.split("\t")[1].strip()
    code, out, err = await run(sandbox, "status", message_id)
    assert code == 0, err
    assert out.split("\t")[:2] == [message_id, "Sent"]


async def test_create_senders_without_a_sender_column_is_a_usage_error(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A CSV without the 'sender' column is refused before any request, naming the column."""
    senders = tmp_path / "senders.csv"
    senders.write_text("name,description\nADPAIX,Alerts\n")
    code, _, err = await run(sandbox, "create-senders", str(senders))
    assert code == 2
    assert "no 'sender' column" in err
    assert sandbox.stats.requests_total == 0


async def test_logging_switches_work_after_the_command_too(sandbox: Sandbox) -> None:
    """`send ... -vv` is accepted like `-vv send ...` (and logs each request)."""
    code, _, err = await run(
        sandbox, "send", "--to", "+919876543210", "--sender", "KLRHXA", "--type", "TXN",
        "--body", "Hi", "--template-id", "1" * 19, "-vv",
    )  # fmt: skip
    assert code == 0, err
    assert "DEBUG kaleyra_async" in err


@pytest.mark.parametrize("entry", ["script", "module"])
async def test_help_names_the_program_as_it_was_run(entry: str) -> None:
    """`kaleyra-async --help` says kaleyra-async; `python -m kaleyra_async --help` says that."""
    script = Path(sys.executable).parent / "kaleyra-async"
    if entry == "script" and not script.exists():
        pytest.skip("the kaleyra-async script is not installed next to this Python")
    command = [str(script)] if entry == "script" else [sys.executable, "-m", "kaleyra_async"]
    done = await anyio.run_process([*command, "--help"], check=False)
    expected = "kaleyra-async" if entry == "script" else "python -m kaleyra_async"
    assert done.stdout.decode().startswith(f"usage: {expected} ")


@pytest.mark.parametrize(
    ("argv0", "expected"),
    [
        ("/venv/bin/kaleyra-async", "kaleyra-async"),
        ("/venv/Scripts/kaleyra-async.exe", "kaleyra-async"),
        ("/repo/kaleyra_async/__main__.py", "python -m kaleyra_async"),
    ],
)
def test_the_program_name_knows_each_launcher(
    argv0: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kaleyra_async._cli_common import program

    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    assert program() == expected


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("https://proxy.example:8443/kaleyra", "https://proxy.example:8443/kaleyra"),
        ("https://user:s3cr3t@proxy.example:8443/k", "https://proxy.example:8443/k"),
        ("http://tok@[::1]:9/", "http://[::1]:9/"),
    ],
)
def test_a_logged_base_url_has_no_userinfo(url: str, logged: str) -> None:
    from kaleyra_async._cli_common import without_userinfo

    assert without_userinfo(url) == logged


async def test_verbose_dry_run_does_not_log_a_proxy_token(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("to\n+919876543210\n")
    done = await run_cli(
        "-v", "send-bulk", src, "--dry-run", "--base-url", "https://user:s3cr3t@proxy.example",
        "--sender", "KLRHXA", "--type", "TXN", "--body", "Hi", "--template-id", "1" * 19,
        "--out", tmp_path / "out.ndjson", "--no-progress",
    )  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "planning" in err and "https://proxy.example" in err
    assert "s3cr3t" not in err


@pytest.mark.parametrize(
    ("python_on_path", "expected"),
    [
        ("/venv/bin/python", "python -m kaleyra_async send-bulk in.csv --out o.ndjson --resume"),
        (
            "/usr/bin/python",
            "/venv/bin/python -m kaleyra_async send-bulk in.csv --out o.ndjson --resume",
        ),
        (None, "/venv/bin/python -m kaleyra_async send-bulk in.csv --out o.ndjson --resume"),
    ],
)
def test_the_resume_command_runs_the_same_python(
    python_on_path: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run as `.venv/bin/python -m kaleyra_async` without activating the venv, the printed
    resume command must name that python, not whichever `python` is on PATH."""
    from kaleyra_async import _cli_bulk

    argv = ["/repo/kaleyra_async/__main__.py", "send-bulk", "in.csv", "--out", "o.ndjson"]
    monkeypatch.setattr(sys, "argv", [*argv, "--overwrite"])
    monkeypatch.setattr(sys, "executable", "/venv/bin/python")
    monkeypatch.setattr(_cli_bulk.shutil, "which", lambda name: python_on_path)
    assert _cli_bulk._resume_command() == expected


def test_a_ctrl_c_as_the_finished_run_shuts_down_still_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGINT in the instant the signal watcher is torn down (the run is over, every row
    recorded) used to end in a traceback and no summary; it now reports the run."""
    from kaleyra_async import _cli, _cli_bulk
    from kaleyra_async.sandbox import SandboxProcess

    async def watcher_hit_while_leaving(stop: anyio.Event, scope: anyio.CancelScope) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise KeyboardInterrupt  # what the default SIGINT handler raises there

    monkeypatch.setattr(_cli_bulk, "watch_signals", watcher_hit_while_leaving)
    src = tmp_path / "in.csv"
    src.write_text("to\n+919876543210\n+919876543211\n")
    out = tmp_path / "out.ndjson"
    with SandboxProcess(SandboxConfig()) as sandbox:
        monkeypatch.setenv("KALEYRA_SID", sandbox.sid)
        monkeypatch.setenv("KALEYRA_API_KEY", sandbox.api_key)
        code = _cli.main(
            [
                "send-bulk", str(src), "--base-url", sandbox.base_url, "--out", str(out),
                "--sender", "KLRHXA", "--type", "TXN", "--body", "Hi",
                "--template-id", "1" * 19, "--no-progress",
            ]
        )  # fmt: skip
    assert code == 0
    assert "Done in" in capsys.readouterr().err
    assert len(out.read_bytes().splitlines()) == 2


@pytest.mark.parametrize("command", [["send", "--to", "+6591234567"], ["send-bulk", "in.csv"]])
def test_callback_profile_id_option_sets_the_default(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--callback-profile-id reaches the message defaults of send and send-bulk."""
    monkeypatch.setenv("KALEYRA_SID", "HX1")
    monkeypatch.setenv("KALEYRA_API_KEY", "k")
    args = build_parser().parse_args([*command, "--callback-profile-id", "IN_09b3dfa7"])
    assert config_from(args).defaults.callback_profile_id == "IN_09b3dfa7"
