"""The receipts database: durable group commits, duplicates ignored, lookups, failures."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from kaleyra_async._delivery import ReceiptRecord
from kaleyra_async._exceptions import ConfigError, StoreError
from kaleyra_async._receipt_store import ReceiptReader, ReceiptStore


def rec(mid: str, status: str = "Delivered", **kw: object) -> ReceiptRecord:
    return ReceiptRecord(message_id=mid, status=status, **kw)  # type: ignore[arg-type]


async def test_added_receipts_are_committed_in_wal_full(tmp_path: Path) -> None:
    """What add() returned for is readable from another connection; the file is WAL."""
    db = tmp_path / "r.sqlite"
    async with ReceiptStore(db) as store:
        await store.add([rec("a:1"), rec("a:2", recipient="+9199")])
        other = sqlite3.connect(db)
        assert other.execute("SELECT count(*) FROM receipts").fetchone() == (2,)
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        other.close()


async def test_concurrent_adds_share_commits(tmp_path: Path) -> None:
    """Receipts arriving while a commit runs go in the next one (fewer commits than adds)."""
    async with ReceiptStore(tmp_path / "r.sqlite") as store:
        await asyncio.gather(*(store.add([rec(f"a:{n}")]) for n in range(500)))
        assert store.commits < 500
    with ReceiptReader(tmp_path / "r.sqlite") as reader:
        assert len(list(reader.all())) == 500


async def test_duplicates_are_stored_once(tmp_path: Path) -> None:
    async with ReceiptStore(tmp_path / "r.sqlite") as store:
        for _ in range(3):
            await store.add([rec("a:1", timestamp="2025-04-17 18:35:20")])
        await store.add([rec("a:1", "Sent")])
    with ReceiptReader(tmp_path / "r.sqlite") as reader:
        assert [r.status for r in reader.all()] == ["Delivered", "Sent"]


async def test_lookups_by_id_and_by_ref(tmp_path: Path) -> None:
    """Ids in arrival order; refs keyed by (ref, recipient digits); unknown ids kept."""
    async with ReceiptStore(tmp_path / "r.sqlite") as store:
        await store.add([rec("a:1", "Sent"), rec("orphan:9"), rec("a:1")])
        await store.add([rec("b:2", ref="run-7", recipient="919999")])
    with ReceiptReader(tmp_path / "r.sqlite") as reader:
        found = reader.by_message_id(["a:1", "zzz", *[f"x{n}" for n in range(1200)]])
        assert [r.status for r in found["a:1"]] == ["Sent", "Delivered"]
        assert set(found) == {"a:1"}
        assert [r.message_id for r in reader.by_ref(["run-7"])[("run-7", "919999")]] == ["b:2"]
        assert "orphan:9" in {r.message_id for r in reader.all()}


async def test_a_locked_database_fails_the_add(tmp_path: Path) -> None:
    """When the commit cannot happen, add() raises StoreError (the receiver's 503)."""
    db = tmp_path / "r.sqlite"
    async with ReceiptStore(db, busy_timeout_s=0.05) as store:
        await store.add([rec("a:1")])
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError):
            await store.add([rec("a:2")])
        blocker.execute("ROLLBACK")
        blocker.close()
        await store.add([rec("a:3")])
    with ReceiptReader(db) as reader:
        assert [r.message_id for r in reader.all()] == ["a:1", "a:3"]


async def test_too_far_behind_refuses_at_once(tmp_path: Path) -> None:
    async with ReceiptStore(tmp_path / "r.sqlite", max_pending=2) as store:
        with pytest.raises(StoreError):
            await store.add([rec("a:1"), rec("a:2"), rec("a:3")])


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "r.sqlite"
    bad.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ConfigError, match=r"r\.sqlite"):
        async with ReceiptStore(bad):
            pass
    with pytest.raises(ConfigError, match="no such receipts database"):
        ReceiptReader(tmp_path / "missing.sqlite")
