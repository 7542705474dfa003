"""send_bulk's file handling: what it refuses to do so that nothing is lost or sent twice."""

from __future__ import annotations

import dataclasses
import functools
import os
import stat
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import orjson
import pytest
import respx

from kaleyra_async import BulkOptions, ConfigError, RecordSource, load_config
from kaleyra_async._config import Config
from kaleyra_async._models import RowResult
from kaleyra_async._results import journal_path_for
from tests.conftest import bulk, numbers, write_csv


def config() -> Config:
    base = load_config(None, env={"KALEYRA_SID": "HX1", "KALEYRA_API_KEY": "k"})
    return dataclasses.replace(
        base,
        defaults=dataclasses.replace(
            base.defaults, body="Hi", sender="KLRHXA", template_id="1107161234567890123"
        ),
    )


def kaleyra(fail: bool = False) -> tuple[respx.Router, httpx.MockTransport]:
    def answer(request: httpx.Request) -> httpx.Response:
        if fail:
            return httpx.Response(400, json={"code": "E401", "message": "no", "error": {}})
        numbers = orjson.loads(request.content)["to"].split(",")
        data = [{"message_id": f"r:{i}", "recipient": n[1:]} for i, n in enumerate(numbers, 1)]
        return httpx.Response(202, json={"id": "r", "data": data, "error": {}})

    router = respx.Router()
    router.post(url__regex=r"/sms$").mock(side_effect=answer)
    return router, httpx.MockTransport(router.async_handler)


def csv(tmp_path: Path, n: int = 3) -> Path:
    return write_csv(tmp_path / "in.csv", numbers(n))


async def test_a_journal_without_results_still_counts_as_an_earlier_run(tmp_path: Path) -> None:
    """Killed before its first result line: starting afresh would resend what was in flight."""
    out = tmp_path / "out.ndjson"
    journal_path_for(out).write_text('{"journal":1,"input":{}}\n{"inflight":[1,2]}\n')
    router, transport = kaleyra()
    with pytest.raises(ConfigError, match="--resume"):
        await bulk(csv(tmp_path), config(), BulkOptions(out=str(out)), transport=transport)
    assert router.calls.call_count == 0


async def test_a_dry_runs_plan_cannot_be_resumed_into_a_send(tmp_path: Path) -> None:
    """Resuming over 'planned' lines would send nothing and report success."""
    out = str(tmp_path / "out.ndjson")
    src = csv(tmp_path)
    await bulk(src, config(), BulkOptions(out=out, dry_run=True))
    _, transport = kaleyra()
    with pytest.raises(ConfigError, match="dry run"):
        await bulk(src, config(), BulkOptions(out=out, resume=True), transport=transport)
    summary = await bulk(src, config(), BulkOptions(out=out, overwrite=True), transport=transport)
    assert summary.by_status == {"sent": 3}


async def test_resume_refuses_a_changed_input(tmp_path: Path) -> None:
    """Row N must be the same person in both runs: a different file is refused."""
    out = str(tmp_path / "out.ndjson")
    src = csv(tmp_path)
    _, transport = kaleyra()
    await bulk(src, config(), BulkOptions(out=out), transport=transport)
    src.write_text("to\n" + "".join(f"+9197000000{i:02d}\n" for i in range(3)))  # same size
    with pytest.raises(ConfigError, match="not the first run's"):
        await bulk(src, config(), BulkOptions(out=out, resume=True), transport=transport)


@pytest.mark.parametrize("earlier_run", [True, False], ids=["over-a-run", "no-run-yet"])
async def test_resume_refuses_inputs_that_cannot_be_identified(
    tmp_path: Path, earlier_run: bool
) -> None:
    """Records (and stdin) can't be checked to be the same rows: no resume from them, not even
    a first run started with --resume (it could not be resumed after a crash either)."""
    out = tmp_path / "out.ndjson"
    if earlier_run:
        out.write_text('{"row":1,"status":"sent"}\n')
    with pytest.raises(ConfigError, match="as a file"):
        await bulk(
            RecordSource([{"to": "+919800000001"}]),
            config(),
            BulkOptions(out=str(out), resume=True),
        )
    assert out.exists() == earlier_run


