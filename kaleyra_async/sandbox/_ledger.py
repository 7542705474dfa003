"""The ledger file: one NDJSON line per accepted recipient message, written in batches.

Lines are buffered in memory and written every ``flush_interval_s`` (and as soon as 1 MiB is
waiting, and on close), so a busy sandbox makes a few large writes instead of one per request.
The file is opened for appending: an existing ledger is never truncated.

Durability: a clean stop (Ctrl-C, SIGTERM, leaving ``async with``) writes and fsyncs everything.
A ``kill -9`` loses the lines still buffered: at most ``flush_interval_s`` (0.2 s by default)
or 1 MiB of accepted recipients, whichever is less. A machine crash can also lose what the OS had
not yet written to disk, because only the final flush is fsynced.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import BinaryIO, Final

from ._handler import Acceptance

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
        self._file.write(b"".join(self._buffer))
        self._file.flush()
        self._buffer.clear()
        self._buffered_bytes = 0

    async def run(self) -> None:
        """Flush every ``flush_interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.flush_interval_s)
            self.flush()

    def close(self) -> None:
        """Flush, fsync and close. Closing twice is safe."""
        if self._file is None:
            return
        try:
            self.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None
        logger.debug("ledger %s closed after %d lines", self.path, self.lines_appended)
