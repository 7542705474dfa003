"""Peer (a): what a careful asyncio user writes with aiohttp, one ClientSession and a Semaphore.

Standalone on purpose (it imports nothing from kaleyra_async or the harness): the job is the
same as ``kaleyra_async send-bulk``'s. Stream the CSV, validate every number with phonenumbers
(parse, is_valid_number, format as E.164), put consecutive rows with the same message into one
request of up to 100 recipients (an OTP row always alone), POST them as JSON with at most
``--concurrency`` requests in flight, and write one NDJSON line per row as answers arrive.

With ``--rate N`` every attempt waits for its slot, N per second evenly spaced (what a careful
user adds to stay inside a rate Kaleyra's support recommends); without it there is no limiter.

Retries: 429 and 503 are retried after ``Retry-After`` (Kaleyra did not take the request);
a connection that could not be opened is retried too. Anything else that may have reached the
server (a timeout, a reset, a 5xx) is reported and not resent, because Kaleyra has no
idempotency key and a resend could deliver every SMS twice.

    KALEYRA_SID=... KALEYRA_API_KEY=... python aiohttp_peer.py in.csv --base-url URL --out x.ndjson
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import aiohttp
import orjson
import phonenumbers

MAX_RECIPIENTS = 100
MAX_ATTEMPTS = 8


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("input")
    p.add_argument("--base-url", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sender", default="KLRHXA")
    p.add_argument("--type", default="TXN")
    p.add_argument("--body", default="")
    p.add_argument("--template-id", default="")
    p.add_argument("--region", default="IN", help="region for numbers without +")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rate", type=float, default=0.0, help="requests/s, evenly spaced; 0: none")
    return p.parse_args()


class Pacer:
    """Evenly spaced slots, ``rate`` per second: each caller sleeps until its own."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate if rate > 0 else 0.0
        self.next_slot = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def rows(path: str, args: argparse.Namespace) -> Iterator[tuple[int, str, dict[str, Any] | None]]:
    """(row number, E.164 or raw value, message) per data row; message None when invalid."""
    defaults = {
        "sender": args.sender,
        "type": args.type,
        "body": args.body,
        "template_id": args.template_id,
    }
    with open(path, newline="", encoding="utf-8") as fh:
        for n, record in enumerate(csv.DictReader(fh), 1):
            raw = record.get("to") or ""
            try:
                number = phonenumbers.parse(raw, args.region)
            except phonenumbers.NumberParseException:
                yield n, raw, None
                continue
            if not phonenumbers.is_valid_number(number):
                yield n, raw, None
                continue
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            message = {k: record.get(k) or v for k, v in defaults.items()}
            yield n, e164, {k: v for k, v in message.items() if v}


def batches(
    source: Iterator[tuple[int, str, dict[str, Any] | None]], out: BinaryIO
) -> Iterator[tuple[dict[str, Any], list[tuple[int, str]]]]:
    """Consecutive rows with equal messages, up to 100 (1 for OTP); invalid rows written here."""
    message: dict[str, Any] | None = None
    batch: list[tuple[int, str]] = []
    for n, to, msg in source:
        if msg is None:
            out.write(orjson.dumps({"row": n, "to": to, "status": "invalid"}) + b"\n")
            continue
        if batch and (msg != message or len(batch) >= MAX_RECIPIENTS or msg["type"] == "OTP"):
            assert message is not None
            yield message, batch
            batch = []
        message = msg
        batch.append((n, to))
    if batch and message is not None:
        yield message, batch


async def post(
    session: aiohttp.ClientSession, url: str, payload: bytes, pacer: Pacer
) -> tuple[int, dict[str, Any] | None, str]:
    """(HTTP status or 0, JSON body, error) after the safe retries."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        await pacer.wait()
        try:
            async with session.post(url, data=payload) as resp:
                body = await resp.read()
                if resp.status in (429, 503) and attempt < MAX_ATTEMPTS:
                    await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                    continue
                return resp.status, orjson.loads(body) if body else None, ""
        except aiohttp.ClientConnectorError as exc:
            if attempt == MAX_ATTEMPTS:
                return 0, None, f"connect: {exc}"
            await asyncio.sleep(0.1 * 2**attempt)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 0, None, f"{type(exc).__name__}: {exc}"
    raise AssertionError("unreachable")


async def send(
    session: aiohttp.ClientSession,
    url: str,
    message: dict[str, Any],
    batch: list[tuple[int, str]],
    out: BinaryIO,
    slots: asyncio.Semaphore,
    pacer: Pacer,
) -> None:
    try:
        payload = orjson.dumps({**message, "to": ",".join(to for _, to in batch)})
        status, body, error = await post(session, url, payload, pacer)
        ids = {}
        if 200 <= status < 300 and body is not None:
            ids = {d["recipient"].lstrip("+"): d["message_id"] for d in body.get("data", ())}
        request_id = body.get("id") if body else None
        lines = []
        for n, to in batch:
            message_id = ids.get(to[1:])
            if message_id is not None:
                line = {"row": n, "to": to, "status": "sent", "message_id": message_id,
                        "request_id": request_id}  # fmt: skip
            else:
                fate = "failed" if 400 <= status < 500 else "unknown"
                line = {"row": n, "to": to, "status": fate, "error": error or f"HTTP {status}"}
            lines.append(orjson.dumps(line))
        out.write(b"\n".join(lines) + b"\n")
    finally:
        slots.release()


async def run(args: argparse.Namespace, out: BinaryIO) -> None:
    url = f"{args.base_url.rstrip('/')}/v1/{os.environ['KALEYRA_SID']}/sms"
    headers = {"api-key": os.environ["KALEYRA_API_KEY"], "content-type": "application/json"}
    slots = asyncio.Semaphore(args.concurrency)
    pacer = Pacer(args.rate)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=60, connect=10)
    async with (
        aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session,
        asyncio.TaskGroup() as tasks,
    ):
        for message, batch in batches(rows(args.input, args), out):
            await slots.acquire()
            tasks.create_task(send(session, url, message, batch, out, slots, pacer))


def main() -> int:
    args = parse_args()
    with open(args.out, "wb") as out:
        asyncio.run(run(args, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
