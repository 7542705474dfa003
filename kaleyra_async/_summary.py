"""A bulk run's live counters: what the progress display and the final summary read."""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Sequence
from typing import Final

from ._models import RowResult

__all__ = ["BulkSummary"]

_TOP_REASONS: Final = 5


@dataclasses.dataclass(slots=True)
class BulkSummary:
    """Live counters of a run; the CLI reads them for the progress bar and the final report."""

    rows: int = 0
    #: Requests sent (in a dry run: requests that would be sent).
    requests: int = 0
    #: ``requests`` by endpoint: "sms", "sms/json".
    requests_by_endpoint: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    by_status: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    requests_ok: int = 0
    reasons: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    encodings: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    segments: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    unicode_chars: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: Rows repeating an earlier row's number and message (counted with dedupe or in a dry run).
    duplicates: int = 0
    #: Rows already done by an earlier run (resume), not read again.
    resumed_done: int = 0
    interrupted: bool = False
    #: Why the run stopped itself (every request would have failed: wrong key, no server).
    aborted: str | None = None

    #: Result lines an earlier run wrote, by status (resume).
    earlier: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    @property
    def recorded(self) -> int:
        """Result lines this run wrote."""
        return sum(self.by_status.values())

    @property
    def all_sent(self) -> bool:
        """True when every row, this run's and any earlier run's, was sent (or planned)."""
        statuses = set(self.by_status) | {s for s, n in self.earlier.items() if n}
        return statuses <= {"sent", "planned"}

    def top_reasons(self, n: int = _TOP_REASONS) -> list[tuple[str, int]]:
        """The commonest reasons rows were not sent, with their counts."""
        return self.reasons.most_common(n)

    def count(self, results: Sequence[RowResult]) -> None:
        """Count result lines as they are recorded."""
        for result in results:
            self.by_status[result.status] += 1
            if result.status != "sent" and result.error:
                self.reasons[_reason_key(result)] += 1


#: The "line 12: " that input errors start with, and the line numbers a malformed CSV record's
#: reason ends with: one reason per kind, not one per line (each row's line has them all).
_LINE_PREFIX: Final = re.compile(r"^line \d+: ")
_LINE_DETAILS: Final = re.compile(
    r" \(the row spans lines \d+-\d+\)$|; (?:the quote opens on line|lines?) \d+.*$"
)


def _reason_key(result: RowResult) -> str:
    error = _LINE_DETAILS.sub("", _LINE_PREFIX.sub("", result.error or ""))
    if len(error) > 120:
        error = error[:120].rsplit(" ", 1)[0] + " ..."
    return f"{result.status} {result.error_code or ''}: {error}"
