"""The client's one request path: per attempt a turn from the rate limiter, the write through
the seam (``_http``), the answer parsed (``_responses``), under the retry policy (``_retry``).

An error raised carries the attempts made (``attempts``) and never the API key (``scrubbed``).
With ``attempts`` (the bulk pipeline's journal) the turn is reserved first, the journal written
while it approaches, and the window checked last, right before the write.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any, TypeVar

from ._attempts import Attempts
from ._config import RetryPolicy, Secret
from ._exceptions import APIError, KaleyraError, RateLimitError, TransportError
from ._http import HttpSeam
from ._protocol import WireRequest
from ._ratelimit import Limiter
from ._retry import call_with_retry
from ._secrecy import scrubbed

__all__ = ["RequestPath"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Builds the limiter (in the running loop: aiolimiter binds to it) and what closes it.
LimiterFactory = Callable[[], tuple[Limiter, Callable[[], Awaitable[None]] | None]]


class RequestPath:
    """Sends requests to one account: the base URL, the headers every request carries, the
    limiter (created on first use), the retry policy.

    Args:
        check_open: raises if the client was closed (checked once a turn is granted).
    """

    def __init__(
        self,
        seam: HttpSeam,
        *,
        base_url: str,
        headers: Sequence[tuple[str, Any]],
        key: Secret,
        pod: str,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]],
        make_limiter: LimiterFactory,
        check_open: Callable[[], None],
    ) -> None:
        self._seam = seam
        self._base_url = base_url
        self._headers = tuple(headers)
        self._key = key
        self._pod = pod
        self._retry = retry
        self._sleep = sleep
        self._make_limiter = make_limiter
        self._check_open = check_open
        self._limiter: Limiter | None = None
        #: Closes the limiter (a Redis connection), once one was made.
        self.close_limiter: Callable[[], Awaitable[None]] | None = None

    async def call(
        self,
        request: WireRequest,
        parse: Callable[..., T],
        *,
        otp: bool = False,
        recipients: int = 1,
        policy: RetryPolicy | None = None,
        attempts: Attempts | None = None,
    ) -> tuple[T, int]:
        """Rate-limit, send, read, retry: the parsed result and the attempts made (an error
        raised carries them as ``attempts``)."""
        limiter = self._limiter or self._open_limiter()
        url = self._base_url + request.path
        headers = [*self._headers, *request.headers]
        made = 0
        debug = logger.isEnabledFor(logging.DEBUG)

        async def attempt() -> T:
            nonlocal made
            turn = await limiter.acquire(otp=otp, recipients=recipients, admit=attempts is None)
            try:
                self._check_open()
            except BaseException:  # closed while it waited: the turn goes unused
                limiter.release(turn)
                raise
            if attempts is not None:
                try:
                    await attempts.sending()
                except BaseException:  # abandoned unsent (a stop, a batch taken, a journal)
                    limiter.release(turn)
                    raise
                await limiter.admit(turn)  # the window check closest to the write
                attempts.writing(made + 1)
            made += 1
            started = perf_counter() if debug else 0.0
            try:
                status, response_headers, content = await self._seam.request(
                    request.method,
                    url,
                    headers,
                    request.content,
                    on_write=lambda: limiter.sent(turn),
                )
            except TransportError as error:
                if debug:
                    logger.debug("%s %s failed: %s", request.method, request.path, error)
                if attempts is not None:
                    attempts.failed(error)
                raise
            if debug:
                logger.debug(
                    "%s %s (%d recipients) -> %d in %.1f ms",
                    request.method,
                    request.path,
                    recipients,
                    status,
                    (perf_counter() - started) * 1000,
                )
            try:
                return parse(status, response_headers, content, pod=self._pod)
            except APIError as exc:
                refused = scrubbed(exc, self._key)
            # Raised outside the except block: a scrubbed copy must not keep the original (the
            # key and all) as its __context__.
            if isinstance(refused, RateLimitError) and refused.retry_after_s:
                # Retry-After is about the account: every sender waits (but no longer than a
                # request may retry, so a proxy's huge value can't stall the run).
                limiter.pause(min(refused.retry_after_s, self._retry.max_total_s))
            if attempts is not None:
                attempts.failed(refused)
            raise refused

        try:
            return await call_with_retry(attempt, policy or self._retry, sleep=self._sleep), made
        except KaleyraError as exc:
            exc.attempts = made
            raise

    def _open_limiter(self) -> Limiter:
        self._limiter, self.close_limiter = self._make_limiter()
        return self._limiter
