"""Loading a :class:`~._config.Config` from TOML and the environment.

Precedence, lowest first: built-in defaults, the TOML file, environment variables
(``KALEYRA_API_KEY``, ``KALEYRA_SID``, ``KALEYRA_POD``, ``KALEYRA_BASE_URL``,
``KALEYRA_REDIS_URL``, ``KALEYRA_RECEIPTS_SECRET``), then whatever the
caller (for example the CLI) replaces with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin, get_type_hints

from ._config import (
    API_KEY_RULE,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_POD,
    ENV_RECEIPTS_SECRET,
    ENV_REDIS_URL,
    ENV_SID,
    Config,
    DispatchConfig,
    HttpConfig,
    MessageDefaults,
    PodConfig,
    ReceiptsConfig,
    RedisConfig,
    RetryPolicy,
    Secret,
    default_pods,
    require,
)
from ._exceptions import ConfigError
from ._limits import DEFAULT_POD_HOSTS, PODS

__all__ = ["load_config"]

_SECTIONS: Final[Mapping[str, type[Any]]] = {
    "defaults": MessageDefaults,
    "retry": RetryPolicy,
    "http": HttpConfig,
    "dispatch": DispatchConfig,
    "redis": RedisConfig,
    "receipts": ReceiptsConfig,
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
    require(not api_key or Secret(api_key).header_safe(), key_from, API_KEY_RULE)
    sid = env.get(ENV_SID) or account.get("sid") or ""
    pod = env.get(ENV_POD) or account.get("pod") or "IN"
    base_url = env.get(ENV_BASE_URL) or account.get("base_url")
    if not require_credentials:
        sid = sid or "DRYRUN"
        api_key = api_key or "dry-run"

    pods = dict(default_pods())
    for pod_name, table in _table(data, "pods").items():
        name = pod_name.upper()
        if name not in PODS:
            raise ConfigError(f"pods.{pod_name}: unknown pod (expected one of {', '.join(PODS)})")
        if not isinstance(table, dict):
            raise ConfigError(f"pods.{pod_name}: must be a table")
        merged = {"host": DEFAULT_POD_HOSTS[name], **table}
        pods[name] = _build(PodConfig, merged, f"pods.{pod_name}")

    tables = {name: _table(data, name) for name in _SECTIONS}
    if env.get(ENV_REDIS_URL):
        tables["redis"] = {**tables["redis"], "url": env[ENV_REDIS_URL]}
    sections = {name: _build(cls, tables[name], name) for name, cls in _SECTIONS.items()}
    if env.get(ENV_RECEIPTS_SECRET):
        sections["receipts"] = dataclasses.replace(
            sections["receipts"], secret=Secret(env[ENV_RECEIPTS_SECRET])
        )
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
    if origin in (Mapping, dict, collections.abc.Mapping):
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{key}: must be a table of strings")
        return types.MappingProxyType(dict(value))
    if hint is Secret:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string")
        return Secret(value)
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
