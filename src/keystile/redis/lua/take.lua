-- Keystile: take the credits spent since the last write-back, for the caller to add to the database
-- (SPEC L3's write-back). The counters stay; their pending spends move to the caller, who reports back
-- through settle.lua.
--
-- Every counter spent from passes here within a write-back interval, so this is where its idle TTL is renewed
-- (spend.lua sets it only when it loads a counter).
--
-- KEYS[1]: the set of counters with pending spends. ARGV: the counter key prefix, the most ids to take, the
-- counters' TTL (ms), the call's deadline (us, Redis's clock): past it the caller has given up and would never
-- write back what this took, so it takes nothing (see spend.lua).
-- Reply: a flat list of credit_id, spent, epoch (refilled_at, -1: null), refill amount (-1: no refill).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
if now > tonumber(ARGV[4]) then
  return redis.error_reply('LATE this call reached Redis after its caller gave up on it')
end
local ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local ck = ARGV[1] .. id
  local h = redis.call('HMGET', ck, 'p', 'f', 'm', 'a', 'w', 'wt')
  if h[1] then
    local p, f, m, a, w, wt = tonumber(h[1]), tonumber(h[2]), tonumber(h[3]), tonumber(h[4]), tonumber(h[5]),
      tonumber(h[6])
    if p > 0 or m == 1 then
      if w > 0 and now - wt > 10000000 then
        w = 0
      end
      redis.call('HSET', ck, 'p', 0, 'm', 0, 'w', w + 1, 'wt', now)
      redis.call('PEXPIRE', ck, tonumber(ARGV[3]))
      local refill = -1
      if m == 1 then
        refill = a
      end
      out[#out + 1] = id
      out[#out + 1] = p
      out[#out + 1] = f
      out[#out + 1] = refill
    end
  end
end
return out
