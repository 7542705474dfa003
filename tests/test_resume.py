"""Reading an earlier run back: resume state, torn tails cut, foreign files refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaleyra_async._exceptions import ConfigError
from kaleyra_async._results import journal_path_for
from kaleyra_async._resume import describe_input, load_progress, same_input

#: The first line of every journal send_bulk writes.
HEADER = b'{"journal":1,"input":{}}\n'


@pytest.mark.parametrize(
    ("journal", "unresolved"),
    [
        pytest.param(
            b'{"inflight":[1,2]}\n{"inflight":[3]}\n{"released":[3]}\n',
            {1, 2},
            id="released-rows-are-sent-again",
        ),
        # Row 1 was in flight when run 1 died. Run 2 (retry_ambiguous) resent it and was
        # refused (released): that says nothing of run 1's request. Row 2, marked and released
        # in run 2 alone, is free to send.
        pytest.param(
            b'{"inflight":[1]}\n{"resumed":"2026-12-04T05:00:00+00:00","input":{}}\n'
            b'{"inflight":[1,2]}\n{"released":[1,2]}\n',
            {1},
            id="a-release-does-not-settle-an-earlier-runs-mark",
        ),
    ],
)
def test_a_release_settles_only_its_own_runs_marks(
    tmp_path: Path, journal: bytes, unresolved: set[int]
) -> None:
    """Released rows are sent again; an earlier run's row of unknown fate stays unresolved."""
    results = tmp_path / "r.ndjson"
    results.write_bytes(b"")
    journal_path_for(results).write_bytes(HEADER + journal)
    assert load_progress(results).unresolved == unresolved


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
        pytest.param(b'{"row":1}\n{"row":true}\n', id="row-not-a-number"),
    ],
)
def test_load_progress_refuses_foreign_files(tmp_path: Path, content: bytes) -> None:
    """Resuming from a file that isn't ours (or is corrupt) is refused with the line named."""
    results = tmp_path / "r.ndjson"
    results.write_bytes(content)
    journal_path_for(results).write_bytes(HEADER)
    with pytest.raises(ConfigError, match=r"r\.ndjson:\d"):
        load_progress(results)


@pytest.mark.parametrize(
    ("results", "journal", "named"),
    [
        pytest.param(b"my notes\nmy important last line", None, "notes.txt", id="no-journal"),
        pytest.param(
            b"my notes\nmy important last line", HEADER, r"notes\.txt:1", id="not-results"
        ),
        pytest.param(
            b'{"row":1,"status":"sent"}\n{"row":2,"sta',
            b"a log of mine\nwithout its last newline",
            r"notes\.txt\.journal:1",
            id="foreign-journal",
        ),
        pytest.param(b"", b"[1,2]\n[3", r"\.journal:1", id="journal-not-an-object"),
    ],
)
def test_resume_leaves_files_that_are_not_ours_byte_for_byte(
    tmp_path: Path, results: bytes, journal: bytes | None, named: str
) -> None:
    """A torn-looking last line is only cut once both files are known to be ours."""
    path = tmp_path / "notes.txt"
    path.write_bytes(results)
    if journal is not None:
        journal_path_for(path).write_bytes(journal)
    with pytest.raises(ConfigError, match=named):
        load_progress(path)
    assert path.read_bytes() == results
    if journal is not None:
        assert journal_path_for(path).read_bytes() == journal


def test_an_edited_file_of_the_same_size_is_another_input(tmp_path: Path) -> None:
    """Resume compares content, not the path: a moved copy matches, an edited one does not."""
    first, moved, edited = (tmp_path / name for name in ("a.csv", "b.csv", "c.csv"))
    first.write_bytes(b"to\n+911\n")
    moved.write_bytes(b"to\n+911\n")
    edited.write_bytes(b"to\n+912\n")
    assert same_input(describe_input(str(first)), describe_input(str(moved)))
    assert not same_input(describe_input(str(first)), describe_input(str(edited)))
    assert describe_input("-") == {}


def test_unresolved_rows_keep_their_requests_reference(tmp_path: Path) -> None:
    """A mark's ref is kept for the rows it left unresolved (a receipt can settle them)."""
    results = tmp_path / "r.ndjson"
    results.write_bytes(b'{"row":1,"status":"sent"}\n')
    journal_path_for(results).write_bytes(
        HEADER + b'{"inflight":[1,2],"ref":"ka-abc-1"}\n{"inflight":[3],"ref":"ka-abc-2"}\n'
        b'{"inflight":[4]}\n'
    )
    progress = load_progress(results)
    assert progress.unresolved == {2, 3, 4}
    assert progress.refs == {2: "ka-abc-1", 3: "ka-abc-2"}
