-- Keystile: spend the rate-limit capacity and credits of a batch of verifications, each all or nothing
-- (SPEC L1-L3), in one script call.
--
-- One call per batch rather than per verification: each call costs Redis more than the work it does (parsing,
-- setting up the script, TIME), and verifications of one key (a busy client) read and write its bucket and
-- counter once per batch instead of once each. The verifications are decided in order, exactly as separate calls
-- at the same instant would be, and every write lands at the end of the call (atomic, so no one sees the order).
--
-- Rate limits are GCRA exactly as keystile/core/ratelimit.py computes them: whole microseconds (exact in Lua's
-- doubles below 2**53; a number argument reaches Redis as "%.17g", exact too), T rounded up (the caller sends
-- it: Bucket.interval), burst capacity limit * T; tests compare the two. "now" is Redis's own clock (TIME), so
-- that instances whose clocks disagree still share one notion of time.
--
-- The batch comes in groups of alike verifications (the same keys and arguments: a busy key's), sent once
-- with their number: a group costs Redis its parsing once, however many verifications it has.
-- KEYS: each group's keys in turn: its nb bucket keys; with credits, then the counter, the set of counters to
--   write back, the sentinel.
-- ARGV: each group's arguments in turn: how many verifications, nb, nk (its number of keys: nb, or nb + 3 with
--   credits); per bucket limit, interval (T, us), cost; with credits, then credit_id, cost, refill amount (-1: no
--   refill), refill moment, mode (0: spend, 1: the counter may be stale, reload it, 2: load it), and with mode 2
--   only the counter's ttl_ms, the database's remaining and refilled_at (-1: null), and the write-back count the
--   caller saw.
--   Last, the call's deadline (us, Redis's clock): past it the caller has given up on the call and done without
--   it, so it does nothing and answers the error LATE.
-- Reply: one list per verification (those of each group in turn), of integers: {code, now (us), credits left (-1:
--   no credits, -2: not read), write-back count (with LOAD), sentinel created (0/1), retry_after (us), then per
--   bucket remaining and reset_at (us)}. Codes: 0 VALID, 1 RATE_LIMITED, 2 USAGE_EXCEEDED, 3 LOAD (the counter
--   is missing or stale: no credits were spent; call again with mode 2).
--
-- A counter is a hash: r remaining; f refilled_at (epoch of the pending spends, -1: null); p credits spent and
-- not yet written back; m 1 when a refill to f is not written back yet, with its amount a; s 1 when stale;
-- w write-backs in flight and wt when the last began; n write-backs finished. The common case reads four fields
-- and writes two; the counter's idle TTL is renewed by take.lua, which every spend's write-back goes through.
local FIELDS = {'r', 'f', 'p', 'm', 'a', 's', 'w', 'wt', 'n'}

local now = nil
local function clock()
  if now == nil then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return now
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

-- What this call has read and will write: each key is read once, and written once at the end.
local tats = {} -- bucket key -> TAT (us), or false for a missing (full) bucket
local taken, is_taken = {}, {} -- bucket keys whose TAT changed
local counters = {} -- counter key -> its fields, with .exists, .dirty (fields to write), .whole, .ttl, .add
local changed = {} -- counter keys to write
local sentinels = {} -- sentinel key -> true once looked at

local function tat_of(key)
  local tat = tats[key]
  if tat == nil then
    local raw = redis.call('GET', key)
    tat = false
    if raw then
      tat = tonumber(raw)
    end
    tats[key] = tat
  end
  return tat
end

local function counter_of(ck)
  local c = counters[ck]
  if c == nil then
    local h = redis.call('HMGET', ck, 'r', 'f', 'p', 's')
    if h[1] then
      c = {exists = true, r = tonumber(h[1]), f = tonumber(h[2]), p = tonumber(h[3]), s = tonumber(h[4])}
    else
      c = {exists = false, r = 0, f = -1, p = 0, s = 0, m = 0, a = 0, w = 0, wt = 0, n = 0}
    end
    c.dirty = {}
    counters[ck] = c
  end
  return c
end

-- The fields only the rare path needs (those this call set already stay as they are).
local function read_rest(ck, c)
  if c.n == nil then
    local h = redis.call('HMGET', ck, 'm', 'a', 'w', 'wt', 'n')
    for i, field in ipairs({'m', 'a', 'w', 'wt', 'n'}) do
      if c[field] == nil then
        c[field] = tonumber(h[i]) or 0
      end
    end
  end
end

