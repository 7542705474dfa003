"""What a queued campaign puts in Redis: jobs (one request's batch) and outcomes (pure).

A job carries everything a worker needs to send one request and everything the collector needs
to write its rows' result lines after a crash (row numbers, segments, encoding); never the API
key, which each worker has in its own configuration. An outcome is what the worker saw: the
accepted request's receipts, or the error with whether the request may have been accepted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

import orjson

from ._batching import Batch, PreparedRow
from ._exceptions import KaleyraError
from ._models import Message, Receipt, SendResult

__all__ = [
    "Job",
    "Outcome",
    "QueuedFailure",
    "batch_id_of",
    "decode_job",
    "decode_outcome",
    "encode_job",
    "failure_outcome",
    "success_outcome",
]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One request of a campaign, as a worker reads it from the stream."""

    campaign: str
    #: Unique within the campaign: the batch's first row number.
    batch_id: str
    batch: Batch


class QueuedFailure(KaleyraError):
    """A worker's request failed: the error as the worker described it (code, fate)."""

    def __init__(self, message: str, *, code: str | None, fate_unknown: bool, attempts: int):
        super().__init__(message)
        self._code = code
        self._fate_unknown = fate_unknown
        self.attempts = attempts

    @property
    def code(self) -> str | None:
        return self._code

    @property
    def fate_unknown(self) -> bool:
        return self._fate_unknown


#: A worker's report: the accepted request, or the failure (with ``maybe_sent``: some attempt
#: may have been accepted, which outweighs a later refusal).
Outcome = SendResult | QueuedFailure


_MESSAGE_FIELDS: Final = dataclasses.fields(Message)


def batch_id_of(batch: Batch) -> str:
    """A batch's id within its campaign: its first row (a row is in one request only)."""
    return str(batch.rows[0].row)


def _fields(m: Message) -> dict[str, Any]:
    # By hand: dataclasses.asdict deep-copies every field, a measurable cost per request.
    return {f.name: getattr(m, f.name) for f in _MESSAGE_FIELDS}


def _message(fields: Mapping[str, Any]) -> Message:
    values = dict(fields)
    values["template_data"] = tuple(tuple(pair) for pair in values.get("template_data", ()))
    values["ref_custom"] = tuple(values.get("ref_custom", ()))
    return Message(**values)


def encode_job(campaign: str, batch: Batch) -> bytes:
    """The job for a batch: its message, and per row its number and count (and, on
    ``/sms/json``, its own message: the node)."""
    job: dict[str, Any] = {"c": campaign, "b": batch_id_of(batch), "m": _fields(batch.message)}
    if batch.endpoint == "sms/json":
        job["e"] = batch.endpoint
        job["r"] = [[r.row, r.to, r.segments, r.encoding, _fields(r.message)] for r in batch.rows]
    else:
        job["r"] = [[r.row, r.to, r.segments, r.encoding] for r in batch.rows]
    return orjson.dumps(job)


def decode_job(data: bytes) -> Job:
    """Raises ValueError for a job that is not ours (a malformed entry)."""
    try:
        raw = orjson.loads(data)
        message = _message(raw["m"])
        endpoint = raw.get("e", "sms")
        if endpoint == "sms/json":
            rows = tuple(
                PreparedRow(row=int(row), to=str(to), base=_message(node), segments=int(seg),
                            encoding=enc)
                for row, to, seg, enc, node in raw["r"]
            )  # fmt: skip
        elif endpoint == "sms":
            rows = tuple(
                PreparedRow(row=int(row), to=str(to), base=message, segments=int(seg),
                            encoding=enc)
                for row, to, seg, enc in raw["r"]
            )  # fmt: skip
        else:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        batch = Batch(message, rows, endpoint=endpoint)
        return Job(campaign=str(raw["c"]), batch_id=str(raw["b"]), batch=batch)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a kaleyra_async job: {exc}") from None


def success_outcome(result: SendResult) -> bytes:
    receipts = [[r.message_id, r.recipient] for r in result.receipts]
    return orjson.dumps(
        {"ok": {"request_id": result.request_id, "receipts": receipts, "attempts": result.attempts}}
    )


def failure_outcome(error: KaleyraError, *, maybe_sent: bool) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": str(error),
                "code": error.code,
                "fate_unknown": bool(error.fate_unknown or maybe_sent),
                "attempts": error.attempts,
            }
        }
    )


def decode_outcome(data: bytes) -> Outcome:
    """Raises ValueError for an outcome that is not ours."""
    try:
        raw: Mapping[str, Any] = orjson.loads(data)
        if "ok" in raw:
            ok = raw["ok"]
            return SendResult(
                request_id=str(ok["request_id"]),
                receipts=tuple(Receipt(str(m), str(r)) for m, r in ok["receipts"]),
                attempts=int(ok["attempts"]),
            )
        error = raw["error"]
        return QueuedFailure(
            str(error["message"]),
            code=error["code"],
            fate_unknown=bool(error["fate_unknown"]),
            attempts=int(error["attempts"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a kaleyra_async outcome: {exc}") from None
