/**
 * The Lua scripts a RedisBus runs in Redis. Each runs atomically (Redis executes one script at a
 * time), which is what makes "the lowest free id across the cluster" and "no id held twice" true
 * without locks. Keys are built inside the scripts from the prefix in ARGV[1]: the bus targets a
 * single Redis server (not Redis Cluster, where keys would have to be declared).
 *
 * Keys, under the prefix P:
 * - `P next`        the id high-water mark (ids below it are held or in `P free`)
 * - `P free`        sorted set of released ids below the high-water mark
 * - `P ids`         hash id → node holding it
 * - `P nodes`       set of node names
 * - `P lease:NODE`  the node's lease (its info as JSON), expiring after the lease time
 * - `P held:NODE`   set of the node's ids
 * - `P alive`       marker: this Redis has held a cluster (absent = empty, e.g. restarted)
 * - `P recovering`  marker, expiring after one lease: no allocation until live nodes restored
 * - `P history:T`   list of topic T's last envelopes
 * Channels: `P all` (broadcasts, presence), `P node:NODE`, `P topic:T`.
 *
 * @module
 */

/** Helpers shared by the scripts; expects `local P = ARGV[1]` before it. */
const COMMON = `
local function release(id)
  local nextv = tonumber(redis.call('GET', P .. 'next') or '0')
  if id == nextv - 1 then
    nextv = nextv - 1
    while nextv > 0 and redis.call('ZREM', P .. 'free', nextv - 1) == 1 do nextv = nextv - 1 end
    redis.call('SET', P .. 'next', nextv)
  elseif id < nextv then
    redis.call('ZADD', P .. 'free', id, id)
  end
end

local function claim(id)
  local nextv = tonumber(redis.call('GET', P .. 'next') or '0')
  if id >= nextv then
    for gap = nextv, id - 1 do redis.call('ZADD', P .. 'free', gap, gap) end
    redis.call('SET', P .. 'next', id + 1)
  else
    redis.call('ZREM', P .. 'free', id)
  end
end

local function drop_node(node)
  for _, id in ipairs(redis.call('SMEMBERS', P .. 'held:' .. node)) do
    if redis.call('HGET', P .. 'ids', id) == node then
      redis.call('HDEL', P .. 'ids', id)
      release(tonumber(id))
    end
  end
  redis.call('DEL', P .. 'held:' .. node, P .. 'lease:' .. node)
  redis.call('SREM', P .. 'nodes', node)
  redis.call('PUBLISH', P .. 'all', 'X ' .. node .. '\\n')
end

-- Frees the ids of every node whose lease expired (stopped, killed, or cut off too long).
local function purge_dead()
  for _, node in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    if redis.call('EXISTS', P .. 'lease:' .. node) == 0 then drop_node(node) end
  end
end
`;

/**
 * ARGV: prefix, node. Returns the new id, -1 while the cluster is recovering (retry later), -2
 * when this node's lease is gone (register again first).
 */
export const ALLOCATE_SCRIPT = `local P, node = ARGV[1], ARGV[2]
${COMMON}
if redis.call('EXISTS', P .. 'recovering') == 1 then return -1 end
if redis.call('EXISTS', P .. 'lease:' .. node) == 0 then return -2 end
purge_dead()
local id
local popped = redis.call('ZPOPMIN', P .. 'free')
if popped[1] then id = tonumber(popped[1]) else id = redis.call('INCR', P .. 'next') - 1 end
redis.call('HSET', P .. 'ids', id, node)
redis.call('SADD', P .. 'held:' .. node, id)
redis.call('PUBLISH', P .. 'all', 'J ' .. node .. ' ' .. id .. '\\n')
return id`;

/** ARGV: prefix, node, id. Releases the id if this node holds it; returns 1 if it did. */
export const RELEASE_SCRIPT = `local P, node, id = ARGV[1], ARGV[2], ARGV[3]
${COMMON}
if redis.call('HGET', P .. 'ids', id) ~= node then return 0 end
redis.call('HDEL', P .. 'ids', id)
redis.call('SREM', P .. 'held:' .. node, id)
release(tonumber(id))
redis.call('PUBLISH', P .. 'all', 'L ' .. node .. ' ' .. id .. '\\n')
return 1`;

/**
 * ARGV: prefix, node, leaseMs. Extends the lease; returns 1, or 0 when the lease is gone (the
 * node must register again with its live ids).
 */
export const REFRESH_SCRIPT = `local P, node, lease_ms = ARGV[1], ARGV[2], ARGV[3]
if redis.call('PEXPIRE', P .. 'lease:' .. node, lease_ms) == 1 then return 1 end
return 0`;

/**
 * ARGV: prefix, node, leaseMs, info JSON, "join" | "restore", live ids…
 * (Re)registers the node with the ids it holds; forgets ids Redis thinks it holds but it no longer
 * does. A restore into an empty Redis sets the recovering marker, holding allocation back for one
 * lease so every live node can restore first. Returns the ids another node holds now (conflicts:
 * the caller revokes them locally).
 */
export const REGISTER_SCRIPT = `local P, node, lease_ms, info, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
${COMMON}
if redis.call('EXISTS', P .. 'alive') == 0 then
  redis.call('SET', P .. 'alive', '1')
  if mode == 'restore' then redis.call('SET', P .. 'recovering', '1', 'PX', lease_ms) end
end
redis.call('SET', P .. 'lease:' .. node, info, 'PX', lease_ms)
redis.call('SADD', P .. 'nodes', node)
purge_dead()
local live = {}
for i = 6, #ARGV do live[ARGV[i]] = true end
local held = P .. 'held:' .. node
for _, id in ipairs(redis.call('SMEMBERS', held)) do
  if not live[id] then
    redis.call('SREM', held, id)
    if redis.call('HGET', P .. 'ids', id) == node then
      redis.call('HDEL', P .. 'ids', id)
      release(tonumber(id))
      redis.call('PUBLISH', P .. 'all', 'L ' .. node .. ' ' .. id .. '\\n')
    end
  end
end
local conflicts = {}
for i = 6, #ARGV do
  local id = ARGV[i]
  local owner = redis.call('HGET', P .. 'ids', id)
  if owner and owner ~= node then
    conflicts[#conflicts + 1] = tonumber(id)
  elseif not owner then
    claim(tonumber(id))
    redis.call('HSET', P .. 'ids', id, node)
    redis.call('SADD', held, id)
    redis.call('PUBLISH', P .. 'all', 'J ' .. node .. ' ' .. id .. '\\n')
  end
end
return conflicts`;

/** ARGV: prefix, node. Releases every id of the node and its lease. */
export const LEAVE_SCRIPT = `local P, node = ARGV[1], ARGV[2]
${COMMON}
drop_node(node)
return 1`;

/**
 * ARGV: prefix, topic, envelope, history length. Appends to the topic's capped history (when the
 * length is above 0) and publishes, atomically, so the history's order is the delivery order.
 */
export const PUBLISH_SCRIPT = `local P, topic, envelope, keep = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if keep > 0 then
  local key = P .. 'history:' .. topic
  redis.call('RPUSH', key, envelope)
  redis.call('LTRIM', key, -keep, -1)
end
return redis.call('PUBLISH', P .. 'topic:' .. topic, envelope)`;