async def test_earlier_failures_keep_the_exit_status_after_resume(tmp_path: Path) -> None:
    """A resumed run that sends the rest still reports the rows the first run failed."""
    out = str(tmp_path / "out.ndjson")
    src = csv(tmp_path)
    _, failing = kaleyra(fail=True)
    first = await bulk(src, config(), BulkOptions(out=out), transport=failing)
    assert first.by_status == {"failed": 3}
    _, ok = kaleyra()
    again = await bulk(src, config(), BulkOptions(out=out, resume=True), transport=ok)
    assert again.resumed_done == 3
    assert not again.all_sent


async def test_resume_refuses_changed_message_options(tmp_path: Path) -> None:
    """The rest of a campaign must say what its start said: a different body is refused."""
    out = str(tmp_path / "out.ndjson")
    src = csv(tmp_path)
    _, transport = kaleyra()
    await bulk(src, config(), BulkOptions(out=out), transport=transport)
    changed = config()
    changed = dataclasses.replace(
        changed, defaults=dataclasses.replace(changed.defaults, body="Something else")
    )
    with pytest.raises(ConfigError, match=r"message options differ.*body"):
        await bulk(src, changed, BulkOptions(out=out, resume=True), transport=transport)


def no_to_column(tmp_path: Path) -> Path:
    path = tmp_path / "phones.csv"
    path.write_text("phone\n+919800000001\n")
    return path


async def test_a_bad_header_leaves_an_overwritten_symlink_and_its_target_alone(
    tmp_path: Path,
) -> None:
    """--out a symlink, --overwrite, no 'to' column: the link stays and its target is intact."""
    target = tmp_path / "precious.txt"
    target.write_bytes(b"keep me\n")
    link = tmp_path / "link.ndjson"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="no 'to' column"):
        await bulk(no_to_column(tmp_path), config(), BulkOptions(out=str(link), overwrite=True))
    assert link.is_symlink()
    assert target.read_bytes() == b"keep me\n"
    assert not journal_path_for(link).exists()


async def test_a_bad_header_leaves_a_device_node_alone(tmp_path: Path) -> None:
    """--out a character device (as /dev/null is) is never removed when the run stops early."""
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    with pytest.raises(ConfigError, match="no 'to' column"):
        await bulk(no_to_column(tmp_path), config(), BulkOptions(out=str(node), overwrite=True))
    assert stat.S_ISCHR(node.lstat().st_mode)


async def test_a_bad_header_keeps_the_old_results_despite_overwrite(tmp_path: Path) -> None:
    """The header is checked before --overwrite empties anything: the old run survives."""
    out = tmp_path / "out.ndjson"
    _, transport = kaleyra()
    await bulk(csv(tmp_path), config(), BulkOptions(out=str(out)), transport=transport)
    before = out.read_bytes(), journal_path_for(out).read_bytes()
    with pytest.raises(ConfigError, match="no 'to' column"):
        await bulk(no_to_column(tmp_path), config(), BulkOptions(out=str(out), overwrite=True))
    assert (out.read_bytes(), journal_path_for(out).read_bytes()) == before


async def test_a_bad_header_on_stdin_removes_only_the_files_it_created(tmp_path: Path) -> None:
    """stdin can't be checked first: new files go again, an existing symlink stays."""
    out = tmp_path / "out.ndjson"
    with no_to_column(tmp_path).open("rb") as stdin, pytest.raises(ConfigError, match="'to'"):
        await bulk("-", config(), BulkOptions(out=str(out)), stdin=stdin)
    assert not out.exists() and not journal_path_for(out).exists()
    target = tmp_path / "precious.txt"
    target.write_bytes(b"keep me\n")
    out.symlink_to(target)
    options = BulkOptions(out=str(out), overwrite=True)
    with no_to_column(tmp_path).open("rb") as stdin, pytest.raises(ConfigError, match="'to'"):
        await bulk("-", config(), options, stdin=stdin)
    assert out.is_symlink() and target.read_bytes() == b"keep me\n"
    assert not journal_path_for(out).exists()


