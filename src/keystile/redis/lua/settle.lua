-- Keystile: finish a write-back begun by take.lua. When the database took the spends (ARGV[2] = 1) the counters
-- only count it; when it failed (0), the spends go back to their counters, to be written back later.
--
-- KEYS[1]: the set of counters with pending spends. ARGV: the counter key prefix, 1 or 0, then per counter
-- credit_id, spent, epoch, refill amount (as take.lua returned them); last, the call's deadline (us, Redis's
-- clock): past it the caller has given up (and keeps spends the database did not take, to write them itself),
-- so it does nothing (see spend.lua).
local clock = redis.call('TIME')
if tonumber(clock[1]) * 1000000 + tonumber(clock[2]) > tonumber(ARGV[#ARGV]) then
  return redis.error_reply('LATE this call reached Redis after its caller gave up on it')
end
local ok = tonumber(ARGV[2]) == 1
for i = 3, #ARGV - 1, 4 do
  local ck = ARGV[1] .. ARGV[i]
  local h = redis.call('HMGET', ck, 'f', 'w', 'n')
  if h[1] then
    local w = math.max(0, tonumber(h[2]) - 1)
    redis.call('HSET', ck, 'w', w, 'n', tonumber(h[3]) + 1)
    -- Spends of an older refill period are moot once the counter has refilled since.
    if not ok and tonumber(h[1]) == tonumber(ARGV[i + 2]) then
      redis.call('HINCRBY', ck, 'p', tonumber(ARGV[i + 1]))
      if tonumber(ARGV[i + 3]) >= 0 then
        redis.call('HSET', ck, 'm', 1, 'a', tonumber(ARGV[i + 3]))
      end
      redis.call('SADD', KEYS[1], ARGV[i])
    end
  end
end
return #ARGV - 1
