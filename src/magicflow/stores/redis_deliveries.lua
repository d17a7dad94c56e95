-- Enqueue webhook deliveries (RedisStore.enqueue_deliveries); an id already stored is ignored.
-- KEYS: deliveries (hash id -> record), deliveries:due (sorted set id by next attempt)
-- ARGV: the webhook-index key prefix, then per delivery: id, webhook id, created at,
--       next attempt ("" when not pending), record.
-- Each webhook's deliveries are indexed in <prefix><webhook id> (sorted set id by creation).
-- Returns how many were new.

local new = 0
for i = 2, #ARGV, 5 do
    local id = ARGV[i]
    if redis.call("HSETNX", KEYS[1], id, ARGV[i + 4]) == 1 then
        new = new + 1
        redis.call("ZADD", ARGV[1] .. ARGV[i + 1], ARGV[i + 2], id)
        if ARGV[i + 3] ~= "" then
            redis.call("ZADD", KEYS[2], ARGV[i + 3], id)
        end
    end
end
return new
