"""Which rate limiter a client uses: the in-process one, or the one shared through Redis when
a Redis URL is configured (redis-py is imported only then: an optional dependency)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ._config import PodConfig, RedisConfig
from ._exceptions import ConfigError
from ._ratelimit import Limiter, RequestLimiter

__all__ = ["make_limiter"]


def make_limiter(
    rate: PodConfig, *, otp_share: float, redis: RedisConfig | None, scope: str
) -> tuple[Limiter, Callable[[], Awaitable[None]] | None]:
    """Return the limiter for one account and pod (``scope``, e.g. ``"HX1:IN"``) and what
    closes it (None for the in-process limiter).

    Raises:
        ConfigError: a Redis URL is set but redis-py is not installed.
    """
    if redis is None or not redis.url:
        limiter = RequestLimiter(
            rate.rate_per_s,
            burst=rate.burst,
            otp_share=otp_share,
            recipients_per_s=rate.recipients_per_s,
        )
        return limiter, None
    try:
        from ._redis import RedisLink
        from ._redis_limiter import SharedLimiter
    except ImportError:
        raise ConfigError(
            "redis.url is set but redis-py is not installed: pip install 'kaleyra_async[redis]'"
        ) from None
    link = RedisLink(redis.url, unavailable_timeout_s=redis.unavailable_timeout_s)
    shared = SharedLimiter(
        link,
        scope=scope,
        rate_per_s=rate.rate_per_s,
        burst=rate.burst,
        otp_share=otp_share,
        recipients_per_s=rate.recipients_per_s,
    )

    async def close() -> None:
        try:
            await shared.aclose()  # tells Redis the turns still to give back or move
        finally:
            await link.aclose()

    return shared, close
