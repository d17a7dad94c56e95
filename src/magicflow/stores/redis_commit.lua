-- The Redis store's group commit (RedisStore.commit): every transition of a batch, checked
-- against the execution's current version and applied in order, atomically (a script runs
-- alone). A transition whose check fails is not applied at all and its execution is reported;
-- once an execution conflicts, its later transitions in the batch conflict too.
--
-- ARGV: prefix, number of transitions, then per transition
--   execution_id, expected_version, state, workflow, workflow_version, status,
--   has_parent ("0"/"1"), parent_id, created_at, updated_at,
--   has_idempotency_key, idempotency_key, has_events, events,
--   n, (timer key, due) * n      -- timers set
--   n, timer key * n             -- timers deleted
--   n, (queue, body) * n         -- outbox
--   n, (function, state) * n     -- breakers
--   n, (id, webhook id, created at, next attempt or "", record) * n   -- deliveries
-- then: n, outbox id * n         -- outbox messages done (deleted)
-- Returns {conflicting execution ids, new outbox ids in order, indexes (from 1) of the
-- transitions applied}.
--
-- Keys (all under the prefix): exec:<id> (hash), seq, idx:all / idx:workflow:<w> /
-- idx:status:<s> / idx:parent:<p> (sorted sets of execution ids by creation order), timers
-- (sorted set of "<id>\0<key>" by due), outbox (sorted set of ids) + outbox:messages
-- (hash id -> "<queue>\0<body>"), outbox:id, breakers (hash), idempotency (hash
-- "<workflow>\0<key>" -> id), events:<id> (sorted set of "<version>|<at>|<body>" by version),
-- deliveries (hash id -> record), deliveries:due (sorted set of ids by next attempt),
-- deliveries:of:<webhook id> (sorted set of ids by creation).

local p = ARGV[1]
local count = tonumber(ARGV[2])
local i = 3
local conflicts, conflicted, outbox_ids, applied = {}, {}, {}, {}

local function conflict(eid)
    if not conflicted[eid] then
        conflicted[eid] = true
        conflicts[#conflicts + 1] = eid
    end
end

local function create(eid, t, version)
    local h = p .. "exec:" .. eid
    local seq = redis.call("INCR", p .. "seq")
    redis.call("HSET", h, "version", version, "workflow", t.workflow,
        "workflow_version", t.workflow_version, "status", t.status,
        "created_at", t.created_at, "updated_at", t.updated_at, "state", t.state, "seq", seq)
    redis.call("ZADD", p .. "idx:all", seq, eid)
    redis.call("ZADD", p .. "idx:workflow:" .. t.workflow, seq, eid)
    redis.call("ZADD", p .. "idx:status:" .. t.status, seq, eid)
    if t.has_parent == "1" then
        redis.call("HSET", h, "parent_id", t.parent_id)
        redis.call("ZADD", p .. "idx:parent:" .. t.parent_id, seq, eid)
    end
end

local function update(eid, t, version)
    local h = p .. "exec:" .. eid
    local old = redis.call("HMGET", h, "status", "seq")
    if old[1] ~= t.status then
        redis.call("ZREM", p .. "idx:status:" .. old[1], eid)
        redis.call("ZADD", p .. "idx:status:" .. t.status, old[2], eid)
    end
    redis.call("HSET", h, "version", version, "status", t.status,
        "updated_at", t.updated_at, "state", t.state)
end

for index = 1, count do
    local eid, expected = ARGV[i], tonumber(ARGV[i + 1])
    local t = {
        state = ARGV[i + 2], workflow = ARGV[i + 3], workflow_version = ARGV[i + 4],
        status = ARGV[i + 5], has_parent = ARGV[i + 6], parent_id = ARGV[i + 7],
        created_at = ARGV[i + 8], updated_at = ARGV[i + 9],
        has_key = ARGV[i + 10], key = ARGV[i + 11], has_events = ARGV[i + 12],
        events = ARGV[i + 13],
    }
    i = i + 14
    local timers_set, n_set = i + 1, tonumber(ARGV[i])
    i = i + 1 + 2 * n_set
    local timers_deleted, n_deleted = i + 1, tonumber(ARGV[i])
    i = i + 1 + n_deleted
    local outbox, n_outbox = i + 1, tonumber(ARGV[i])
    i = i + 1 + 2 * n_outbox
    local breakers, n_breakers = i + 1, tonumber(ARGV[i])
    i = i + 1 + 2 * n_breakers
    local deliveries, n_deliveries = i + 1, tonumber(ARGV[i])
    i = i + 1 + 5 * n_deliveries

    local current = tonumber(redis.call("HGET", p .. "exec:" .. eid, "version") or "0")
    local ok = not conflicted[eid] and current == expected
    local idempotency
    if ok and expected == 0 and t.has_key == "1" then
        idempotency = t.workflow .. "\0" .. t.key
        ok = redis.call("HEXISTS", p .. "idempotency", idempotency) == 0
    end
    if not ok then
        conflict(eid)
    else
        applied[#applied + 1] = index
        local version = expected + 1
        if expected == 0 then
            create(eid, t, version)
        else
            update(eid, t, version)
        end
        for k = 0, n_deleted - 1 do
            redis.call("ZREM", p .. "timers", eid .. "\0" .. ARGV[timers_deleted + k])
        end
        for k = 0, n_set - 1 do
            local at = timers_set + 2 * k
            redis.call("ZADD", p .. "timers", ARGV[at + 1], eid .. "\0" .. ARGV[at])
        end
        for k = 0, n_outbox - 1 do
            local at = outbox + 2 * k
            local id = redis.call("INCR", p .. "outbox:id")
            redis.call("ZADD", p .. "outbox", id, id)
            redis.call("HSET", p .. "outbox:messages", id, ARGV[at] .. "\0" .. ARGV[at + 1])
            outbox_ids[#outbox_ids + 1] = id
        end
        for k = 0, n_breakers - 1 do
            local at = breakers + 2 * k
            redis.call("HSET", p .. "breakers", ARGV[at], ARGV[at + 1])
        end
        if idempotency then
            redis.call("HSET", p .. "idempotency", idempotency, eid)
        end
        if t.has_events == "1" then
            redis.call("ZADD", p .. "events:" .. eid, version,
                version .. "|" .. t.updated_at .. "|" .. t.events)
        end
        for k = 0, n_deliveries - 1 do
            local at = deliveries + 5 * k
            local id = ARGV[at]
            if redis.call("HSETNX", p .. "deliveries", id, ARGV[at + 4]) == 1 then
                redis.call("ZADD", p .. "deliveries:of:" .. ARGV[at + 1], ARGV[at + 2], id)
                if ARGV[at + 3] ~= "" then
                    redis.call("ZADD", p .. "deliveries:due", ARGV[at + 3], id)
                end
            end
        end
    end
end

local n_done = tonumber(ARGV[i])
for k = 1, n_done do
    local id = ARGV[i + k]
    redis.call("ZREM", p .. "outbox", id)
    redis.call("HDEL", p .. "outbox:messages", id)
end

return {conflicts, outbox_ids, applied}
