"""Configuration: frozen dataclasses with their checks (``_config_file`` loads them from TOML
and the environment)."""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping
from typing import Any, Final, Literal

from ._delivery import RECEIPT_FIELDS
from ._exceptions import ConfigError
from ._limits import (
    DEFAULT_JSON_BATCH_SIZE,
    DEFAULT_POD_HOSTS,
    MAX_JSON_NODES,
    MAX_RECIPIENTS,
    PODS,
    default_type,
    resolve_host,
)

__all__ = [
    "Config",
    "DispatchConfig",
    "HttpConfig",
    "MessageDefaults",
    "PodConfig",
    "ReceiptsConfig",
    "RedisConfig",
    "RetryPolicy",
    "Secret",
    "check_account",
]

ENV_API_KEY: Final = "KALEYRA_API_KEY"
ENV_SID: Final = "KALEYRA_SID"
ENV_POD: Final = "KALEYRA_POD"
ENV_BASE_URL: Final = "KALEYRA_BASE_URL"
ENV_REDIS_URL: Final = "KALEYRA_REDIS_URL"
ENV_RECEIPTS_SECRET: Final = "KALEYRA_RECEIPTS_SECRET"

#: What an ``api-key`` header value may hold: visible ASCII, no space or control character.
_HEADER_SAFE: Final = re.compile(r"[\x21-\x7e]+")
#: Why a key was refused; the key itself is never part of a message.
API_KEY_RULE: Final = (
    "must be visible ASCII characters without spaces or line breaks (was a newline or quote "
    "copied along with it?)"
)


