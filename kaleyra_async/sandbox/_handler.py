"""The sandbox's request handler: a pure function of state, request and clock.

``handle(state, request, now_s)`` returns a :class:`~._values.Response` that says what to send
back (or that the connection must be reset), how long to wait first, and which recipients were
accepted. It decides every rule, fault and ledger record; the socket server in ``_server`` only
parses HTTP, sleeps, writes and appends to the ledger file, so every behaviour documented in the
package docstring is tested without a socket.

The parts: :mod:`._values` (request, response, acceptance), :mod:`._state` (what persists between
requests), :mod:`._rules` (Kaleyra's limits and shapes), :mod:`._fields` (reading and checking
fields), :mod:`._routes` (send, status, sender IDs) and, here, routing, auth, the rate limit, the
faults and the ``/_sandbox/`` control surface.
"""

from __future__ import annotations

import dataclasses

from ._config import AFTER_ACCEPT_FAULTS
from ._replies import Reject, envelope, json_response, reject_response, throttled
from ._routes import ROUTES
from ._state import SandboxState
from ._values import Request, Response

__all__ = ["handle"]


def handle(state: SandboxState, request: Request, now_s: float) -> Response:
    """Answer one request.

    Args:
        state: the sandbox's mutable state.
        request: the parsed request.
        now_s: the current time as epoch seconds (the server passes a monotonic-derived clock).

    Returns:
        The response, including the fault action, the delay and any ledger acceptance.
    """
    path = request.path
    if path.startswith("/_sandbox/"):
        return _control(state, request)
    response = _api(state, request, now_s)
    latency_ms = state.config.latency_ms
    if latency_ms:
        response = dataclasses.replace(response, delay_ms=response.delay_ms + latency_ms)
    stats = state.stats
    stats.by_status["reset" if response.action == "reset" else str(response.status)] += 1
    if response.acceptance is not None:
        stats.accepted_requests += 1
        stats.accepted_recipients += len(response.acceptance.recipients)
    return response


def _api(state: SandboxState, request: Request, now_s: float) -> Response:
    config = state.config
    state.stats.arrive(now_s)
    parts = request.path.rstrip("/").split("/")
    methods = ROUTES.get(tuple(parts[3:])) if len(parts) >= 4 and parts[1] == "v1" else None
    if methods is None:
        return envelope(404, "E001", f"no such endpoint: {request.path}")
    endpoint = parts[3]
    route = methods.get(request.method)
    if route is None:
        allow = ", ".join(sorted(methods))
        return envelope(
            405, "E002", f"method {request.method} not allowed", headers=(("Allow", allow),)
        )
    if parts[2] != config.sid:
        return envelope(401, "E100", "unknown account SID")
    key = request.headers.get("api-key")
    if key is None:
        return envelope(401, "E100", "missing api-key header")
    if key != config.api_key:
        return envelope(401, "E100", "invalid api-key")

    if state.limiter is not None:
        wait_s = state.limiter.try_acquire(now_s)
        if wait_s:
            return throttled(wait_s, f"too many requests: at most {config.rate_per_s} per second")

    fault = state.draw_fault()
    if fault is not None:
        state.stats.faults[fault] += 1
        if fault == "429":
            return throttled(1.0, "too many requests (injected fault)")
        if fault == "503":
            return envelope(503, "E503", "service temporarily unavailable (injected fault)")
        if fault == "reset_before":
            return Response(status=0, action="reset")

    try:
        response = route(state, request, endpoint, now_s, fault)
    except Reject as exc:
        # The send pages' error samples have no "data"; the sender-ID pages' have "data": [].
        response = reject_response(exc, data=parts[-1] == "sender")

    if fault in AFTER_ACCEPT_FAULTS and response.status < 300:
        if fault == "500_after_accept":
            failed = envelope(500, "E500", "internal server error (injected fault)")
            response = dataclasses.replace(failed, acceptance=response.acceptance)
        elif fault == "reset_after_accept":
            response = Response(status=0, action="reset", acceptance=response.acceptance)
        else:
            response = dataclasses.replace(response, delay_ms=config.slow_ms)
    return response


def _control(state: SandboxState, request: Request) -> Response:
    name = request.path.rstrip("/")[len("/_sandbox/") :]
    method = request.method
    if name == "stats" and method == "GET":
        return json_response(200, state.stats.as_dict())
    if name == "reset" and method == "POST":
        state.reset()
        return json_response(200, {"reset": True})
    if name == "ledger" and method == "GET":
        if state.accepted is None:
            return envelope(409, "E005", "the ledger is not kept in memory (keep_in_memory)")
        return json_response(200, {"records": [r.to_dict() for r in state.ledger_records()]})
    if name == "config" and method == "GET":
        config = state.config
        return json_response(
            200,
            {
                "sid": config.sid,
                "pod": config.pod,
                "rate_per_s": config.rate_per_s,
                "latency_ms": config.latency_ms,
                "slow_ms": config.slow_ms,
                "faults": dict(config.faults.probabilities),
                "seed": config.seed,
                "deliver_after_s": config.deliver_after_s,
                "fail_rules": [dataclasses.asdict(rule) for rule in config.fail_rules],
            },
        )
    if name in ("stats", "reset", "ledger", "config"):
        return envelope(405, "E002", f"method {method} not allowed")
    return envelope(404, "E001", f"no such endpoint: {request.path}")
