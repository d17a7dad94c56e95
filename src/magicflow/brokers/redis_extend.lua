-- Heartbeat: reset the idle time of entries this consumer still owns (XCLAIM ... JUSTID does
-- not count a delivery). An entry claimed meanwhile by another consumer is left to it.
--
-- KEYS[1] the queue's stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] idle time to set (ms), ARGV[4...] entry ids
-- Returns how many entries were extended.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local extended = 0
for i = 4, #ARGV do
    local pending = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)
    if pending[1] and pending[1][2] == consumer then
        redis.call('XCLAIM', stream, group, consumer, 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
        extended = extended + 1
    end
end
return extended
