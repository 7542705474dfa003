"""The queued campaign's Redis protocol: a jobs stream read by a consumer group, and per
campaign the job records, the "about to send" marks, the outcomes and a stream of them.

Keys (``{...}`` is a hash tag: a campaign's keys stay in one slot)::

    kaleyra:queue:{SID:POD}:jobs          stream, group "workers": field j = the job
    kaleyra:campaign:{ID}:jobs            hash batch -> job (the collector's record, for resume)
    kaleyra:campaign:{ID}:marks           hash batch -> consumer, set BEFORE the request is sent
    kaleyra:campaign:{ID}:outcomes        hash batch -> outcome; the first report wins
    kaleyra:campaign:{ID}:done            stream of (batch, outcome), read by the collector

Every step that must not be half done is one Lua script: enqueueing (record + entry),
reporting (outcome once, done entry, XACK and XDEL) and giving a batch back (new entry, mark
cleared, old entry acknowledged). The scripts name keys of two slots, so Redis Cluster is not
supported; one primary (with replicas or Sentinel) is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ._redis import Coalesced, RedisLink

__all__ = ["GROUP", "QueueStore"]

GROUP: Final = "workers"
#: How long a finished campaign's keys stay in Redis (for a late look), in seconds.
CAMPAIGN_TTL_S: Final = 86_400

# _ENQUEUE, _MARK and _REPORT take any number of calls (ARGV in groups, see Coalesced) and
# answer one value per call.
_ENQUEUE: Final = """
local out = {}
for i = 1, #ARGV, 2 do
  local batch, job, result = ARGV[i], ARGV[i + 1], 1
  if redis.call('HSETNX', KEYS[1], batch, job) == 0 then
    result = redis.call('HGET', KEYS[1], batch) == job and 2 or 0
  else
    redis.call('XADD', KEYS[2], '*', 'j', job)
  end
  out[#out + 1] = result
end
return out
"""
_MARK: Final = """
local out = {}
for i = 1, #ARGV, 2 do
  local batch, consumer, result = ARGV[i], ARGV[i + 1], 1
  if redis.call('HSETNX', KEYS[1], batch, consumer) == 0 then
    result = redis.call('HGET', KEYS[1], batch) == consumer and 1 or 0
  end
  out[#out + 1] = result
end
return out
"""
_REPORT: Final = """
local out = {}
for i = 1, #ARGV, 4 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'b', ARGV[i], 'o', ARGV[i + 1])
  end
  redis.call('XACK', KEYS[3], ARGV[i + 2], ARGV[i + 3])
  redis.call('XDEL', KEYS[3], ARGV[i + 3])
  out[#out + 1] = 1
end
return out
"""
_GIVE_BACK: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
local pending = redis.call('XPENDING', KEYS[2], ARGV[3], ARGV[4], ARGV[4], 1)
if pending[1] == nil or pending[1][2] ~= ARGV[2] then return 0 end
redis.call('XADD', KEYS[2], '*', 'j', ARGV[5])
redis.call('XACK', KEYS[2], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[2], ARGV[4])
return 1
"""
_RENEW: Final = """
local kept = 0
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] ~= nil and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept = kept + 1
  end
end
return kept
"""

#: A stream entry as read: its id and its job (None: deleted meanwhile).
Entry = tuple[str, bytes | None]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class QueueStore:
    """The Redis side of queued campaigns for one account and pod (``scope``)."""

    def __init__(self, link: RedisLink, *, scope: str, prefix: str = "kaleyra") -> None:
        self.link = link
        self._prefix = prefix
        self.jobs = f"{prefix}:queue:{{{scope}}}:jobs"
        self._enqueue = Coalesced(link, _ENQUEUE, "putting a batch on the queue", arity=2)
        self._mark = Coalesced(link, _MARK, "marking a batch as sending", arity=2)
        self._report = Coalesced(link, _REPORT, "reporting an outcome", arity=4)
        self._give_back = link.script(_GIVE_BACK)
        self._renew = link.script(_RENEW)

    def _campaign(self, campaign: str, name: str) -> str:
        return f"{self._prefix}:campaign:{{{campaign}}}:{name}"

    # -- the collector ----------------------------------------------------------------------

    async def server_id(self) -> str:
        """The server's ``run_id``: a restart or another server (a failover) has another."""
        info: Any = await self.link.call(lambda: self.link.client.info("server"), "reaching Redis")
        return str(info["run_id"])

    async def enqueue(self, campaign: str, batch_id: str, job: bytes) -> bool:
        """Record the job and put it on the stream; False if the campaign had another job under
        that id (the same job again is a success: the call may be a resend)."""
        keys = (self._campaign(campaign, "jobs"), self.jobs)
        return bool(await self._enqueue(keys, (batch_id, job)))

    async def read_done(
        self, campaign: str, after: str, block_ms: int
    ) -> list[tuple[str, str, bytes]]:
        """Outcomes reported after stream id ``after``: (id, batch, outcome), oldest first."""
        key = self._campaign(campaign, "done")
        reply: Any = await self.link.call(
            lambda: self.link.client.xread({key: after}, count=1000, block=block_ms),
            "reading outcomes",
        )
        found = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                found.append((_text(entry_id), _text(fields[b"b"]), bytes(fields[b"o"])))
        return found

    async def recorded_jobs(self, campaign: str) -> dict[str, bytes]:
        key = self._campaign(campaign, "jobs")
        raw: Any = await self.link.call(lambda: self.link.client.hgetall(key), "reading the jobs")
        return {_text(k): bytes(v) for k, v in raw.items()}

    async def outcomes(self, campaign: str, batch_ids: Sequence[str]) -> dict[str, bytes]:
        key = self._campaign(campaign, "outcomes")
        ids = list(batch_ids)
        values: Any = await self.link.call(
            lambda: self.link.client.hmget(key, ids), "reading outcomes"
        )
        return {b: bytes(v) for b, v in zip(ids, values, strict=True) if v is not None}

    async def finish(self, campaign: str) -> None:
        """Let a finished campaign's keys expire (its results are in the results file)."""
        keys = [self._campaign(campaign, n) for n in ("jobs", "marks", "outcomes", "done")]

        async def expire() -> None:
            async with self.link.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.expire(key, CAMPAIGN_TTL_S)
                await pipe.execute()

        await self.link.call(expire, "expiring the campaign")

    # -- the workers ------------------------------------------------------------------------

    async def ensure_group(self) -> None:
        """Create the stream and its consumer group (from the start: no job is skipped)."""
        await self.link.ensure_group(self.jobs, GROUP)

    async def read_new(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        reply: Any = await self.link.call(
            lambda: self.link.client.xreadgroup(
                GROUP, consumer, {self.jobs: ">"}, count=count, block=block_ms
            ),
            "reading batches",
        )
        return [
            (_text(entry_id), _job(fields))
            for _stream, entries in reply or ()
            for entry_id, fields in entries
        ]

    async def claim_idle(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over batches whose worker has not renewed them for ``min_idle_ms``."""
        reply: Any = await self.link.call(
            lambda: self.link.client.xautoclaim(
                self.jobs, GROUP, consumer, min_idle_ms, start_id="0-0", count=count
            ),
            "claiming idle batches",
        )
        entries = reply[1] if len(reply) > 1 else []
        return [(_text(entry_id), _job(fields)) for entry_id, fields in entries]

    async def renew(self, consumer: str, entry_ids: Sequence[str]) -> int:
        """Reset the idle time of the entries this consumer still owns."""
        if not entry_ids:
            return 0
        args = (GROUP, consumer, *entry_ids)
        kept = await self.link.call(lambda: self._renew((self.jobs,), args), "renewing batches")
        return int(kept)

    async def mark_sending(self, campaign: str, batch_id: str, consumer: str) -> bool:
        """Mark the batch "about to send" by ``consumer``; False if another consumer has."""
        key = self._campaign(campaign, "marks")
        return bool(await self._mark((key,), (batch_id, consumer)))

    async def marked_by(self, campaign: str, batch_id: str) -> str | None:
        key = self._campaign(campaign, "marks")
        who = await self.link.call(lambda: self.link.client.hget(key, batch_id), "reading a mark")
        return None if who is None else _text(who)

    async def report(self, campaign: str, batch_id: str, outcome: bytes, entry_id: str) -> None:
        """Record the outcome (unless one is recorded already) and acknowledge the entry."""
        keys = (self._campaign(campaign, "outcomes"), self._campaign(campaign, "done"), self.jobs)
        await self._report(keys, (batch_id, outcome, GROUP, entry_id))

    async def give_back(
        self, campaign: str, batch_id: str, consumer: str, entry_id: str, job: bytes
    ) -> bool:
        """Put a batch that was not sent back on the stream for any worker, clearing our mark;
        False if the entry is no longer ours."""
        keys = (self._campaign(campaign, "marks"), self.jobs)
        args = (batch_id, consumer, GROUP, entry_id, job)
        done = await self.link.call(lambda: self._give_back(keys, args), "giving a batch back")
        return bool(done)

    async def drop(self, entry_id: str) -> None:
        """Acknowledge and delete an entry that is not a job of ours."""

        async def ack() -> None:
            await self.link.client.xack(self.jobs, GROUP, entry_id)
            await self.link.client.xdel(self.jobs, entry_id)

        await self.link.call(ack, "dropping a malformed entry")


def _job(fields: Any) -> bytes | None:
    if not fields:
        return None
    value = fields.get(b"j")
    return None if value is None else bytes(value)
