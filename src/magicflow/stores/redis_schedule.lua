-- Move a schedule's next run (RedisStore.advance_schedule) if it is still the one expected.
-- KEYS: schedules:next (hash id -> next run, as repr(float))
-- ARGV: id, expected next run, new next run. Returns 1 when moved, 0 otherwise.

if redis.call("HGET", KEYS[1], ARGV[1]) ~= ARGV[2] then
    return 0
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
return 1