local function changes(ck, c)
  if not c.changed then
    c.changed = true
    changed[#changed + 1] = ck
  end
  return c.dirty
end

local function reply(code, credits, n, created, retry, g, olds, news)
  local out = {code, now or 0, credits, n, created, 0}
  if code == 1 then
    out[6] = retry
  end
  local b = g.b
  for i = 1, g.nb do
    local limit, interval = b[4 * i - 2], b[4 * i - 1]
    local tat = news[i]
    if code ~= 0 then
      tat = olds[i]
    end
    if not tat or tat < now then
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

local function take(g, news)
  local b = g.b
  for i = 1, g.nb do
    local key = b[4 * i - 3]
    tats[key] = news[i]
    if not is_taken[key] then
      is_taken[key] = true
      taken[#taken + 1] = key
    end
  end
end

-- A group whose keys start at KEYS[kc] and arguments (after its count) at ARGV[ac], read once; and where the next
-- group's start.
local function group(kc, ac)
  local nb, nk = tonumber(ARGV[ac]), tonumber(ARGV[ac + 1])
  local b = {} -- per bucket: key, limit, interval, cost
  for i = 1, nb do
    local j = ac + 2 + 3 * (i - 1)
    b[4 * i - 3], b[4 * i - 2], b[4 * i - 1], b[4 * i] = KEYS[kc + i - 1], tonumber(ARGV[j]), tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  end
  local g = {nb = nb, b = b}
  local c = ac + 2 + 3 * nb
  if nk == nb then
    return g, kc + nk, c
  end
  g.ck, g.dirty, g.sentinel = KEYS[kc + nb], KEYS[kc + nb + 1], KEYS[kc + nb + 2]
  g.cid, g.cost, g.amount = ARGV[c], tonumber(ARGV[c + 1]), tonumber(ARGV[c + 2])
  g.moment, g.mode = tonumber(ARGV[c + 3]), tonumber(ARGV[c + 4])
  if g.mode ~= 2 then
    return g, kc + nk, c + 5
  end
  g.ttl, g.lr, g.lf, g.ln = tonumber(ARGV[c + 5]), tonumber(ARGV[c + 6]), tonumber(ARGV[c + 7]), tonumber(ARGV[c + 8])
  return g, kc + nk, c + 9
end

-- One verification of group g: its reply.
local function spend(g)
  local nb, b = g.nb, g.b
  local allowed, retry = true, 0
  local olds, news = {}, {}
  if nb > 0 then
    clock()
  end
  for i = 1, nb do
    local limit, interval = b[4 * i - 2], b[4 * i - 1]
    local tat = tat_of(b[4 * i - 3])
    local base = now
    if tat and tat >= now then
      base = tat
    end
    local new = base + b[4 * i] * interval
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

  local ck = g.ck
  if ck == nil then
    if not allowed then
      return reply(1, -1, 0, 0, retry, g, olds, news)
    end
    take(g, news)
    return reply(0, -1, 0, 0, retry, g, olds, news)
  end

  local cost, amount, moment, mode = g.cost, g.amount, g.moment, g.mode
  local st = counter_of(ck)

  if not allowed then
    local shown = -2
    if st.exists and st.s == 0 and mode ~= 1 then
      shown = st.r
      if amount >= 0 and st.f < moment then
        shown = amount
      end
    end
    return reply(1, shown, 0, 0, retry, g, olds, news)
  end

  local r, f, p, m, a, s, w, n = st.r, st.f, st.p, st.m, st.a, st.s, st.w, st.n
  local created = 0
  local whole = false
  if not st.exists or s == 1 or mode == 1 then
    -- The sentinel vanishes with everything else when Redis loses its data: the caller counts that. A counter
    -- that exists was loaded after any such loss, so only this path needs to look.
    local sentinel = g.sentinel
    if not sentinels[sentinel] then
      sentinels[sentinel] = true
      if redis.call('EXISTS', sentinel) == 0 then
        redis.call('SET', sentinel, '1')
        created = 1
      end
    end
    read_rest(ck, st)
    m, a, w, n = st.m, st.a, st.w, st.n
    if st.exists and w > 0 and clock() - st.wt > 10000000 then
      w = 0 -- a write-back that never finished (its process died): stop waiting for it
    end
    if mode ~= 2 then
      if st.exists and mode == 1 and s == 0 then
        st.s = 1
        changes(ck, st).s = true
      end
      return reply(3, -2, n, created, retry, g, olds, news)
    end
    local lr, lf = g.lr, g.lf
    if not st.exists then
      r, f = lr, lf -- HSETNX-like: only the first caller to find the counter missing initialises it
    elseif w == 0 and n == g.ln then
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
    take(g, news)
  end
  if whole then
    st.r, st.f, st.p, st.m, st.a, st.s, st.w = r, f, p, m, a, s, w
    changes(ck, st)
    st.exists, st.whole, st.ttl = true, true, g.ttl
  elseif code ~= 0 then
    return reply(code, r, 0, 0, retry, g, olds, news) -- refused, nothing loaded: nothing to write
  else
    local dirty = changes(ck, st)
    st.r, st.p = r, p
    dirty.r, dirty.p = true, true
    if refilled then
      st.f, st.m, st.a = f, m, a
      dirty.f, dirty.m, dirty.a = true, true, true
    end
  end
  if p > 0 or m == 1 then
    st.add, st.dirty_set = g.cid, g.dirty
  end
  return reply(code, r, n or 0, created, retry, g, olds, news)
end

local last = #ARGV
if clock() > tonumber(ARGV[last]) then
  return redis.error_reply('LATE this call reached Redis after its caller gave up on it')
end

local out = {}
local kc, ac = 1, 1
while ac < last do
  local count = tonumber(ARGV[ac])
  local g
  g, kc, ac = group(kc, ac + 1)
  for _ = 1, count do
    out[#out + 1] = spend(g)
  end
end

for _, key in ipairs(taken) do
  local tat = tats[key]
  redis.call('SET', key, tat, 'PX', math.max(1, math.ceil((tat - now) / 1000)))
end
for _, ck in ipairs(changed) do
  local c = counters[ck]
  local d = c.dirty
  if c.whole then
    redis.call('HSET', ck, 'r', c.r, 'f', c.f, 'p', c.p, 'm', c.m, 'a', c.a, 's', c.s, 'w', c.w, 'wt', c.wt, 'n', c.n)
    redis.call('PEXPIRE', ck, c.ttl)
  elseif d.r and not (d.f or d.s) then
    redis.call('HSET', ck, 'r', c.r, 'p', c.p) -- spends, the common case
  else
    local args = {}
    for _, field in ipairs(FIELDS) do
      if d[field] then
        args[#args + 1] = field
        args[#args + 1] = c[field]
      end
    end
    redis.call('HSET', ck, unpack(args))
  end
  if c.add then
    redis.call('SADD', c.dirty_set, c.add)
  end
end
return out
