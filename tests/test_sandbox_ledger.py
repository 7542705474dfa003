"""The sandbox ledger file: flushed periodically while serving, fsynced on close, loud on error."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import pytest

from kaleyra_async.sandbox._ledger import LedgerWriter
from kaleyra_async.sandbox._values import Acceptance


def acceptance(request_id: str, *recipients: str) -> Acceptance:
    return Acceptance(
        request_id=request_id,
        recipients=recipients,
        sender="KLRHXA",
        type="TXN",
        body="Hello",
        template_id=None,
        accepted_at="2025-01-31T10:42:23.000+00:00",
    )


class Ticks:
    """A sleep for ``LedgerWriter.run`` that returns at once ``allowed`` times, then blocks."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.waits: list[float] = []
        self.exhausted = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) > self.allowed:
            self.exhausted.set()
            await asyncio.Event().wait()


def message_ids(path: Path) -> list[str]:
    return [orjson.loads(line)["message_id"] for line in path.read_bytes().splitlines()]


def test_lines_are_buffered_until_a_flush(tmp_path: Path) -> None:
    """append() only buffers; nothing reaches the file before a flush (few, large writes)."""
    path = tmp_path / "ledger.ndjson"
    writer = LedgerWriter(path)
    writer.append(acceptance("r1", "919876543210"))
    assert path.read_bytes() == b""
    writer.flush()
    assert message_ids(path) == ["r1:1"]
    writer.close()


async def test_run_flushes_every_interval_before_any_close(tmp_path: Path) -> None:
    """While serving, each interval's lines reach the file without waiting for close()."""
    path = tmp_path / "ledger.ndjson"
    writer = LedgerWriter(path, flush_interval_s=0.2)
    ticks = Ticks(allowed=2)
    writer.append(acceptance("r1", "919876543210", "14155550123"))
    task = asyncio.create_task(writer.run(sleep=ticks))
    await asyncio.wait_for(ticks.exhausted.wait(), timeout=5)
    try:
        assert message_ids(path) == ["r1:1", "r1:2"]  # flushed, not closed: a kill -9 keeps it
        assert ticks.waits == [0.2, 0.2, 0.2]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        writer.close()
    assert writer.lines_appended == 2


async def test_a_write_error_is_logged_and_close_raises(caplog: pytest.LogCaptureFixture) -> None:
    """Disk full: the flusher logs and stops, and close() raises instead of hiding it."""
    writer = LedgerWriter("/dev/full", flush_interval_s=0.2)  # every write fails with ENOSPC
    writer.append(acceptance("r1", "919876543210"))
    with caplog.at_level(logging.ERROR), pytest.raises(OSError, match="No space left"):
        await writer.run(sleep=Ticks(allowed=1))
    assert "write failed" in caplog.text
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    writer.close()  # closing again is harmless