class Secret:
    """A string that never shows itself in a repr, str, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself, for the one place that must send it."""
        return self._value

    def header_safe(self) -> bool:
        """Whether the value can travel as an HTTP header as it is.

        HTTP libraries quote an illegal header value in their error message (h11 does), and a
        non-ASCII one fails encoding with the value in the exception: refuse it up front.
        """
        return _HEADER_SAFE.fullmatch(self._value) is not None

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling must not be a way round the mask either.
        raise TypeError("Secret cannot be pickled")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PodConfig:
    """Where a pod lives and how fast we may talk to it.

    Kaleyra publishes no REST rate limit; its support recommends about 166 single-message
    requests/s for one integration, so the default stays below that.
    """

    host: str = ""
    rate_per_s: float = 100.0
    #: Optional second budget on recipients per second (0: none).
    recipients_per_s: float = 0.0
    #: Requests allowed at once after an idle spell; 1 spreads requests evenly, so no 1-second
    #: window ever sees more than ``rate_per_s``.
    burst: int = 1

    def __post_init__(self) -> None:
        require(self.rate_per_s > 0, "pods.*.rate_per_s", "must be > 0")
        require(self.recipients_per_s >= 0, "pods.*.recipients_per_s", "must be >= 0")
        require(self.burst >= 1, "pods.*.burst", "must be >= 1")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When and how often to send a request again.

    Only failures that cannot have created an SMS are retried (see ``KaleyraError.safe_to_retry``)
    unless ``retry_ambiguous`` opts in to at-least-once delivery.
    """

    max_attempts: int = 5
    max_total_s: float = 60.0
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 10.0
    #: Random extra wait, 0..jitter_s, added to each backoff so that retries don't march in step.
    jitter_s: float = 0.25
    retry_ambiguous: bool = False

    def __post_init__(self) -> None:
        require(self.max_attempts >= 1, "retry.max_attempts", "must be >= 1")
        require(self.max_total_s > 0, "retry.max_total_s", "must be > 0")
        require(self.initial_backoff_s >= 0, "retry.initial_backoff_s", "must be >= 0")
        require(self.max_backoff_s >= 0, "retry.max_backoff_s", "must be >= 0")
        require(self.jitter_s >= 0, "retry.jitter_s", "must be >= 0")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """The HTTP layer: transport, body encoding, timeouts and connection pool."""

    #: The network library: "aiohttp" (the default) or "httpx".
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    #: Send bodies as JSON (the parameter tables' content type) or as form fields (the samples').
    encoding: Literal["json", "form"] = "json"
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    write_timeout_s: float = 10.0
    pool_timeout_s: float = 30.0
    max_connections: int = 64

    def __post_init__(self) -> None:
        require(
            self.transport in ("aiohttp", "httpx"), "http.transport", "must be aiohttp or httpx"
        )
        require(self.encoding in ("json", "form"), "http.encoding", "must be json or form")
        require(self.max_connections >= 1, "http.max_connections", "must be >= 1")
        for name in ("connect_timeout_s", "read_timeout_s", "write_timeout_s", "pool_timeout_s"):
            require(getattr(self, name) > 0, f"http.{name}", "must be > 0")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MessageDefaults:
    """Message fields used when neither the call nor the input row gives one."""

    sender: str | None = None
    #: None: TXN on the IN pod, DEFAULT elsewhere.
    type: str | None = None
    body: str | None = None
    template_id: str | None = None
    #: Input columns whose values go into ``template_data``.
    template_data_columns: tuple[str, ...] = ()
    unicode: str | None = None
    flash: bool = False
    callback_profile_id: str | None = None
    #: India's DLT principal entity id; its rows go by ``/sms/json`` (``/sms`` has no place).
    entity_id: str | None = None
    #: Prefix for numbers without a country code, e.g. "+91". None: such numbers are invalid.
    country_prefix: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DispatchConfig:
    """The bulk pipeline."""

    #: Recipients per /sms request (at most Kaleyra's MAX_RECIPIENTS).
    batch_size: int = MAX_RECIPIENTS
    #: Longest time a partial batch waits for more identical rows.
    max_wait_ms: float = 50.0
    #: Requests in flight at once.
    concurrency: int = 32
    #: Share of the pod's request rate reserved for OTP requests (priority within it, not a cap).
    otp_share: float = 0.2
    #: Drop a repeat of the same number with the same message (reported as skipped).
    dedupe: bool = False
    #: On Ctrl-C / SIGTERM, how long in-flight requests may take to finish.
    drain_timeout_s: float = 30.0
    #: Personalised rows (a payload of their own): "json" sends them together as the nodes of
    #: ``/sms/json`` requests; "single" sends each as a ``/sms`` request of its own.
    personalised: Literal["json", "single"] = "json"
    #: Nodes per ``/sms/json`` request (at most MAX_JSON_NODES).
    json_batch_size: int = DEFAULT_JSON_BATCH_SIZE

    def __post_init__(self) -> None:
        require(
            1 <= self.batch_size <= MAX_RECIPIENTS,
            "dispatch.batch_size",
            f"must be 1..{MAX_RECIPIENTS}",
        )
        require(self.max_wait_ms >= 0, "dispatch.max_wait_ms", "must be >= 0")
        require(self.concurrency >= 1, "dispatch.concurrency", "must be >= 1")
        require(0 <= self.otp_share < 1, "dispatch.otp_share", "must be in [0, 1)")
        require(self.drain_timeout_s >= 0, "dispatch.drain_timeout_s", "must be >= 0")
        require(
            self.personalised in ("json", "single"),
            "dispatch.personalised",
            "must be json or single",
        )
        require(
            1 <= self.json_batch_size <= MAX_JSON_NODES,
            "dispatch.json_batch_size",
            f"must be 1..{MAX_JSON_NODES}",
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptsConfig:
    """Delivery receipts: the receiver (``receipts serve``) and the report."""

    #: Our field name -> the callback profile's variable name, for names the profile changed
    #: (e.g. ``{id = "msgid"}``); unnamed fields keep the documented names.
    fields: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: A header the callback profile sends with a shared secret; None: no secret is checked.
    secret_header: str | None = None
    #: The shared secret (better: the environment variable KALEYRA_RECEIPTS_SECRET).
    secret: Secret | None = None
    #: Accepted this many hours ago without a final receipt: ``expired`` in the report.
    expire_after_h: float = 72.0
    #: Put a reference naming the run and the request in ``ref`` (when no column fills it).
    reference: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.secret, str):
            object.__setattr__(self, "secret", Secret(self.secret))
        require(self.expire_after_h > 0, "receipts.expire_after_h", "must be > 0")
        unknown = set(self.fields) - set(RECEIPT_FIELDS)
        require(
            not unknown,
            "receipts.fields",
            f"unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(RECEIPT_FIELDS)})",
        )
        require(
            self.secret is None or bool(self.secret_header),
            "receipts.secret_header",
            "is required with a secret",
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RedisConfig:
    """Redis, for a rate limit shared by many processes and for queued campaigns (optional)."""

    #: ``redis://[[user]:password@]host[:port][/db]`` (or ``rediss://``); "" (the default): one
    #: process, no Redis. Kept out of reprs: it may hold a password.
    url: str = dataclasses.field(default="", repr=False)
    #: How long an unreachable Redis is waited for before the run fails (it never sends
    #: unthrottled instead).
    unavailable_timeout_s: float = 10.0
    #: A queued batch whose worker has not renewed it for this long (it died) is claimed by
    #: another worker; longer than a worker can stall, as a live worker renews every third.
    claim_idle_s: float = 30.0
    #: Batches a queued campaign keeps on the stream at once (its requests in flight).
    queue_depth: int = 512

    def __post_init__(self) -> None:
        require(
            self.url == "" or self.url.startswith(("redis://", "rediss://", "unix://")),
            "redis.url",
            "must start with redis://, rediss:// or unix://",
        )
        require(self.unavailable_timeout_s > 0, "redis.unavailable_timeout_s", "must be > 0")
        require(self.claim_idle_s > 0, "redis.claim_idle_s", "must be > 0")
        require(self.queue_depth >= 1, "redis.queue_depth", "must be >= 1")


def default_pods() -> Mapping[str, PodConfig]:
    return types.MappingProxyType({pod: PodConfig(host=DEFAULT_POD_HOSTS[pod]) for pod in PODS})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Everything kaleyra_async needs to talk to one Kaleyra account."""

    sid: str
    api_key: Secret
    pod: str = "IN"
    #: Overrides the pod's host, e.g. "http://127.0.0.1:8787" for the sandbox.
    base_url: str | None = None
    pods: Mapping[str, PodConfig] = dataclasses.field(default_factory=default_pods)
    defaults: MessageDefaults = dataclasses.field(default_factory=MessageDefaults)
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    dispatch: DispatchConfig = dataclasses.field(default_factory=DispatchConfig)
    redis: RedisConfig = dataclasses.field(default_factory=RedisConfig)
    receipts: ReceiptsConfig = dataclasses.field(default_factory=ReceiptsConfig)

    def __post_init__(self) -> None:
        if isinstance(self.api_key, str):  # accept a plain string, keep only the masked form
            object.__setattr__(self, "api_key", Secret(self.api_key))
        pod = check_account(
            sid=self.sid, api_key=self.api_key, pod=self.pod, base_url=self.base_url
        )
        object.__setattr__(self, "pod", pod)

    @property
    def pod_config(self) -> PodConfig:
        """The settings of the configured pod."""
        return self.pods.get(self.pod) or PodConfig(host=DEFAULT_POD_HOSTS[self.pod])

    @property
    def host(self) -> str:
        """The scheme and host requests go to: ``base_url`` when set, else the pod's host."""
        return resolve_host(self.pod, base_url=self.base_url, pod_host=self.pod_config.host)

    @property
    def message_type(self) -> str:
        """The default message type for this pod."""
        return self.defaults.type or default_type(self.pod)


def require(ok: bool, key: str, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {rule}")


def check_account(
    *, sid: str, api_key: Secret, pod: str, base_url: str | None, section: str = "account."
) -> str:
    """Check the account settings every client needs; return the pod in upper case.

    Raises:
        ConfigError: naming the key (``<section>sid``, ...), never the API key's value.
    """
    pod = str(pod).upper()
    require(pod in PODS, f"{section}pod", f"must be one of {', '.join(PODS)}")
    require(bool(sid), f"{section}sid", f"is required (or set {ENV_SID})")
    require(bool(api_key), f"{section}api_key", f"is required (or set {ENV_API_KEY})")
    require(api_key.header_safe(), f"{section}api_key", API_KEY_RULE)
    if base_url is not None:
        require(
            base_url.startswith(("http://", "https://")),
            f"{section}base_url",
            "must start with http:// or https://",
        )
    return pod
