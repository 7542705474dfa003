"""Connections to Redis and what their failures mean (the redis-py adapter).

Only this module imports redis-py; the shared limiter and the queue go through :class:`RedisLink`.
Choices that matter:

* RESP2 (``protocol=2``): replies keep one shape whichever server answers (redis-py 8 speaks
  RESP3 by default, where some replies become maps).
* redis-py's own retries are off: :meth:`RedisLink.call` retries an unreachable server itself,
  for at most ``unavailable_timeout_s`` in all, then raises :class:`RedisUnavailableError`, so
  nobody waits forever and nothing goes out unthrottled meanwhile.
* ``socket_timeout`` stays longer than any ``BLOCK`` we ask for (redis-py 8's default of 5 s
  would cut a longer blocking read short).
* The URL may hold a password: only :func:`redacted` forms of it reach logs and errors.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import anyio
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from ._exceptions import ConfigError, KaleyraError, RedisUnavailableError
from ._relay import Relay

__all__ = ["BLOCK_MS", "Coalesced", "RedisLink", "redacted"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The longest blocking read we issue; the socket timeout is longer than this.
BLOCK_MS: Final = 1000
_SOCKET_TIMEOUT_S: Final = 5.0
_CONNECT_TIMEOUT_S: Final = 2.0
_FIRST_BACKOFF_S: Final = 0.05
_MAX_BACKOFF_S: Final = 1.0
#: Failures that mean "Redis is not there for now": a restart, a failover, a network cut.
_UNAVAILABLE: Final = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (loading after a restart)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica that was a primary, mid-failover
    OSError,
)


def redacted(url: str) -> str:
    """The URL as it may be shown: any user name and password removed."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class RedisLink:
    """One asyncio Redis client, with the bounded wait for an unreachable server.

    Args:
        url: the server, e.g. ``redis://127.0.0.1:6379/0``.
        unavailable_timeout_s: how long :meth:`call` keeps retrying an unreachable server.
        max_connections: the pool's size (one per concurrent command).
    """

    def __init__(
        self,
        url: str,
        *,
        unavailable_timeout_s: float = 10.0,
        max_connections: int = 64,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.url = redacted(url)
        self.unavailable_timeout_s = unavailable_timeout_s
        self._sleep = sleep
        try:
            # A blocking pool: a burst of commands waits for a connection instead of failing.
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                url,
                protocol=2,
                retry=Retry(NoBackoff(), 0),
                socket_timeout=_SOCKET_TIMEOUT_S,
                socket_connect_timeout=_CONNECT_TIMEOUT_S,
                max_connections=max_connections,
                timeout=unavailable_timeout_s,
            )
            self.client: redis.asyncio.Redis = redis.asyncio.Redis(connection_pool=pool)
        except ValueError:  # a malformed URL; redis-py's message may quote it: not shown
            raise KaleyraError(f"redis.url: not a Redis URL ({self.url})") from None

    def __repr__(self) -> str:
        return f"<RedisLink {self.url}>"

    @property
    def resend_window_s(self) -> float:
        """How long after a command first ran on Redis a resend of it by :meth:`call` may still
        run there: the lost reply's read may time out first, the retries last the bounded wait,
        and the last one may wait for a pooled connection and open it."""
        return 2 * self.unavailable_timeout_s + _SOCKET_TIMEOUT_S + _CONNECT_TIMEOUT_S

    async def call(self, command: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``command``; while Redis is unreachable, retry with backoff for at most
        ``unavailable_timeout_s``.

        Raises:
            RedisUnavailableError: Redis stayed unreachable that long.
            ConfigError: Redis refused the command (a misconfigured server, an older version
                sharing the limit, a bug): nothing the rows did.
        """
        deadline = math.inf
        backoff_s = _FIRST_BACKOFF_S
        while True:
            try:
                return await command()
            except _UNAVAILABLE as exc:
                now = time.monotonic()
                if deadline == math.inf:
                    deadline = now + self.unavailable_timeout_s
                    logger.warning("Redis at %s unreachable (%s): retrying", self.url, what)
                if now >= deadline:
                    raise RedisUnavailableError(
                        f"Redis at {self.url} unreachable for {self.unavailable_timeout_s:g} s "
                        f"({what}: {type(exc).__name__}); nothing was sent without it",
                        url=self.url,
                    ) from None
                await self._sleep(min(backoff_s, max(deadline - now, 0.0)))
                backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)
            except redis.exceptions.RedisError as exc:
                raise ConfigError(f"Redis at {self.url} refused {what}: {exc}") from None

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create a stream's consumer group reading from the start, unless it exists."""

        async def create() -> None:
            try:
                await self.client.xgroup_create(stream, group, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

        await self.call(create, "creating the consumer group")

    def script(self, source: str) -> Callable[[Sequence[str], Sequence[Any]], Awaitable[Any]]:
        """A Lua script, sent once and then run by its hash."""
        registered = self.client.register_script(source)

        async def run(keys: Sequence[str], args: Sequence[Any]) -> Any:
            return await registered(keys=list(keys), args=list(args))

        return run

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()


class Coalesced:
    """A Lua script whose calls go to Redis together: calls made while a batch of them is in
    flight are sent as the next batch, as one script call per set of keys (one round trip, and
    one command, for the marks or reports of many requests).

    The script takes its calls' arguments in groups of ``arity`` (ARGV[1..arity] the first
    call's, and so on) and answers a list with one value per call. It must be safe to run
    twice (a batch is resent whole when Redis was unreachable, its replies unread).
    """

    def __init__(self, link: RedisLink, source: str, what: str, *, arity: int) -> None:
        self._link = link
        self._source = source
        self._sha = link.client.register_script(source).sha
        self._what = what
        self._arity = arity
        self._queue: list[tuple[tuple[str, ...], Sequence[Any], asyncio.Future[Any]]] = []
        self._relay = Relay(self._serve)

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if len(args) != self._arity:
            raise ValueError(f"{self._what}: {len(args)} arguments, not {self._arity}")
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((tuple(keys), args, waiter))
        try:
            return await self._relay.wait(waiter)
        except BaseException:
            waiter.cancel()  # not sent, unless its batch is out already
            raise

    async def _serve(self) -> None:
        calls, self._queue = self._queue, []
        groups: dict[tuple[str, ...], list[tuple[Sequence[Any], asyncio.Future[Any]]]] = {}
        for keys, args, waiter in calls:
            if not waiter.done():
                groups.setdefault(keys, []).append((args, waiter))
        if not groups:
            return
        try:
            replies = await self._link.call(lambda: self._run(groups), self._what)
        except Exception as exc:
            for _, _, waiter in calls:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        except BaseException:
            self._queue[:0] = calls  # cancelled: the next leader sends them
            raise
        for group, reply in zip(groups.values(), replies, strict=True):
            if isinstance(reply, redis.exceptions.RedisError):
                error = ConfigError(f"Redis at {self._link.url} refused {self._what}: {reply}")
                for _, waiter in group:
                    if not waiter.done():
                        waiter.set_exception(error)
                continue
            for (_, waiter), value in zip(group, reply, strict=True):
                if not waiter.done():
                    waiter.set_result(value)

    async def _run(
        self, groups: dict[tuple[str, ...], list[tuple[Sequence[Any], asyncio.Future[Any]]]]
    ) -> list[Any]:
        calls = [
            (keys, [value for call_args, _ in group for value in call_args])
            for keys, group in groups.items()
        ]
        replies = await self._evalsha(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # a NOSCRIPT reply ran nothing: load the script and send those calls again
            await self._link.client.script_load(self._source)
            again = await self._evalsha([calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _evalsha(self, calls: list[tuple[tuple[str, ...], list[Any]]]) -> list[Any]:
        # EVALSHA by hand: a pipeline holding Script objects first asks SCRIPT EXISTS (a round trip)
        async with self._link.client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies
