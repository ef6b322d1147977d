-- Keystile: give a request's rate-limit capacity back, when credits refused the request it was taken for
-- (SPEC V2: a rejected request spends nothing). Same arithmetic as keystile.core.ratelimit.refund, in whole
-- microseconds (see spend.lua).
--
-- KEYS: the bucket keys. ARGV: per bucket limit, interval (T, us: Bucket.interval), cost; last, the call's
-- deadline (us, Redis's clock), past which it does nothing (see spend.lua).
-- Reply (integers): {now (us), then per bucket remaining and reset_at (us)}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
if now > tonumber(ARGV[#ARGV]) then
  return redis.error_reply('LATE this call reached Redis after its caller gave up on it')
end

local function div(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local out = {now}
for i = 1, #KEYS do
  local limit, interval, cost = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local raw = redis.call('GET', KEYS[i])
  local tat = now
  if raw then
    tat = math.max(now, tonumber(raw) - cost * interval)
    redis.call('SET', KEYS[i], tat, 'PX', math.max(1, math.ceil((tat - now) / 1000)))
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
