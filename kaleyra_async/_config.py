"""Configuration: frozen dataclasses, loaded from TOML and the environment.

Precedence, lowest first: built-in defaults, the TOML file, environment variables
(``KALEYRA_API_KEY``, ``KALEYRA_SID``, ``KALEYRA_POD``, ``KALEYRA_BASE_URL``), then whatever the
caller (for example the CLI) replaces with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin, get_type_hints

from ._exceptions import ConfigError
from ._limits import DEFAULT_POD_HOSTS, MAX_RECIPIENTS, PODS, default_type, resolve_host

__all__ = [
    "Config",
    "DispatchConfig",
    "HttpConfig",
    "MessageDefaults",
    "PodConfig",
    "RetryPolicy",
    "Secret",
    "check_account",
    "load_config",
]

ENV_API_KEY: Final = "KALEYRA_API_KEY"
ENV_SID: Final = "KALEYRA_SID"
ENV_POD: Final = "KALEYRA_POD"
ENV_BASE_URL: Final = "KALEYRA_BASE_URL"

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
        _require(self.rate_per_s > 0, "pods.*.rate_per_s", "must be > 0")
        _require(self.recipients_per_s >= 0, "pods.*.recipients_per_s", "must be >= 0")
        _require(self.burst >= 1, "pods.*.burst", "must be >= 1")


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
        _require(self.max_attempts >= 1, "retry.max_attempts", "must be >= 1")
        _require(self.max_total_s > 0, "retry.max_total_s", "must be > 0")
        _require(self.initial_backoff_s >= 0, "retry.initial_backoff_s", "must be >= 0")
        _require(self.max_backoff_s >= 0, "retry.max_backoff_s", "must be >= 0")
        _require(self.jitter_s >= 0, "retry.jitter_s", "must be >= 0")


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
        _require(
            self.transport in ("aiohttp", "httpx"), "http.transport", "must be aiohttp or httpx"
        )
        _require(self.encoding in ("json", "form"), "http.encoding", "must be json or form")
        _require(self.max_connections >= 1, "http.max_connections", "must be >= 1")
        for name in ("connect_timeout_s", "read_timeout_s", "write_timeout_s", "pool_timeout_s"):
            _require(getattr(self, name) > 0, f"http.{name}", "must be > 0")


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

    def __post_init__(self) -> None:
        _require(
            1 <= self.batch_size <= MAX_RECIPIENTS,
            "dispatch.batch_size",
            f"must be 1..{MAX_RECIPIENTS}",
        )
        _require(self.max_wait_ms >= 0, "dispatch.max_wait_ms", "must be >= 0")
        _require(self.concurrency >= 1, "dispatch.concurrency", "must be >= 1")
        _require(0 <= self.otp_share < 1, "dispatch.otp_share", "must be in [0, 1)")
        _require(self.drain_timeout_s >= 0, "dispatch.drain_timeout_s", "must be >= 0")


def _default_pods() -> Mapping[str, PodConfig]:
    return types.MappingProxyType({pod: PodConfig(host=DEFAULT_POD_HOSTS[pod]) for pod in PODS})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Everything kaleyra_async needs to talk to one Kaleyra account."""

    sid: str
    api_key: Secret
    pod: str = "IN"
    #: Overrides the pod's host, e.g. "http://127.0.0.1:8787" for the sandbox.
    base_url: str | None = None
    pods: Mapping[str, PodConfig] = dataclasses.field(default_factory=_default_pods)
    defaults: MessageDefaults = dataclasses.field(default_factory=MessageDefaults)
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    dispatch: DispatchConfig = dataclasses.field(default_factory=DispatchConfig)

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


def _require(ok: bool, key: str, rule: str) -> None:
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
    _require(pod in PODS, f"{section}pod", f"must be one of {', '.join(PODS)}")
    _require(bool(sid), f"{section}sid", f"is required (or set {ENV_SID})")
    _require(bool(api_key), f"{section}api_key", f"is required (or set {ENV_API_KEY})")
    _require(api_key.header_safe(), f"{section}api_key", API_KEY_RULE)
    if base_url is not None:
        _require(
            base_url.startswith(("http://", "https://")),
            f"{section}base_url",
            "must start with http:// or https://",
        )
    return pod


