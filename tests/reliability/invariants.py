"""The money-and-trust invariants, checked against the sandbox's ledger.

One audit for every reliability test and for the soak table, so "nothing lost, nothing sent
twice" means the same thing everywhere:

* every input row has exactly one result line (none lost, none repeated);
* every ``sent`` row's message id is in the ledger, for that row's number;
* no number is in the ledger twice: with ``at_most_once`` (no ``--retry-ambiguous``) not at all,
  otherwise only for rows that ended ``unknown``;
* no row the sandbox accepted is reported ``failed``, ``invalid`` or ``skipped``.

Rows are matched to ledger lines by number, so inputs given to an audit must use one distinct
number per row. A run with ``--retry-ambiguous`` chose at-least-once delivery: its resent rows
end ``sent`` and may be in the ledger twice, which this audit rightly counts as duplicate sends.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson


@dataclasses.dataclass(frozen=True)
class LedgerLine:
    message_id: str
    recipient: str


def ledger_from_file(path: Path) -> Iterator[LedgerLine]:
    """The sandbox's ``--ledger`` NDJSON file, one accepted recipient a line."""
    with path.open("rb") as fh:
        for line in fh:
            record = orjson.loads(line)
            yield LedgerLine(record["message_id"], record["recipient"])


def ledger_from_records(records: Iterable[Any]) -> Iterator[LedgerLine]:
    """``Sandbox.ledger_records()`` (anything with ``message_id`` and ``recipient``)."""
    for record in records:
        yield LedgerLine(record.message_id, record.recipient)


@dataclasses.dataclass
class Audit:
    rows: int
    statuses: collections.Counter[str]
    #: Rows with no result line.
    lost: list[int]
    #: Rows with more than one result line.
    repeated: list[int]
    #: Numbers accepted more than once whose row is not ``unknown``.
    duplicate_sends: list[str]
    #: Numbers accepted more than once in all (``unknown`` rows included).
    accepted_twice: list[str]
    #: ``sent`` rows whose message id is not in the ledger for their number.
    sent_not_in_ledger: list[int]
    #: Rows the sandbox accepted but whose result says it did not go out.
    accepted_but_not_sent: list[int]
    #: Ledger lines no sent or unknown row accounts for.
    unaccounted: list[str]
    #: The run did not opt in to ``--retry-ambiguous``: nothing may be accepted twice at all.
    at_most_once: bool = True

    @property
    def unknown(self) -> int:
        return self.statuses["unknown"]

    def problems(self) -> list[str]:
        """Every broken invariant, in words; empty when the run is sound."""
        out = []
        names = [
            "lost",
            "repeated",
            "duplicate_sends",
            "sent_not_in_ledger",
            "accepted_but_not_sent",
            "unaccounted",
        ]
        if self.at_most_once:
            names.append("accepted_twice")
        for name in names:
            found = getattr(self, name)
            if found:
                out.append(f"{name}: {len(found)} (first: {found[:5]})")
        return out

    def assert_sound(self) -> None:
        assert not self.problems(), "; ".join(self.problems())


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every line of a results file; a torn or unparsable line fails the audit loudly."""
    return list(iter_results(path))


def iter_results(path: Path) -> Iterator[dict[str, Any]]:
    """The lines of a results file one at a time (a million dicts at once is a gigabyte)."""
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


def audit(
    rows: int,
    results: Iterable[dict[str, Any]],
    ledger: Iterable[LedgerLine],
    *,
    at_most_once: bool = True,
) -> Audit:
    """Check a run of ``rows`` input rows (numbered 1..rows) against the sandbox's ledger.

    ``at_most_once``: the run did not use ``--retry-ambiguous``, so a number in the ledger twice
    is a resend whatever its row says, ``unknown`` included.
    """
    by_row: dict[int, dict[str, Any]] = {}
    repeated: list[int] = []
    statuses: collections.Counter[str] = collections.Counter()
    for record in results:
        row = record["row"]
        if row in by_row:
            repeated.append(row)
        keep = ("row", "to", "status", "message_id")
        by_row[row] = {key: record[key] for key in keep}
        statuses[record["status"]] += 1
    lost = [row for row in range(1, rows + 1) if row not in by_row]

    ids_by_number: dict[str, list[str]] = collections.defaultdict(list)
    for line in ledger:
        ids_by_number[line.recipient].append(line.message_id)

    row_by_number = {r["to"]: r for r in by_row.values() if r["status"] != "invalid"}
    duplicate_sends = []
    accepted_twice = []
    accepted_but_not_sent = []
    unaccounted = []
    for number, ids in ids_by_number.items():
        record = row_by_number.get(number)
        if record is None:
            unaccounted.append(number)
            continue
        if len(ids) > 1:
            accepted_twice.append(number)
            if record["status"] != "unknown":
                duplicate_sends.append(number)
        if record["status"] not in ("sent", "unknown"):
            accepted_but_not_sent.append(record["row"])
    sent_not_in_ledger = [
        r["row"]
        for r in by_row.values()
        if r["status"] == "sent" and r["message_id"] not in ids_by_number.get(r["to"], ())
    ]
    return Audit(
        rows=rows,
        statuses=statuses,
        lost=lost,
        repeated=repeated,
        duplicate_sends=duplicate_sends,
        accepted_twice=accepted_twice,
        sent_not_in_ledger=sorted(sent_not_in_ledger),
        accepted_but_not_sent=sorted(accepted_but_not_sent),
        unaccounted=unaccounted,
        at_most_once=at_most_once,
    )
