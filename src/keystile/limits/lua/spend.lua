-- Keystile: spend one request's rate-limit capacity and credits, all or nothing (SPEC L1-L3).
--
-- Rate limits are GCRA exactly as keystile/core/ratelimit.py computes them: whole microseconds (exact in Lua's
-- doubles below 2**53), T rounded up (the caller sends it: Bucket.interval), burst capacity limit * T; tests
-- compare the two. "now" is Redis's own clock (TIME), so that instances whose clocks disagree still share one
-- notion of time.
--
-- KEYS: the nb bucket keys; with credits, then the counter, the set of counters to write back, the sentinel.
-- ARGV: nb; per bucket limit, interval (T, us), cost; with credits, then credit_id, cost, refill amount (-1: no
--   refill), refill moment, mode (0: spend, 1: the counter may be stale, reload it, 2: load it), and with mode 2
--   only the counter's ttl_ms, the database's remaining and refilled_at (-1: null), and the write-back count
--   the caller saw (every argument costs Redis time: the common call sends none of these four).
-- Reply (integers): {code, now (us; 0 when no bucket needed it), credits left (-1: no credits, -2: not read),
--   write-back count (with LOAD), sentinel created (0/1), retry_after (us), then per bucket remaining and
--   reset_at (us)}. Codes: 0 VALID, 1 RATE_LIMITED, 2 USAGE_EXCEEDED, 3 LOAD (the counter is missing or stale:
--   no credits were spent; call again with mode 2).
--
-- A counter is a hash: r remaining; f refilled_at (epoch of the pending spends, -1: null); p credits spent and
-- not yet written back; m 1 when a refill to f is not written back yet, with its amount a; s 1 when stale;
-- w write-backs in flight and wt when the last began; n write-backs finished.
--
-- Every command costs Redis CPU on the hot path, so the common case (the counter is there and fresh) reads four
-- fields and writes two; the counter's TTL is renewed by take.lua, which every spend's write-back goes through.
local nb = tonumber(ARGV[1])
local now = 0

local function read_clock()
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end