# -- loading -------------------------------------------------------------------------------------

_SECTIONS: Final[Mapping[str, type[Any]]] = {
    "defaults": MessageDefaults,
    "retry": RetryPolicy,
    "http": HttpConfig,
    "dispatch": DispatchConfig,
}
_ACCOUNT_KEYS: Final = frozenset({"sid", "api_key", "api_key_env", "pod", "base_url"})


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    require_credentials: bool = True,
) -> Config:
    """Load a :class:`Config` from a TOML file and the environment.

    Args:
        path: a TOML file laid out like ``config.example.toml``; None uses only the environment.
        env: the environment to read (default: ``os.environ``).
        require_credentials: when False, a missing SID or key becomes a placeholder, for dry runs.

    Raises:
        ConfigError: the file cannot be read or parsed, a key is unknown, or a value is invalid.
            The message names the key, never the API key's value.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None

    unknown = set(data) - {"account", "pods", *_SECTIONS}
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")

    account = _table(data, "account")
    for key in account:
        if key not in _ACCOUNT_KEYS:
            raise ConfigError(f"account.{key}: unknown key")
        # Checked even when the environment overrides it: a wrong file is wrong everywhere.
        _str_or_none(account[key], f"account.{key}")
    key_env = account.get("api_key_env") or ENV_API_KEY
    key_from, api_key = next(
        (
            (where, value)
            for where, value in (
                (f"environment variable {ENV_API_KEY}", env.get(ENV_API_KEY)),
                (f"environment variable {key_env}", env.get(key_env)),
                ("account.api_key", account.get("api_key")),
            )
            if value
        ),
        ("account.api_key", ""),
    )
    # Checked here, where it is known where the key came from: Config can only say
    # account.api_key, which sends someone whose key is in the environment to the wrong place.
    _require(not api_key or Secret(api_key).header_safe(), key_from, API_KEY_RULE)
    sid = env.get(ENV_SID) or account.get("sid") or ""
    pod = env.get(ENV_POD) or account.get("pod") or "IN"
    base_url = env.get(ENV_BASE_URL) or account.get("base_url")
    if not require_credentials:
        sid = sid or "DRYRUN"
        api_key = api_key or "dry-run"

    pods = dict(_default_pods())
    for pod_name, table in _table(data, "pods").items():
        name = pod_name.upper()
        if name not in PODS:
            raise ConfigError(f"pods.{pod_name}: unknown pod (expected one of {', '.join(PODS)})")
        if not isinstance(table, dict):
            raise ConfigError(f"pods.{pod_name}: must be a table")
        merged = {"host": DEFAULT_POD_HOSTS[name], **table}
        pods[name] = _build(PodConfig, merged, f"pods.{pod_name}")

    sections = {name: _build(cls, _table(data, name), name) for name, cls in _SECTIONS.items()}
    return Config(
        sid=sid,
        api_key=Secret(api_key),
        pod=pod,
        base_url=base_url or None,
        pods=types.MappingProxyType(pods),
        **sections,
    )


def _table(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: must be a table")
    return table


def _str_or_none(value: Any, key: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ConfigError(f"{key}: must be a string")


def _build(cls: type[Any], table: Mapping[str, Any], section: str) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(f"{section}.{key}: unknown key")
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        # Field checks name the key generically (pods.*.x); name the real section instead.
        key = str(exc).split(":", 1)[0].rsplit(".", 1)[-1]
        raise ConfigError(f"{section}.{key}:{str(exc).split(':', 1)[1]}") from None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check a TOML value against a field's annotation, converting the few safe cases."""
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, not {value!r}")
        return value
    if origin in (types.UnionType,) or (args and type(None) in args):
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: must be a list of strings")
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: must be a number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string")
        return value
    raise ConfigError(f"{key}: unsupported value {value!r}")  # pragma: no cover
