-- Claim due webhook and event-stream deliveries (RedisStore.claim_due_deliveries).
-- KEYS: deliveries (hash id -> record), deliveries:due (sorted set id by next attempt)
-- ARGV: now, limit, end of the lease.
-- The due ones get the end of the lease as their score, in this one atomic step, so that no
-- other claim takes them meanwhile. Returns their records, earliest first.

local ids = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
if #ids == 0 then
    return {}
end
for _, id in ipairs(ids) do
    redis.call("ZADD", KEYS[2], ARGV[3], id)
end
return redis.call("HMGET", KEYS[1], unpack(ids))
