"""One exception tree for everything kaleyra_async raises.

    KaleyraError                      root: catch this to catch everything below
    ├── ConfigError                   a config file, environment variable or argument is wrong
    ├── ValidationError               a field breaks a documented rule, raised before any request
    ├── StoreError                    a delivery receipt could not be stored (the receiver: 503)
    ├── TransportError                no HTTP response was read
    │   ├── ConnectError              the request never left: safe to send again
    │   │   └── RedisUnavailableError the shared limit or queue (Redis) stayed unreachable
    │   └── ResponseLostError         maybe sent, no answer came: fate unknown
    └── APIError                      Kaleyra (or the sandbox) answered with an error
        ├── AuthenticationError       401 / 403: wrong API key or SID
        ├── RateLimitError            429: too many requests, carries ``retry_after_s``
        ├── ServerError               5xx; ``fate_unknown`` unless it is a 503
        └── RejectedError             any other 4xx: the request was refused as sent

Two properties drive the retry policy and are defined once, here:

* ``safe_to_retry``: the request certainly did not create an SMS, so sending it again cannot
  duplicate one (connection refused, 429, 503).
* ``fate_unknown``: the request may have created SMS that we cannot see. Kaleyra has no
  idempotency key, so resending such a request may send every SMS in it twice.

httpx and tenacity errors are translated into this tree once, at the client boundary, with
``raise ... from exc``. No exception message ever contains the API key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = [
    "STOPS_THE_RUN",
    "APIError",
    "AuthenticationError",
    "ConfigError",
    "ConnectError",
    "KaleyraError",
    "RateLimitError",
    "RedisUnavailableError",
    "RejectedError",
    "ResponseLostError",
    "ServerError",
    "StoreError",
    "TransportError",
    "ValidationError",
    "unwrap_group",
]


class KaleyraError(Exception):
    """Root of every error raised by kaleyra_async."""

    #: How many HTTP attempts were made before this error was raised (0: none).
    attempts: int = 0

    @property
    def safe_to_retry(self) -> bool:
        """True when sending the same request again cannot duplicate an SMS."""
        return False

    @property
    def fate_unknown(self) -> bool:
        """True when the request may have been accepted although no success was seen."""
        return False

    @property
    def code(self) -> str | None:
        """A short machine-readable code for result records (Kaleyra's code where there is one)."""
        return None


class ConfigError(KaleyraError):
    """A configuration value is missing or invalid; the message names the key."""


class StoreError(KaleyraError):
    """A delivery receipt could not be stored durably; the sender should try again later."""


class ValidationError(KaleyraError, ValueError):
    """A field breaks one of the API's documented rules.

    Attributes:
        field: the field at fault, e.g. ``"to"``, ``"template_id"``, ``"sender[3].entity_id"``.
        rule: a short stable name of the rule, e.g. ``"max_length"``, ``"otp_single_recipient"``.
        reason: a human-readable sentence.
    """

    def __init__(self, field: str, rule: str, reason: str, *, code: str | None = None) -> None:
        self.field = field
        self.rule = rule
        self.reason = reason
        self._code = code
        super().__init__(f"{field}: {reason}")

    @property
    def code(self) -> str:
        """The result's ``error_code``: ``invalid_<field>`` unless the rule names its own."""
        return self._code or f"invalid_{self.field.split('[', 1)[0].split('.', 1)[0]}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_validation_error, (self.field, self.rule, self.reason, self._code))


class TransportError(KaleyraError):
    """No HTTP response was read for a request."""

    def __init__(self, message: str, *, method: str = "", url: str = "") -> None:
        self.method = method
        self.url = url
        super().__init__(message)

    @property
    def code(self) -> str:
        return "transport"


class ConnectError(TransportError):
    """The request was never sent (connection refused, DNS, connect or pool timeout)."""

    @property
    def safe_to_retry(self) -> bool:
        return True

    @property
    def code(self) -> str:
        return "connect_error"


class RedisUnavailableError(ConnectError):
    """Redis (the shared rate limit or the campaign queue) stayed unreachable for the bounded
    wait: nothing was sent for want of a turn, never sent unthrottled instead.

    Not retried by the retry policy: the bounded wait was the retrying.
    """

    @property
    def safe_to_retry(self) -> bool:
        return False

    @property
    def code(self) -> str:
        return "redis_unavailable"


class ResponseLostError(TransportError):
    """The request may have reached Kaleyra but no complete response came back."""

    @property
    def fate_unknown(self) -> bool:
        return True

    @property
    def code(self) -> str:
        return "response_lost"


class APIError(KaleyraError):
    """Kaleyra answered with an HTTP error or with a non-empty ``error`` object.

    Attributes:
        status_code: the HTTP status.
        kaleyra_code: Kaleyra's error code (``E401``, ``MSG134``, ...) when the body had one.
        message: Kaleyra's human-readable message, or a description of the HTTP status.
        details: per-item reasons (``MSG134`` lists one per sender ID), as ``(item, reason)``.
        retry_after_s: the ``Retry-After`` delay in seconds, when the response had one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        kaleyra_code: str | None = None,
        details: Sequence[tuple[str, str]] = (),
        retry_after_s: float | None = None,
        pod: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        self.status_code = status_code
        self.kaleyra_code = kaleyra_code
        self.message = message
        self.details = tuple(details)
        self.retry_after_s = retry_after_s
        self.pod = pod
        self.body = body
        prefix = f"HTTP {status_code}" + (f" {kaleyra_code}" if kaleyra_code else "")
        super().__init__(f"{prefix}: {message}")

    @property
    def code(self) -> str:
        return self.kaleyra_code or f"HTTP{self.status_code}"


class AuthenticationError(APIError):
    """401 or 403: the API key or SID was refused."""


class RateLimitError(APIError):
    """429: Kaleyra throttled the account. Nothing was sent."""

    @property
    def safe_to_retry(self) -> bool:
        return True


class ServerError(APIError):
    """A 5xx answer.

    A 503 means the service refused the request before handling it, so it is safe to send again.
    For 500, 502 and 504 the request may have been accepted before the failure: fate unknown.
    """

    @property
    def safe_to_retry(self) -> bool:
        return self.status_code == 503

    @property
    def fate_unknown(self) -> bool:
        return self.status_code != 503


class RejectedError(APIError):
    """Any other 4xx: Kaleyra refused the request as it was sent; sending it again won't help."""


#: Errors that are the account's, the network's or the setup's (a wrong key, no server, Redis
#: refusing a script, redis-py missing), never the rows': every request would fail the same way,
#: so a sender stops and leaves unsent rows for later rather than record them failed.
STOPS_THE_RUN: Final = (AuthenticationError, ConnectError, ConfigError)


def unwrap_group(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error worth reporting from a failed task group.

    Task groups wrap errors in groups; callers of a library (and the CLI's exit codes) want the
    error itself. Ours come first, then any other exception, cancellation last.
    """
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for kind in (KaleyraError, Exception):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0]


def _rebuild_validation_error(
    field: str, rule: str, reason: str, code: str | None
) -> ValidationError:
    return ValidationError(field, rule, reason, code=code)
