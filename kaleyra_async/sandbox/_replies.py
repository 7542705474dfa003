"""The sandbox's answer shapes: a JSON body, Kaleyra's error envelope, and the 429 answer."""

from __future__ import annotations

from typing import Any

import orjson

from ._values import Response

__all__ = ["Reject", "envelope", "json_response", "reject_response", "throttled"]

Headers = tuple[tuple[str, str], ...]


class Reject(Exception):
    """A request breaks a rule; :func:`reject_response` turns it into an error envelope."""

    def __init__(
        self, code: str, message: str, *, field: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status


def json_response(status: int, payload: Any, headers: Headers = ()) -> Response:
    """``payload`` as the JSON body of a ``status`` answer."""
    return Response(status=status, body=orjson.dumps(payload), headers=headers)


def envelope(
    status: int, code: str, message: str, *, error: Any = None, headers: Headers = ()
) -> Response:
    """Kaleyra's error shape: ``{"code","message","data":[],"error":{...}}``."""
    if error is None:
        error = {"code": code, "message": message}
    payload = {"code": code, "message": message, "data": [], "error": error}
    return json_response(status, payload, headers)


def reject_response(exc: Reject) -> Response:
    """The envelope of a broken rule; its ``error`` names the field (or null)."""
    error = {"code": exc.code, "message": exc.message, "field": exc.field}
    return envelope(exc.status, exc.code, exc.message, error=error)


def throttled(retry_after_s: float, message: str) -> Response:
    """429 ``E429`` with ``Retry-After`` in whole seconds, rounded up, at least 1."""
    seconds = max(1, int(-(-retry_after_s // 1)))
    error = {"code": "E429", "message": message, "retry_after": seconds}
    return envelope(429, "E429", message, error=error, headers=(("Retry-After", str(seconds)),))
