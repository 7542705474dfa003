"""What the command-line commands share: exit codes, options, config from arguments."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import os
import sys
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

from ._config import Config
from ._config_file import load_config

if TYPE_CHECKING:
    from ._client import KaleyraClient

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NOT_ALL_SENT",
    "EXIT_OK",
    "EXIT_USAGE",
    "account_options",
    "collect_young_less_often",
    "config_from",
    "fast_loop",
    "message_options",
    "positive_float",
    "positive_int",
    "program",
    "with_client",
    "without_userinfo",
]

EXIT_OK: Final = 0
EXIT_NOT_ALL_SENT: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

T = TypeVar("T")


def program() -> str:
    """How the user ran us, for help and for the resume command we print."""
    name = os.path.basename(sys.argv[0])
    if name.lower().removesuffix(".exe") == "kaleyra-async":  # the Windows launcher is an .exe
        return "kaleyra-async"
    return "python -m kaleyra_async"


def account_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("account")
    group.add_argument(
        "--config", "-c", metavar="PATH", help="TOML config (see config.example.toml)"
    )
    group.add_argument("--base-url", metavar="URL", help="e.g. http://127.0.0.1:8787 (sandbox)")
    group.add_argument("--pod", choices=("IN", "SG", "EU", "NA"), type=str.upper)
    group.add_argument(
        "--redis", metavar="URL", help="share the rate limit through Redis (redis://host:port/db)"
    )


def message_options(parser: argparse.ArgumentParser, *, bulk: bool = True) -> None:
    title = "message defaults (a CSV column of the same name wins)" if bulk else "message"
    group = parser.add_argument_group(title)
    group.add_argument("--sender", metavar="S")
    group.add_argument("--type", metavar="T", type=str.upper, help="OTP, TXN, TXND, MKT, DEFAULT")
    body_help = "body; {column} placeholders are filled from the row" if bulk else "the body"
    group.add_argument("--body", metavar="TEXT", help=body_help)
    group.add_argument("--template-id", metavar="ID", help="DLT template id (12-30 digits)")
    group.add_argument(
        "--entity-id",
        metavar="ID",
        help="DLT principal entity id (12-30 digits); such rows go by /sms/json",
    )
    group.add_argument("--country-prefix", metavar="+CC", help="prefix for national numbers")
    group.add_argument("--unicode", metavar="AUTO|0|1")
    group.add_argument("--flash", action="store_true", default=None, help="send as flash SMS")
    group.add_argument("--time", metavar="ISO", help="schedule, e.g. 2026-12-01T10:00:00+05:30")
    group.add_argument(
        "--callback-profile-id", metavar="ID", help="callback profile for delivery receipts"
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def config_from(args: argparse.Namespace, *, require_credentials: bool = True) -> Config:
    config = load_config(args.config, require_credentials=require_credentials)
    account: dict[str, Any] = {}
    if args.base_url:
        account["base_url"] = args.base_url
    if args.pod:
        account["pod"] = args.pod
    defaults: dict[str, Any] = {}
    names = ("sender", "type", "body", "template_id", "unicode", "country_prefix", "flash")
    for name in (*names, "callback_profile_id", "entity_id"):
        value = getattr(args, name, None)
        if value is not None:
            defaults[name] = value
    if getattr(args, "template_data", None):
        cols = tuple(c.strip() for c in args.template_data.split(",") if c.strip())
        defaults["template_data_columns"] = cols
    dispatch: dict[str, Any] = {}
    for arg, key in (
        ("concurrency", "concurrency"),
        ("batch_size", "batch_size"),
        ("max_wait_ms", "max_wait_ms"),
        ("json_batch_size", "json_batch_size"),
        ("personalised", "personalised"),
    ):
        if getattr(args, arg, None) is not None:
            dispatch[key] = getattr(args, arg)
    if getattr(args, "dedupe", False):
        dispatch["dedupe"] = True
    pods = dict(config.pods)
    rate = getattr(args, "rate", None)
    pod = account.get("pod", config.pod)
    if rate is not None:
        pods[pod] = dataclasses.replace(config.pods[pod], rate_per_s=rate)
    redis = config.redis
    if getattr(args, "redis", None):
        redis = dataclasses.replace(redis, url=args.redis)
    if getattr(args, "queue_depth", None) is not None:
        redis = dataclasses.replace(redis, queue_depth=args.queue_depth)
    retry = config.retry
    if getattr(args, "retry_ambiguous", False):
        retry = dataclasses.replace(retry, retry_ambiguous=True)
    return dataclasses.replace(
        config,
        **account,
        pods=pods,
        redis=redis,
        retry=retry,
        defaults=dataclasses.replace(config.defaults, **defaults),
        dispatch=dataclasses.replace(config.dispatch, **dispatch),
    )


def with_client(config: Config, call: Callable[[KaleyraClient], Awaitable[T]]) -> T:
    """Run one client call from synchronous code."""
    from ._client import KaleyraClient

    async def run() -> T:
        async with KaleyraClient.from_config(config) as client:
            return await call(client)

    return anyio.run(run)


def fast_loop() -> dict[str, bool]:
    """anyio's backend options for a long-running sender whose limiter reads
    ``time.monotonic()`` (not the loop's clock, which uvloop keeps in whole milliseconds):
    uvloop when it is installed (the ``redis`` extra), else asyncio's own loop."""
    return {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


def freeze_startup_heap() -> None:
    """Call before the event loop starts. Everything imported so far (phonenumbers' metadata
    above all) lives for the whole run: keep it out of the garbage collector's full passes,
    which would stall the loop (a request late for its turn, a receipt answered late)."""
    gc.collect()
    gc.freeze()


#: Net new container objects between two young collections (CPython's default is 700).
_YOUNG_COLLECTION_OBJECTS: Final = 10_000


def collect_young_less_often() -> None:
    """For a pipeline whose live objects stay bounded: a young collection only once 10,000 more
    objects are alive rather than 700, so rows in flight are not scanned again and again."""
    gc.set_threshold(_YOUNG_COLLECTION_OBJECTS, *gc.get_threshold()[1:])


def without_userinfo(url: str) -> str:
    """A base URL as it may be logged: a proxy's ``user:token@`` is a secret too."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # IPv6
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
