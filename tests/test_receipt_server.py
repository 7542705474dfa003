"""The receiver over HTTP: 200 only once stored, 503 when it cannot store, secret checked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from kaleyra_async._config import Secret
from kaleyra_async._receipt_store import ReceiptReader
from tests.conftest import running_receiver


async def test_get_json_and_form_receipts_are_stored(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    async with running_receiver(db) as url, httpx.AsyncClient(base_url=url) as http:
        answers = [
            await http.get("/dlr", params={"id": "a:1", "status": "Delivered"}),
            await http.post("/", json={"id": "a:2", "status": "UnDelivered", "ref": "r-1"}),
            await http.post("/x", data={"id": "a:3", "status": "SENT"}),
        ]
        assert [a.status_code for a in answers] == [200, 200, 200]
        # Answered 200 means committed: visible to another reader before the server stops.
        with ReceiptReader(db) as reader:
            assert [r.message_id for r in reader.all()] == ["a:1", "a:2", "a:3"]


async def test_renamed_fields_through_settings(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    names = {"id": "msgid", "status": "dlr"}
    async with running_receiver(db, names=names) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/", params={"msgid": "a:1", "dlr": "DELIVRD"})).status_code == 200
    with ReceiptReader(db) as reader:
        assert [(r.message_id, r.status) for r in reader.all()] == [("a:1", "DELIVRD")]


async def test_503_when_the_database_cannot_commit(tmp_path: Path) -> None:
    """A locked database: 503 with Retry-After, so Kaleyra retries; then 200 again."""
    db = tmp_path / "r.sqlite"
    async with (
        running_receiver(db, busy_timeout_s=0.05) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        assert (await http.get("/", params={"id": "a:1", "status": "Sent"})).status_code == 200
        blocker = sqlite3.connect(db, isolation_level=None, timeout=0.1)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            refused = await http.get("/", params={"id": "a:2", "status": "Sent"})
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert (await http.get("/", params={"id": "a:3", "status": "Sent"})).status_code == 200
    with ReceiptReader(db) as reader:
        assert [r.message_id for r in reader.all()] == ["a:1", "a:3"]


async def test_shared_secret(tmp_path: Path, caplog: object) -> None:
    """Without the right header value: 401, nothing stored; the secret is never logged."""
    db = tmp_path / "r.sqlite"
    settings = {"secret_header": "X-Receipt-Secret", "secret": Secret("s3cr3t-value")}
    async with running_receiver(db, **settings) as url, httpx.AsyncClient(base_url=url) as http:
        q = {"id": "a:1", "status": "Sent"}
        assert (await http.get("/", params=q)).status_code == 401
        bad = await http.get("/", params=q, headers={"X-Receipt-Secret": "s3cr3t-valuX"})
        assert bad.status_code == 401 and "s3cr3t" not in bad.text
        good = await http.get("/", params=q, headers={"X-Receipt-Secret": "s3cr3t-value"})
        assert good.status_code == 200
    with ReceiptReader(db) as reader:
        assert len(list(reader.all())) == 1
    assert "s3cr3t" not in str(getattr(caplog, "text", ""))
