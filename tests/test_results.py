"""Results file and journal: line format, torn tails, resume state."""

from __future__ import annotations

import io
from pathlib import Path

import anyio
import orjson
import pytest

from kaleyra_async._exceptions import ConfigError
from kaleyra_async._models import RowResult
from kaleyra_async._results import ResultsWriter, journal_path_for, load_progress

KEYS = [
    "row",
    "to",
    "status",
    "message_id",
    "request_id",
    "error_code",
    "error",
    "attempts",
    "segments",
    "encoding",
]


async def test_writer_writes_one_line_per_result_in_schema_order() -> None:
    """Each result is one JSON line with every documented key."""
    out, journal = io.BytesIO(), io.BytesIO()
    writer = ResultsWriter(out, journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await writer.inflight([1, 2])
        writer.write(
            [
                RowResult(row=1, to="+919876543210", status="sent", message_id="a:1", attempts=1),
                RowResult(
                    row=2, to="x", status="invalid", error_code="invalid_to", error="to: bad"
                ),
            ]
        )
        await writer.aclose()
    lines = out.getvalue().splitlines()
    assert [list(orjson.loads(line)) for line in lines] == [KEYS, KEYS]
    assert orjson.loads(lines[0])["message_id"] == "a:1"
    assert orjson.loads(journal.getvalue()) == {"inflight": [1, 2]}


async def test_inflight_is_written_before_it_returns() -> None:
    """The journal line is in the file when inflight() returns: the request may go out then."""
    journal = io.BytesIO()
    writer = ResultsWriter(io.BytesIO(), journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await writer.inflight([7])
        assert journal.getvalue() == b'{"inflight":[7]}\n'
        await writer.aclose()


async def test_pending_results_are_written_even_when_cancelled() -> None:
    """Cancelling the task group still leaves every queued result in the file."""
    out = io.BytesIO()
    writer = ResultsWriter(out, None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.write([RowResult(row=n, to="+1", status="sent") for n in range(1, 4)])
        tg.cancel_scope.cancel()
    assert len(out.getvalue().splitlines()) == 3


def test_load_progress_repairs_torn_lines_and_finds_unresolved(tmp_path: Path) -> None:
    """A half-written last line is cut; journaled rows without a result are unresolved."""
    results = tmp_path / "r.ndjson"
    results.write_bytes(b'{"row":1,"status":"sent"}\n{"row":3,"status":"failed"}\n{"row":2,"sta')
    journal_path_for(results).write_bytes(
        b'{"journal":1,"input":{"path":"/x.csv","size":9}}\n'
        b'{"inflight":[1,2]}\n{"inflight":[3]}\n{"inflight":[4'
    )
    progress = load_progress(results)
    assert results.read_bytes().endswith(b'"failed"}\n')
    assert progress.is_done(1) and progress.is_done(3)
    assert not progress.is_done(2) and not progress.is_done(4)
    assert progress.unresolved == {2}
    assert progress.input == {"path": "/x.csv", "size": 9}


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not json\n", id="not-json"),
        pytest.param(b"[1,2]\n", id="not-object"),
        pytest.param(b'{"row":1}\n{"row":1}\n', id="row-twice"),
        pytest.param(b'{"status":"sent"}\n', id="no-row"),
    ],
)
def test_load_progress_refuses_foreign_files(tmp_path: Path, content: bytes) -> None:
    """Resuming from a file that isn't ours (or is corrupt) is refused with the line named."""
    results = tmp_path / "r.ndjson"
    results.write_bytes(content)
    with pytest.raises(ConfigError, match=r"r\.ndjson:\d"):
        load_progress(results)
