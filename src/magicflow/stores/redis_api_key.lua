-- Save a new API key (RedisStore.save_api_key) unless its id or its hash is stored already.
-- KEYS: api_keys (hash id -> record), api_keys:by_hash (hash sha256 -> id),
--       api_keys:order (list of ids, oldest first)
-- ARGV: id, key hash, record. Returns 1 when saved, 0 when the id or the hash is taken.

if redis.call("HEXISTS", KEYS[1], ARGV[1]) == 1 or redis.call("HEXISTS", KEYS[2], ARGV[2]) == 1 then
    return 0
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
redis.call("HSET", KEYS[2], ARGV[2], ARGV[1])
redis.call("RPUSH", KEYS[3], ARGV[1])
return 1
