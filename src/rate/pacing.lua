-- mdp's shared pacing (see src/rate/shared/pacing.rs): every rule that applies
-- to one acquire, checked and taken in one atomic call, all or nothing, on the
-- server's clock (microseconds).
--
-- KEYS[i]: the state of rule i, already scoped to its key or fingerprint.
-- ARGV[1]: this grant's member (unique: the lease id, and the window entry).
-- ARGV[2]: how many rules follow; then four arguments per rule:
--   window   count  window_ms  cost   exact sliding window: a sorted set of
--                                      "member:cost" scored by grant time
--   interval min_ms 0          0      a key with PX expiry while it holds
--   lease    max    lease_ms   0      a sorted set of leases scored by expiry
--   bucket   rate/s burst      cost   a hash: tokens, at (us)
-- A count, max or rate of 0 holds everything (a pause).
-- Returns {1, 0, now_us} when granted, else {0, rule index, wait_ms}
-- (wait_ms -1: no wait will do at these limits).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local member = ARGV[1]
local n = tonumber(ARGV[2])

local function rule(i)
  local base = 2 + (i - 1) * 4
  return ARGV[base + 1], tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
end

local function cost_of(entry)
  return tonumber(string.match(entry, ':(%d+)$')) or 1
end

-- How long rule i would hold the request (0: it admits it now; -1: never).
local function wait_us(i)
  local kind, a, b, cost = rule(i)
  local key = KEYS[i]
  if kind == 'window' then
    local window = b * 1000
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    if a <= 0 or cost > a then return -1 end
    local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    local used = 0
    for j = 1, #entries, 2 do used = used + cost_of(entries[j]) end
    if used + cost <= a then return 0 end
    -- Drop the oldest entries until the request fits: it may go once the
    -- last of them has left the window.
    local over = used + cost - a
    for j = 1, #entries, 2 do
      over = over - cost_of(entries[j])
      if over <= 0 then return tonumber(entries[j + 1]) + window - now end
    end
    return -1
  elseif kind == 'interval' then
    local left = redis.call('PTTL', key)
    if left > 0 then return left * 1000 end
    return 0
  elseif kind == 'lease' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if a <= 0 then return -1 end
    if redis.call('ZCARD', key) < a then return 0 end
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return tonumber(first[2]) - now
  elseif kind == 'bucket' then
    if a <= 0 or cost > b then return -1 end
    local state = redis.call('HMGET', key, 'tokens', 'at')
    local tokens, at = tonumber(state[1]), tonumber(state[2])
    if tokens == nil or at == nil then tokens, at = b, now end
    tokens = math.min(b, tokens + math.max(0, now - at) / 1000000 * a)
    if cost <= tokens then return 0 end
    return math.ceil((cost - tokens) / a * 1000000)
  end
  return redis.error_reply('unknown pacing rule kind ' .. tostring(kind))
end

-- Check every rule first: the longest hold wins, nothing is taken.
local held, longest = 0, 0
for i = 1, n do
  local wait = wait_us(i)
  if type(wait) == 'table' then return wait end
  if wait < 0 then return {0, i, -1} end
  if wait > longest then held, longest = i, wait end
end
if held > 0 then return {0, held, math.ceil(longest / 1000)} end

-- Every rule admits it: take it from all of them.
for i = 1, n do
  local kind, a, b, cost = rule(i)
  local key = KEYS[i]
  if kind == 'window' then
    redis.call('ZADD', key, now, member .. ':' .. cost)
    redis.call('PEXPIRE', key, b + 1)
  elseif kind == 'interval' then
    if a > 0 then redis.call('SET', key, '1', 'PX', a) end
  elseif kind == 'lease' then
    redis.call('ZADD', key, now + b * 1000, member)
    redis.call('PEXPIRE', key, b + 1)
  elseif kind == 'bucket' then
    local state = redis.call('HMGET', key, 'tokens', 'at')
    local tokens, at = tonumber(state[1]), tonumber(state[2])
    if tokens == nil or at == nil then tokens, at = b, now end
    tokens = math.min(b, tokens + math.max(0, now - at) / 1000000 * a) - cost
    redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(now))
    redis.call('PEXPIRE', key, math.ceil(b / a * 1000) + 60000)
  end
end
return {1, 0, now}