async def test_a_bad_header_on_stdin_keeps_the_old_results_despite_overwrite(
    tmp_path: Path,
) -> None:
    """stdin's header is only known once the run has started: --overwrite empties the old
    files with the first write, so a refused header leaves them byte for byte; a good one
    replaces them whole (no line of the old run is left behind)."""
    out = tmp_path / "out.ndjson"
    _, transport = kaleyra()
    await bulk(csv(tmp_path, 5), config(), BulkOptions(out=str(out)), transport=transport)
    before = out.read_bytes(), journal_path_for(out).read_bytes()
    options = BulkOptions(out=str(out), overwrite=True)
    with no_to_column(tmp_path).open("rb") as stdin, pytest.raises(ConfigError, match="'to'"):
        await bulk("-", config(), options, stdin=stdin, transport=transport)
    assert (out.read_bytes(), journal_path_for(out).read_bytes()) == before

    with csv(tmp_path, 2).open("rb") as stdin:
        await bulk("-", config(), options, stdin=stdin, transport=transport)
    assert sorted(orjson.loads(line)["row"] for line in out.read_bytes().splitlines()) == [1, 2]
    journal = [orjson.loads(line) for line in journal_path_for(out).read_bytes().splitlines()]
    assert "journal" in journal[0] and sum("journal" in r for r in journal) == 1


async def test_stopped_before_stdins_header_came_keeps_the_old_results(tmp_path: Path) -> None:
    """Ctrl-C while --overwrite waits for stdin's first line: the old run's files stay whole."""
    out = tmp_path / "out.ndjson"
    _, transport = kaleyra()
    await bulk(csv(tmp_path), config(), BulkOptions(out=str(out)), transport=transport)
    before = out.read_bytes(), journal_path_for(out).read_bytes()
    read_end, write_end = os.pipe()
    stop = anyio.Event()
    try:
        with os.fdopen(read_end, "rb", buffering=0) as stdin:
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    functools.partial(
                        bulk, "-", config(), BulkOptions(out=str(out), overwrite=True),
                        stdin=stdin, transport=transport, stop=stop,
                    )
                )  # fmt: skip
                await anyio.sleep(0.2)  # the reader is blocked on the empty pipe
                stop.set()
    finally:
        os.close(write_end)
    assert (out.read_bytes(), journal_path_for(out).read_bytes()) == before


async def test_overwrite_from_stdin_into_a_device_node_writes_through(tmp_path: Path) -> None:
    """--out /dev/null-like with --overwrite: the late emptying skips what can't be truncated
    (as opening with O_TRUNC did), for stdin as for a file."""
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    _, transport = kaleyra()
    options = BulkOptions(out=str(node), overwrite=True)
    with csv(tmp_path).open("rb") as stdin:
        summary = await bulk("-", config(), options, stdin=stdin, transport=transport)
    assert summary.by_status == {"sent": 3}


