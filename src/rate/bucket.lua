-- mdp's shared token bucket (see src/rate/shared.rs): one atomic call per acquire.
local now = redis.call('TIME')
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at_s', 'at_us', 'rate')
local tokens = tonumber(state[1])
local at_s, at_us, last_rate = tonumber(state[2]), tonumber(state[3]), tonumber(state[4])
if tokens == nil or at_s == nil or at_us == nil or last_rate == nil then
  tokens, at_s, at_us, last_rate = capacity, tonumber(now[1]), tonumber(now[2]), rate
end
local elapsed = (tonumber(now[1]) - at_s) + (tonumber(now[2]) - at_us) / 1000000
if elapsed > 0 then tokens = tokens + elapsed * last_rate end
if tokens > capacity then tokens = capacity end
if rate <= 0 then tokens = 0 end
local granted, wait_ms = 0, -1
if rate > 0 and wanted <= tokens then
  tokens = tokens - wanted
  granted = 1
elseif rate > 0 and wanted <= capacity then
  wait_ms = math.ceil((wanted - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at_s', now[1], 'at_us', now[2], 'rate', tostring(rate))
local ttl = tonumber(ARGV[4])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) else redis.call('PERSIST', KEYS[1]) end
return {granted, wait_ms}
