-- Claim what a receive may hand out besides new entries, atomically:
-- 1. move the delayed messages that are due (a sorted set scored by due time, in ms) back to
--    the stream;
-- 2. claim entries idle longer than the visibility timeout (XAUTOCLAIM), each with its
--    delivery count from the pending entries list.
--
-- KEYS[1] the queue's stream, KEYS[2] its sorted set of delayed messages
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle (ms), ARGV[4] count, ARGV[5] cursor
--
-- A delayed member is "<prior deliveries>:<unique id>:<body>".
-- Returns {next cursor, ms until the next delayed message is due or -1, {{id, fields, count}...}}
local stream, delayed = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
for _, member in ipairs(due) do
    local first = string.find(member, ':', 1, true)
    local second = string.find(member, ':', first + 1, true)
    redis.call('XADD', stream, '*', 'b', string.sub(member, second + 1),
        'n', string.sub(member, 1, first - 1))
    redis.call('ZREM', delayed, member)
end

local next_due = -1
local head = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if head[2] then
    next_due = math.max(tonumber(head[2]) - now, 0)
end

local claimed = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[3], ARGV[5],
    'COUNT', ARGV[4])
local entries = {}
for _, entry in ipairs(claimed[2]) do
    local pending = redis.call('XPENDING', stream, group, entry[1], entry[1], 1)
    local count = 1
    if pending[1] then
        count = pending[1][4]
    end
    table.insert(entries, {entry[1], entry[2], count})
end
return {claimed[1], next_due, entries}
