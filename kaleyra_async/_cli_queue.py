"""``worker``: the command that sends queued campaigns (``send-bulk --queue``)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable

import anyio

from ._cli_bulk import watch_signals
from ._cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    account_options,
    config_from,
    fast_loop,
    freeze_startup_heap,
    positive_float,
    positive_int,
)
from ._config import Config
from ._exceptions import ConfigError
from ._limits import WORKER_CONCURRENCY

__all__ = ["add_worker"]

logger = logging.getLogger("kaleyra_async")


def add_worker(add_command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the ``worker`` command."""
    worker = add_command(
        "worker",
        help="send the batches of queued campaigns (send-bulk --queue) under the shared limit",
        description="Read batches from the account's Redis stream through a consumer group, "
        "send them under the rate limit shared through Redis, and report each outcome. Run "
        "any number, on any machine. SIGTERM / Ctrl-C: stop reading, finish requests in "
        "flight, exit 0.",
    )
    account_options(worker)
    worker.add_argument("--rate", type=positive_float, metavar="N", help="requests/s, all workers")
    worker.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help=f"batches in hand at once, waiting for a turn or sent (default {WORKER_CONCURRENCY})",
    )
    worker.add_argument(
        "--claim-idle-s",
        type=positive_float,
        metavar="S",
        help="claim a dead worker's batches after S seconds (default: redis.claim_idle_s)",
    )
    worker.set_defaults(handler=_cmd_worker)


def with_connections(config: Config, concurrency: int) -> Config:
    """The config with a connection for every batch in hand: an admitted request never waits
    for one (it would leave later than its turn allows)."""
    if config.http.max_connections >= concurrency:
        return config
    http = dataclasses.replace(config.http, max_connections=concurrency)
    return dataclasses.replace(config, http=http)


def _cmd_worker(args: argparse.Namespace) -> int:
    from ._client import KaleyraClient, validated_send, validated_send_json
    from ._queue_store import QueueStore
    from ._queue_worker import WorkerOptions, WorkerSummary, run_worker
    from ._redis import RedisLink

    config = config_from(args)
    if not config.redis.url:
        raise ConfigError("worker needs --redis URL (or [redis] url, or KALEYRA_REDIS_URL)")
    options = WorkerOptions(
        concurrency=args.concurrency or WORKER_CONCURRENCY,
        claim_idle_s=args.claim_idle_s or config.redis.claim_idle_s,
        drain_timeout_s=config.dispatch.drain_timeout_s,
    )
    config = with_connections(config, options.concurrency)
    summary = WorkerSummary()

    async def run() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_signals, stop, tg.cancel_scope)
            link = RedisLink(
                config.redis.url, unavailable_timeout_s=config.redis.unavailable_timeout_s
            )
            try:
                store = QueueStore(link, scope=f"{config.sid}:{config.pod}")
                async with KaleyraClient.from_config(config) as client:
                    await run_worker(
                        store, validated_send(client), options,
                        send_json=validated_send_json(client), stop=stop, summary=summary,
                    )  # fmt: skip
            finally:
                await link.aclose()
            tg.cancel_scope.cancel()

    freeze_startup_heap()
    anyio.run(run, backend_options=fast_loop())
    if not args.quiet:
        print(
            f"worker: {summary.sent} rows sent, {summary.failed} failed, {summary.unknown} "
            f"unknown; {summary.claimed} batches claimed, {summary.given_back} given back"
            + (
                f", {summary.left_pending} left on the stream for another worker to claim"
                if summary.left_pending
                else ""
            ),
            file=sys.stderr,
        )
    if summary.aborted:
        print(f"error: the worker stopped itself: {summary.aborted}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
