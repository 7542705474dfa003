"""Delivery receipts in SQLite (the only sqlite3 import): a durable writer and a reader.

:class:`ReceiptStore` writes from one thread of its own, so the event loop never blocks on the
disk. The database is in WAL mode with ``synchronous=FULL``: a committed transaction is synced
to the WAL before the commit returns, so it survives a killed process and a power cut.
:meth:`ReceiptStore.add` returns only after the transaction holding its receipts committed;
receipts that arrive while the thread commits share its next transaction (group commit).

:class:`ReceiptReader` reads the same file, in the calling thread, for the report and the
status poll (both synchronous, or run off the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import operator
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from ._delivery import ReceiptRecord, ReceiptView
from ._exceptions import ConfigError, StoreError

__all__ = ["ReceiptReader", "ReceiptStore"]

logger = logging.getLogger(__name__)

_COLUMNS: Final = tuple(f.name for f in dataclasses.fields(ReceiptRecord))
#: A record as its row of column values (dataclasses.astuple deep-copies: 10x slower).
_ROW: Final = operator.attrgetter(*_COLUMNS)
_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS receipts (
    seq INTEGER PRIMARY KEY,
    {", ".join(f"{c} {'REAL' if c == 'received_s' else 'TEXT'} NOT NULL" for c in _COLUMNS)},
    UNIQUE (message_id, status, status_trace, timestamp, recipient, ref, source)
);
CREATE INDEX IF NOT EXISTS receipts_by_ref ON receipts (ref, recipient) WHERE ref != '';
"""
# A repeat of a stored receipt (Kaleyra's retry, a duplicate) changes nothing.
_INSERT: Final = (
    f"INSERT OR IGNORE INTO receipts ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
_SELECT: Final = f"SELECT {', '.join(_COLUMNS)} FROM receipts"
_SELECT_VIEW: Final = f"SELECT {', '.join(ReceiptView._fields)} FROM receipts"
#: Receipt requests committed together at most (one transaction).
_MAX_GROUP: Final = 1024
#: Host parameters per lookup query (SQLite's own limit is 32,766).
_LOOKUP_CHUNK: Final = 500


def _connect(path: str, *, busy_timeout_s: float) -> sqlite3.Connection:
    # A connection is used by one thread at a time, not always the same one (anyio's workers).
    conn = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@dataclasses.dataclass(slots=True)
class _Job:
    rows: list[tuple[object, ...]]
    future: asyncio.Future[None]


class ReceiptStore:
    """Receipts written durably, from a thread of its own; an async context manager.

    Args:
        path: the SQLite file (created with its schema if missing).
        max_pending: receipts queued for the thread past which :meth:`add` refuses at once
            (the receiver answers 503 and the sender retries later).
        busy_timeout_s: how long a write waits for another process's lock before failing.
        linger_s: how long the writer waits for more receipts before committing a group.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_pending: int = 50_000,
        busy_timeout_s: float = 5.0,
        linger_s: float = 0.002,
    ) -> None:
        self._path = os.fspath(path)
        self._max_pending = max_pending
        self._busy_timeout_s = busy_timeout_s
        self._linger_s = linger_s
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        #: Transactions committed, for tests and the benchmark.
        self.commits = 0

    async def __aenter__(self) -> ReceiptStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Create the file and its schema, and start the writer thread.

        Raises:
            ConfigError: the file cannot be opened or is not a database.
        """
        if self._thread is not None or self._closed:
            raise RuntimeError("a ReceiptStore can be opened once")
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="receipt-store", daemon=True
        )
        self._thread.start()
        await ready

    async def add(self, records: Sequence[ReceiptRecord]) -> None:
        """Store receipts; return once they are committed and synced.

        Raises:
            StoreError: the store is closed, too far behind, or the commit failed.
        """
        if self._closed or self._loop is None:
            raise StoreError("the receipt store is closed")
        if self._pending + len(records) > self._max_pending:
            raise StoreError("the receipt store is behind; try again later")
        future = self._loop.create_future()
        self._pending += len(records)
        self._jobs.put(_Job(list(map(_ROW, records)), future))
        try:
            # A cancelled caller cancels only its wait: the rows are queued and still commit.
            await future
        finally:
            self._pending -= len(records)

    async def aclose(self) -> None:
        """Commit what is queued, then stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)

    # -- the writer thread --

    def _run(self, ready: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            conn = _connect(self._path, busy_timeout_s=self._busy_timeout_s)
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            error = ConfigError(f"{self._path}: cannot open the receipts database: {exc}")
            loop.call_soon_threadsafe(_settle, [ready], error)
            return
        loop.call_soon_threadsafe(_settle, [ready], None)
        with contextlib.closing(conn):
            stopping = False
            while not stopping:
                jobs = [self._jobs.get()]
                # Linger a moment for company: a commit costs the same for 1 receipt or 100,
                # so under load fewer, larger commits leave more CPU for answering.
                deadline = time.monotonic() + self._linger_s
                with contextlib.suppress(queue.Empty):
                    while len(jobs) < _MAX_GROUP and jobs[-1] is not None:
                        jobs.append(self._jobs.get(timeout=max(0.0, deadline - time.monotonic())))
                stopping = None in jobs
                batch = [job for job in jobs if job is not None]
                if batch:
                    self._commit(conn, batch, loop)

    def _commit(
        self, conn: sqlite3.Connection, batch: list[_Job], loop: asyncio.AbstractEventLoop
    ) -> None:
        error: StoreError | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for job in batch:
                    conn.executemany(_INSERT, job.rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.commits += 1
        except sqlite3.Error as exc:
            logger.error("receipts not stored (%d requests answered 503): %s", len(batch), exc)
            error = StoreError(f"receipts not stored: {exc}")
        loop.call_soon_threadsafe(_settle, [job.future for job in batch], error)


def _settle(futures: list[asyncio.Future[None]], error: Exception | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class ReceiptReader:
    """Read access to a receipts database, in the calling thread.

    Raises:
        ConfigError: the file is missing or is not a receipts database.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        if not os.path.exists(self._path):
            raise ConfigError(f"{self._path}: no such receipts database")
        try:
            self._conn = _connect(self._path, busy_timeout_s=5.0)
            self._conn.execute("SELECT 1 FROM receipts LIMIT 1")
        except sqlite3.Error as exc:
            raise ConfigError(f"{self._path}: not a receipts database ({exc})") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ReceiptReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def by_message_id(self, ids: Iterable[str]) -> dict[str, list[ReceiptView]]:
        """The receipts naming each id, in arrival order (ids without any are left out)."""
        found: dict[str, list[ReceiptView]] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            marks = ",".join("?" * len(chunk))
            query = f"{_SELECT_VIEW} WHERE message_id IN ({marks}) ORDER BY seq"
            for view in self._views(query, chunk):
                found.setdefault(view.message_id, []).append(view)
        return found

    def by_ref(self, refs: Iterable[str]) -> dict[tuple[str, str], list[ReceiptView]]:
        """The receipts carrying each ref, keyed by (ref, recipient digits), in arrival order."""
        found: dict[tuple[str, str], list[ReceiptView]] = {}
        for chunk in _chunks(list(dict.fromkeys(r for r in refs if r))):
            marks = ",".join("?" * len(chunk))
            query = f"{_SELECT_VIEW} WHERE ref IN ({marks}) AND ref != '' ORDER BY seq"
            for view in self._views(query, chunk):
                digits = "".join(ch for ch in view.recipient if ch.isdigit())
                found.setdefault((view.ref, digits), []).append(view)
        return found

    def all(self) -> Iterator[ReceiptRecord]:
        """Every stored receipt in arrival order."""
        try:
            for row in self._conn.execute(f"{_SELECT} ORDER BY seq"):
                yield ReceiptRecord(**dict(zip(_COLUMNS, row, strict=True)))
        except sqlite3.Error as exc:
            raise ConfigError(f"{self._path}: cannot read receipts ({exc})") from None

    def _views(self, query: str, params: Sequence[str]) -> list[ReceiptView]:
        try:
            return list(map(ReceiptView._make, self._conn.execute(query, params)))
        except sqlite3.Error as exc:
            raise ConfigError(f"{self._path}: cannot read receipts ({exc})") from None


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _LOOKUP_CHUNK):
        yield items[start : start + _LOOKUP_CHUNK]
