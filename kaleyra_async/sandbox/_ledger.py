"""The ledger file: one NDJSON line per accepted recipient message, written in batches.

Lines are buffered in memory and written every ``flush_interval_s`` (and as soon as 1 MiB is
waiting, and on close), so a busy sandbox makes a few large writes instead of one per request.
The file is opened for appending: an existing ledger is never truncated.

Durability, which matters because the ledger is the oracle for "no SMS was sent twice":

* A clean stop (Ctrl-C, SIGTERM, leaving ``async with``) writes and fsyncs everything.
* ``kill -9`` of the sandbox loses only the lines still in this process's buffer: those of the
  requests accepted since the last flush, i.e. about ``flush_interval_s`` (0.2 s by default) of
  traffic and never more than 1 MiB. Lines already flushed are in the OS page cache and survive
  the process. A client that got a 202 for a lost line will look "sent, not in the ledger".
* A machine crash or power loss can also lose what the OS had not yet written to disk, since
  only the final flush is fsynced (an fsync per flush would cost milliseconds on the loop).
* A write error (disk full) is logged and stops the periodic flush; :meth:`LedgerWriter.close`
  then retries and raises if it fails again, so a broken ledger is never silent. A partial write
  followed by the retry may repeat a line: a loud false alarm, never a missed double send.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import BinaryIO, Final

from ._values import Acceptance

__all__ = ["LedgerWriter"]

logger = logging.getLogger(__name__)

_MAX_BUFFER_BYTES: Final = 1 << 20


class LedgerWriter:
    """Buffered, append-only NDJSON writer for accepted recipients.

    Args:
        path: the ledger file; created if missing, appended to if present.
        flush_interval_s: how often :meth:`run` writes the buffer out.
    """

    def __init__(self, path: str | os.PathLike[str], *, flush_interval_s: float = 0.2) -> None:
        self.path = os.fspath(path)
        self.flush_interval_s = flush_interval_s
        self._buffer: list[bytes] = []
        self._buffered_bytes = 0
        self._file: BinaryIO | None = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        #: Lines appended so far (written or still buffered).
        self.lines_appended = 0

    def append(self, acceptance: Acceptance) -> None:
        """Queue the lines of one accepted request; writes at once past 1 MiB of backlog."""
        if self._file is None:
            raise RuntimeError("the ledger is closed")
        chunk = acceptance.ndjson()
        self._buffer.append(chunk)
        self._buffered_bytes += len(chunk)
        self.lines_appended += len(acceptance.recipients)
        if self._buffered_bytes >= _MAX_BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines to the file (to the OS, not necessarily to disk)."""
        if self._file is None or not self._buffer:
            return
        # Synchronous on the event loop on purpose: one write() of at most ~1 MiB into the page
        # cache, with no fsync, costs about what a thread hop would, and keeps the order with
        # close() plain to see.
        self._file.write(b"".join(self._buffer))
        self._file.flush()
        self._buffer.clear()
        self._buffered_bytes = 0

    async def run(self, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Flush every ``flush_interval_s`` until cancelled (``sleep`` is injected in tests).

        Raises:
            OSError: a write failed; it is logged first, as nobody may await this task.
        """
        while True:
            await sleep(self.flush_interval_s)
            try:
                self.flush()
            except OSError:
                logger.exception("ledger %s: write failed; periodic flushing stopped", self.path)
                raise

    def close(self) -> None:
        """Flush, fsync and close. Closing twice is safe."""
        if self._file is None:
            return
        try:
            self.flush()
            os.fsync(self._file.fileno())
        finally:
            # Forget the file first: if closing it raises too, a second close() is still a no-op.
            file, self._file = self._file, None
            file.close()
        logger.debug("ledger %s closed after %d lines", self.path, self.lines_appended)