async def test_overwrite_from_records_into_a_fifo_writes_through(tmp_path: Path) -> None:
    """A FIFO as --out with --overwrite and records (header known late): lines go through."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = bytearray()

    def read_all() -> None:
        with open(fifo, "rb") as fh:
            got.extend(fh.read())

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    _, transport = kaleyra()
    summary = await bulk(
        RecordSource([{"to": "+919800000001"}, {"to": "+919800000002"}]),
        config(),
        BulkOptions(out=str(fifo), overwrite=True),
        transport=transport,
    )
    reader.join(10)
    assert summary.by_status == {"sent": 2}
    assert sorted(orjson.loads(line)["row"] for line in got.splitlines()) == [1, 2]


async def test_unclosed_quotes_in_different_places_are_one_top_reason(tmp_path: Path) -> None:
    """Real malformed-CSV reasons name their lines; the summary groups them by kind."""
    src = tmp_path / "in.csv"
    filler = "".join(f"{'a' * 1000}\n" for _ in range(140))  # past csv's field size limit
    src.write_text(f'to\n"x\n{filler}+919800000001\n"y\n{filler}+919800000002\n')
    results: list[RowResult] = []
    summary = await bulk(str(src), config(), BulkOptions(dry_run=True), on_results=results.extend)
    malformed = {r.error for r in results if r.error and "malformed" in r.error}
    assert len(malformed) == 2  # two different messages (their line numbers differ) ...
    grouped = [(key, n) for key, n in summary.top_reasons(50) if "malformed" in key]
    assert len(grouped) == 1 and grouped[0][1] == 2, grouped  # ... one reason, counted twice


async def test_resume_over_a_file_that_is_not_ours_leaves_it_intact(tmp_path: Path) -> None:
    """--resume --out notes.txt: refused by name, and its unterminated last line is kept."""
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes\nmy important last line")
    router, transport = kaleyra()
    with pytest.raises(ConfigError, match=r"notes\.txt.*not a kaleyra_async"):
        await bulk(
            csv(tmp_path), config(), BulkOptions(out=str(notes), resume=True), transport=transport
        )
    assert notes.read_bytes() == b"my notes\nmy important last line"
    assert not journal_path_for(notes).exists()
    assert router.calls.call_count == 0


@pytest.mark.slow
async def test_a_dry_runs_repeat_count_keeps_no_message_per_row() -> None:
    """Counting repeats in a dry run holds ~100 B per distinct row, not each personalised body."""

    def records(n: int) -> Iterator[dict[str, str]]:
        # One number, a 2 KB body per row: only the repeat count can hold anything per row.
        return ({"to": "+919800000001", "body": f"{i:06d} " + "x" * 2000} for i in range(n))

    async def peak(n: int) -> int:
        summary = await bulk(
            RecordSource(records(n)),
            config(),
            BulkOptions(dry_run=True),
            on_results=lambda results: None,
        )
        assert summary.by_status == {"planned": n} and summary.duplicates == 0
        return tracemalloc.get_traced_memory()[1]

    tracemalloc.start()
    try:
        await peak(100)  # one-time allocations (threads, imports) out of the way
        tracemalloc.reset_peak()
        small = await peak(5000)  # the bounded caches (4,096 messages) are full by now
        tracemalloc.reset_peak()
        large = await peak(15000)
    finally:
        tracemalloc.stop()
    # Over 10,000 rows, so that what the peak also catches in passing (result lines waiting for
    # the writer, more of them on a loaded machine) weighs little per row.
    per_row = (large - small) / 10000
    # ~100 B of key plus the set's table, which grows in steps of 4x; keeping each row's 2 KB
    # message (the bug this guards against) measured 2.5 KB a row. The bound sits between, with
    # room for the set's resizes and a busy machine (527 B was seen once over 5,000 rows).
    assert per_row < 1000, f"{per_row:.0f} bytes a row"


@pytest.mark.parametrize(
    ("header", "body", "template_id", "refused"),
    [
        pytest.param("to", None, None, True, id="nothing-anywhere"),
        pytest.param("to,body", None, None, False, id="body-column"),
        pytest.param("to,template_id", None, None, False, id="template-id-column"),
        pytest.param("to", None, "1107161234567890123", False, id="template-id-option"),
        pytest.param("to", "Hi", None, False, id="body-option"),
    ],
)
async def test_no_body_anywhere_is_one_config_error_before_any_row(
    tmp_path: Path, header: str, body: str | None, template_id: str | None, refused: bool
) -> None:
    """Without a body or a template id in the options or the columns, every row would be
    invalid for the same reason: the run is refused up front (exit 2), leaving no files. (SG:
    India's template rule is another test's.)"""
    src = tmp_path / "in.csv"
    width = header.count(",")
    src.write_text(f"{header}\n+6591234567{',x' * width}\n")
    base = config()
    plain = dataclasses.replace(
        base,
        pod="SG",
        defaults=dataclasses.replace(base.defaults, type=None, body=body, template_id=template_id),
    )
    out = tmp_path / "out.ndjson"
    router, transport = kaleyra()
    if refused:
        with pytest.raises(ConfigError, match="no message body"):
            await bulk(src, plain, BulkOptions(out=str(out)), transport=transport)
        assert not out.exists() and not journal_path_for(out).exists()
        assert router.calls.call_count == 0
    else:
        await bulk(src, plain, BulkOptions(out=str(out)), transport=transport)
        assert out.exists()


@pytest.mark.parametrize("header", ["to", "to,body"])
async def test_in_pod_without_any_template_id_is_one_config_error(
    tmp_path: Path, header: str
) -> None:
    """On the IN pod, no template id in the options, config or columns: refused before any
    request (India's DLT rule), leaving no files."""
    src = tmp_path / "in.csv"
    src.write_text(f"{header}\n+919800000001{',x' * header.count(',')}\n")
    base = config()
    plain = dataclasses.replace(base, defaults=dataclasses.replace(base.defaults, template_id=None))
    out = tmp_path / "out.ndjson"
    router, transport = kaleyra()
    with pytest.raises(ConfigError, match="DLT"):
        await bulk(src, plain, BulkOptions(out=str(out)), transport=transport)
    assert not out.exists() and not journal_path_for(out).exists()
    assert router.calls.call_count == 0


def with_receipts(reference: bool = True) -> Config:
    base = config()
    return dataclasses.replace(
        base,
        defaults=dataclasses.replace(base.defaults, callback_profile_id="IN_profile"),
        receipts=dataclasses.replace(base.receipts, reference=reference),
    )


async def test_requests_asking_for_receipts_carry_a_reference(tmp_path: Path) -> None:
    """Each request's ref names the run (in the journal) and the request; its rows record it,
    the journal mark too; a row a crash left in flight keeps it on resume."""
    out = tmp_path / "out.ndjson"
    src = csv(tmp_path)
    router, transport = kaleyra()
    await bulk(src, with_receipts(), BulkOptions(out=str(out)), transport=transport)
    sent_ref = orjson.loads(router.calls[0].request.content)["ref"]
    journal = [orjson.loads(line) for line in journal_path_for(out).read_bytes().splitlines()]
    assert sent_ref == f"ka-{journal[0]['run']}-1"
    assert {line["ref"] for line in journal if "inflight" in line} == {sent_ref}
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {r["ref"] for r in rows} == {sent_ref}
    # Row 2's answer lost to a kill -9: its result line never written, its mark kept.
    out.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows if r["row"] != 2))
    await bulk(src, with_receipts(), BulkOptions(out=str(out), resume=True), transport=transport)
    resumed = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [(r["error_code"], r["ref"]) for r in resumed if r["row"] == 2] == [
        ("inflight_at_crash", sent_ref)
    ]


async def test_no_reference_when_turned_off_or_without_receipts(tmp_path: Path) -> None:
    for cfg in (with_receipts(reference=False), config()):
        out = tmp_path / "out.ndjson"
        router, transport = kaleyra()
        await bulk(
            csv(tmp_path), cfg, BulkOptions(out=str(out), overwrite=True), transport=transport
        )
        assert "ref" not in orjson.loads(router.calls[0].request.content)
        assert {orjson.loads(line)["ref"] for line in out.read_bytes().splitlines()} == {None}
