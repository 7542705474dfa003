"""The shared limiter's Lua script: one call grants turns, gives back and moves earlier ones,
and records its answer for a resend (``_redis_limiter`` says what the turns are for).

KEYS: turn time (GCRA), turn log (a sorted set: turn ids scored by their moments), OTP lane
(GCRA), pause end, recipients (GCRA), the last turn id, the list an older version kept its log
in (while it exists, a process of that version shares the limit without seeing this log:
refused, rather than both holding the rate), and this call's record (named by the call's nonce).

ARGV: interval, tolerance, window cap, window, horizon, OTP (1/0), OTP interval, OTP tolerance,
how long the record is kept (ms), recipients tolerance, pause; ARGV[12], ARGV[13]: how many
missed turns (ids: each given back, out of the log, its interval back to the GCRA) and how many
(id, write moment) pairs of late writes (each turn moved, or added back, to its write's moment,
unless that is out of the window already) follow, then one
recipients cost per turn wanted (none: a call that only tells).

Returns the granted turns' waits, the wait before asking again for the rest (-1: none left),
Redis's time and the first granted turn's id (the others follow it). A call resent after a lost
reply finds its record and returns the same answer without granting again (its waits are from
the first run's time, which Redis read between the first send and the last reply). Ids go on
from Redis's clock (µs), never reused even after the keys expired, so a call whose record is
gone gives back and moves the same turns, once. Times are integers in microseconds on Redis's
clock, formatted with %d: Lua would write a 16-digit number as 1.7e+15 (a double holds it).
"""

from __future__ import annotations

from typing import Final

__all__ = ["RESERVE"]

RESERVE: Final = """
local recorded = redis.call('GET', KEYS[8])
if recorded then  -- this call ran already (its reply was lost): the same answer, nothing granted
  local out = {}
  for value in string.gmatch(recorded, '[^,]+') do out[#out + 1] = tonumber(value) end
  return out
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local cap, window, horizon = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local otp, otp_interval, otp_tolerance = ARGV[6] == '1', tonumber(ARGV[7]), tonumber(ARGV[8])
local cost_tolerance, pause = tonumber(ARGV[10]), tonumber(ARGV[11])
local log = KEYS[2]
if redis.call('EXISTS', KEYS[7]) == 1 then
  return redis.error_reply('an older kaleyra_async shares this limit (its turn log ' ..
    KEYS[7] .. ' is in use): stop it, or upgrade it, first')
end
local function get(key) return tonumber(redis.call('GET', key) or '0') end
local function put(key, value, ttl)
  redis.call('SET', key, string.format('%d', value), 'PX', ttl)
end
local function newest(rank)  -- the moment of the log's rank-th newest turn (0: the newest)
  local entry = redis.call('ZREVRANGE', log, rank, rank, 'WITHSCORES')
  return entry[2] and tonumber(entry[2])
end
if pause > 0 and now + pause > get(KEYS[4]) then
  put(KEYS[4], now + pause, math.ceil(pause / 1000) + 1)
end
local tat, otat, rtat, paused = get(KEYS[1]), get(KEYS[3]), get(KEYS[5]), get(KEYS[4])
local missed, moved = tonumber(ARGV[12]), tonumber(ARGV[13])
local first = 14 + missed + 2 * moved
for i = 14, 13 + missed do
  if redis.call('ZREM', log, ARGV[i]) == 1 then tat = tat - interval end
end
for i = 14 + missed, first - 1, 2 do
  -- Logged at its write even if its turn was trimmed (written 2 x cap turns late): the write
  -- still counts in the windows after it. A moment out of every window changes nothing.
  if tonumber(ARGV[i + 1]) > now - window then redis.call('ZADD', log, ARGV[i + 1], ARGV[i]) end
end
-- Ids go on from Redis's clock: never reused, even after the keys expired or were flushed.
local id = math.max(get(KEYS[6]), now)
local out, hint, first_id = {}, -1, id + 1
local at = math.max(now, newest(0) or 0)
for i = first, #ARGV do
  local cost = tonumber(ARGV[i])
  at = math.max(at, tat - tolerance, paused, rtat + cost - cost_tolerance)
  local oldest = newest(cap - 1)
  if oldest then at = math.max(at, oldest + window) end
  local priority = otp and otp_interval > 0 and now >= otat - otp_tolerance
  if not priority and at - now > horizon then hint = at - now - horizon; break end
  tat = math.max(tat, at) + interval
  if priority then otat = math.max(otat, now) + otp_interval end
  if cost > 0 then rtat = math.max(rtat, at) + cost end
  id = id + 1
  redis.call('ZADD', log, string.format('%d', at), string.format('%d', id))
  out[#out + 1] = at - now
end
redis.call('ZREMRANGEBYRANK', log, 0, -2 * cap - 1)
out[#out + 1] = hint
out[#out + 1] = now
out[#out + 1] = first_id
local ttl = math.ceil((at - now + window) / 1000) + 1000
put(KEYS[1], tat, ttl); put(KEYS[3], otat, ttl); put(KEYS[5], rtat, ttl)
redis.call('PEXPIRE', log, ttl)
redis.call('SET', KEYS[6], string.format('%d', id), 'PX', ttl)
local answer = {}
for i, value in ipairs(out) do answer[i] = string.format('%d', value) end
redis.call('SET', KEYS[8], table.concat(answer, ','), 'PX', ARGV[9])
return out
"""