-- floor(a / b) for whole numbers below 2**53, exact (a double division may round up to the next integer).
local function div(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local allowed = true
local retry = 0
local olds, news = {}, {}
if nb > 0 then
  read_clock()
  for i = 1, nb do
    local j = 3 * i - 1
    local limit, interval, cost = tonumber(ARGV[j]), tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
    local raw = redis.call('GET', KEYS[i])
    local tat = nil
    if raw then
      tat = tonumber(raw)
    end
    local base = now
    if tat ~= nil and tat >= now then
      base = tat
    end
    local new = base + cost * interval
    local wait = new - limit * interval - now
    if wait > 0 then
      allowed = false
      if wait > retry then
        retry = wait
      end
    end
    olds[i] = tat
    news[i] = new
  end
end

local function reply(code, credits, n, created)
  local out = {code, now, credits, n, created, 0}
  if code == 1 then
    out[6] = retry
  end
  for i = 1, nb do
    local j = 3 * i - 1
    local limit, interval = tonumber(ARGV[j]), tonumber(ARGV[j + 1])
    local tat = news[i]
    if code ~= 0 then
      tat = olds[i]
    end
    if tat == nil or tat < now then
      tat = now
    end
    local room = limit * interval - (tat - now)
    local remaining = 0
    if room > 0 then
      remaining = math.min(limit, div(room, interval))
    end
    out[#out + 1] = remaining
    out[#out + 1] = tat
  end
  return out
end

local function take_buckets()
  for i = 1, nb do
    -- A number argument reaches Redis as "%.17g": whole microseconds stay exact.
    redis.call('SET', KEYS[i], news[i], 'PX', math.max(1, math.ceil((news[i] - now) / 1000)))
  end
end

if #KEYS == nb then
  if not allowed then
    return reply(1, -1, 0, 0)
  end
  take_buckets()
  return reply(0, -1, 0, 0)
end

local ck, dirty, sentinel = KEYS[nb + 1], KEYS[nb + 2], KEYS[nb + 3]
local c = 3 * nb + 2
local cid, cost = ARGV[c], tonumber(ARGV[c + 1])
local amount, moment = tonumber(ARGV[c + 2]), tonumber(ARGV[c + 3])
local mode = tonumber(ARGV[c + 4])

local h = redis.call('HMGET', ck, 'r', 'f', 'p', 's')
local exists = h[1] ~= false
local r, f, p, s = 0, -1, 0, 0
if exists then
  r, f, p, s = tonumber(h[1]), tonumber(h[2]), tonumber(h[3]), tonumber(h[4])
end

if not allowed then
  local shown = -2
  if exists and s == 0 and mode ~= 1 then
    shown = r
    if amount >= 0 and f < moment then
      shown = amount
    end
  end
  return reply(1, shown, 0, 0)
end

-- The rare path: the counter is missing or stale, or the caller loads it.
local m, a, w, wt, n = 0, 0, 0, 0, 0
local whole = false
local created = 0
if not exists or s == 1 or mode == 1 then
  -- The sentinel vanishes with everything else when Redis loses its data: the caller counts that. A counter
  -- that exists was loaded after any such loss, so only this path needs to look.
  if redis.call('EXISTS', sentinel) == 0 then
    redis.call('SET', sentinel, '1')
    created = 1
  end
  if exists then
    local more = redis.call('HMGET', ck, 'm', 'a', 'w', 'wt', 'n')
    m, a, w, wt, n = tonumber(more[1]), tonumber(more[2]), tonumber(more[3]), tonumber(more[4]), tonumber(more[5])
    if now == 0 then
      read_clock()
    end
    if w > 0 and now - wt > 10000000 then
      w = 0 -- a write-back that never finished (its process died): stop waiting for it
    end
  end
  if mode ~= 2 then
    if exists and mode == 1 and s == 0 then
      redis.call('HSET', ck, 's', 1)
    end
    return reply(3, -2, n, created)
  end
  local lr, lf, ln = tonumber(ARGV[c + 6]), tonumber(ARGV[c + 7]), tonumber(ARGV[c + 8])
  if not exists then
    r, f = lr, lf -- HSETNX-like: only the first caller to find the counter missing initialises it
  elseif w == 0 and n == ln then
    -- No write-back is in flight and none finished since the caller read the database, so the database's
    -- remaining lacks exactly the pending spends p.
    if lf > f then
      r, f, p, m, a = lr, lf, 0, 0, 0 -- the database refilled since: the pending spends belong to an old period
    elseif lf == f then
      r, m = lr - p, 0
    end -- lf < f: this counter refilled and the database has not heard of it yet; keep this view
    s = 0
  end -- else a write-back overlaps: spend from this view and reload on a later call (s stays 1)
  whole = true
end

local refilled = false
if amount >= 0 and f < moment then
  r, f, p, m, a = amount, moment, 0, 1, amount
  refilled = true
end

local code = 2
if r >= cost then
  r, p = r - cost, p + cost
  code = 0
  take_buckets()
end
if whole then
  redis.call('HSET', ck, 'r', r, 'f', f, 'p', p, 'm', m, 'a', a, 's', s, 'w', w, 'wt', wt, 'n', n)
  redis.call('PEXPIRE', ck, tonumber(ARGV[c + 5]))
elseif code ~= 0 then
  return reply(code, r, 0, 0) -- refused, nothing loaded: nothing to write
elseif refilled then
  redis.call('HSET', ck, 'r', r, 'f', f, 'p', p, 'm', m, 'a', a)
else
  redis.call('HSET', ck, 'r', r, 'p', p)
end
if p > 0 or m == 1 then
  redis.call('SADD', dirty, cid)
end
return reply(code, r, n, created)
