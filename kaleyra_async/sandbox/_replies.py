"""The sandbox's answer shapes: a JSON body, Kaleyra's error envelope, and the 429 answer.

The pages' envelope is ``{"code", "message", "data": [], "error": {"<field>": "<message>"}}``
("Create Sender ID"); the send pages' samples (E401, E404) leave ``data`` out, so send and
status errors do too. An error that names no field is ``{"error": "<message>"}``, as RBC192's.
"""

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
        #: The ``error`` object's key: the field at fault, or "error" when there is none.
        self.field = field
        self.status = status


def json_response(status: int, payload: Any, headers: Headers = ()) -> Response:
    """``payload`` as the JSON body of a ``status`` answer."""
    return Response(status=status, body=orjson.dumps(payload), headers=headers)


def envelope(
    status: int,
    code: str,
    message: str,
    *,
    error: Any = None,
    data: bool = True,
    headers: Headers = (),
) -> Response:
    """Kaleyra's error shape: ``{"code","message","data":[],"error":{...}}`` (``data`` only when
    asked); ``error`` defaults to ``{"error": message}``."""
    payload: dict[str, Any] = {"code": code, "message": message}
    if data:
        payload["data"] = []
    payload["error"] = {"error": message} if error is None else error
    return json_response(status, payload, headers)


def reject_response(exc: Reject, *, data: bool = True) -> Response:
    """The envelope of a broken rule: ``error`` is ``{"<field>": "<message>"}``."""
    error = {exc.field or "error": exc.message}
    return envelope(exc.status, exc.code, exc.message, error=error, data=data)


def throttled(retry_after_s: float, message: str) -> Response:
    """429 ``E429`` with ``Retry-After`` in whole seconds, rounded up, at least 1."""
    seconds = max(1, int(-(-retry_after_s // 1)))
    return envelope(429, "E429", message, headers=(("Retry-After", str(seconds)),))
