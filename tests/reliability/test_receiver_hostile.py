"""Hostile input to the receipt receiver: each gets a 4xx or a timeout, nothing is stored, and
the server goes on answering a good receipt with 200."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from kaleyra_async._config import Secret
from kaleyra_async._receipt_store import ReceiptReader
from tests.conftest import running_receiver

pytestmark = pytest.mark.timeout(60)

SECRET = {"secret_header": "X-Receipt-Secret", "secret": Secret("right-one")}
OK = {"X-Receipt-Secret": "right-one"}
TEN_MB = b"{" + b'"a":"' + b"x" * (10 * 1024 * 1024) + b'"}'


@pytest.mark.parametrize(
    ("method", "kwargs", "status"),
    [
        pytest.param(
            "POST",
            {"content": b"{not json", "headers": {**OK, "content-type": "application/json"}},
            400,
            id="bad-json",
        ),
        pytest.param(
            "POST",
            {"content": TEN_MB, "headers": {**OK, "content-type": "application/json"}},
            413,
            id="10MB-body",
        ),
        pytest.param("POST", {"json": {"status": "Delivered"}, "headers": OK}, 422, id="no-id"),
        pytest.param("GET", {"params": {"id": "a:1"}, "headers": OK}, 422, id="no-status"),
        pytest.param(
            "GET",
            {"params": {"id": "a:1", "status": "Sent"}, "headers": {"X-Receipt-Secret": "wrong"}},
            401,
            id="wrong-secret",
        ),
        pytest.param("GET", {"params": {"id": "a:1", "status": "Sent"}}, 401, id="no-secret"),
        pytest.param(
            "PUT", {"json": {"id": "a:1", "status": "Sent"}, "headers": OK}, 405, id="wrong-method"
        ),
        pytest.param(
            "POST",
            {"content": b"<dlr/>", "headers": {**OK, "content-type": "text/xml"}},
            415,
            id="xml",
        ),
    ],
)
async def test_refused_and_nothing_stored(
    tmp_path: Path, method: str, kwargs: dict[str, object], status: int
) -> None:
    db = tmp_path / "r.sqlite"
    async with running_receiver(db, **SECRET) as url, httpx.AsyncClient(base_url=url) as http:
        answer = await http.request(method, "/dlr", **kwargs)  # type: ignore[arg-type]
        assert answer.status_code == status
        good = await http.get("/dlr", params={"id": "good:1", "status": "Sent"}, headers=OK)
        assert good.status_code == 200
    with ReceiptReader(db) as reader:
        assert [r.message_id for r in reader.all()] == ["good:1"]


async def test_slow_client_times_out_and_others_are_served(tmp_path: Path) -> None:
    """A body that stalls gets 408 after body_timeout_s; meanwhile others get 200."""
    db = tmp_path / "r.sqlite"
    async with running_receiver(db, body_timeout_s=0.5) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /dlr HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n" + b'{"id":"slow:1","status":"Sent"'
        )
        await writer.drain()
        # Another client that never finishes its headers holds only its own connection.
        _, stalled = await asyncio.open_connection(host, int(port))
        stalled.write(b"POST /dlr HTTP/1.1\r\nHost: x\r\nContent-Le")
        await stalled.drain()
        async with httpx.AsyncClient(base_url=url) as http:
            good = await http.get("/", params={"id": "good:1", "status": "Sent"})
            assert good.status_code == 200
        status_line = await asyncio.wait_for(reader.readline(), 10)
        assert status_line.split()[1] == b"408"
        writer.close()
        stalled.close()
    with ReceiptReader(db) as reader_db:
        assert [r.message_id for r in reader_db.all()] == ["good:1"]
