-- nack(requeue=True): acknowledge each entry and add its message again, at the end of the
-- stream or, with a delay, to the sorted set of delayed messages (due time from the server's
-- clock, so clients' clocks don't matter). An entry no longer pending (acknowledged already)
-- is not added again.
--
-- KEYS[1] the queue's stream, KEYS[2] its sorted set of delayed messages
-- ARGV[1] group, ARGV[2] delay (ms), then triples: entry id, deliveries so far, body
-- Returns how many messages were requeued.
local stream, delayed, group = KEYS[1], KEYS[2], ARGV[1]
local delay = tonumber(ARGV[2])
local due = 0
if delay > 0 then
    local time = redis.call('TIME')
    due = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + delay
end
local requeued = 0
for i = 3, #ARGV, 3 do
    local id, count, body = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if redis.call('XACK', stream, group, id) == 1 then
        redis.call('XDEL', stream, id)
        if delay > 0 then
            redis.call('ZADD', delayed, due, count .. ':' .. id .. ':' .. body)
        else
            redis.call('XADD', stream, '*', 'b', body, 'n', count)
        end
        requeued = requeued + 1
    end
end
return requeued
