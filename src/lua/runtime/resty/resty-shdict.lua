--[[
resty-shdict.lua: `ngx.shared.DICT`, the shared dictionaries of OpenResty (lua_shared_dict), for
OpenResty-style scripts. Loaded by ngx.lua with one argument, `now_ms` (a monotonic clock in
milliseconds), it returns the `ngx.shared` table.

Every connection of the script runs in the same Lua state, so a dictionary is a Lua table shared by
all of them. A dictionary exists on first use (`ngx.shared.chat`): there is no nginx.conf to
declare it in, and no size limit other than the Lua state's memory cap (so nothing is ever evicted
and `forcible` is always false). Values are strings, numbers, booleans (and lists, for the
lpush/rpush family), as in OpenResty; expiry times are in seconds with millisecond resolution.
Method names, return values and error strings are those of lua-resty-core's shdict.

With a second argument, `store_call(dict, op, ...)` (a host function), the dictionaries live
outside this Lua state: under `--workers N` they are the primary process's, shared by every worker
and reached synchronously (openresty/shared-dict-host.ts). The methods then check their arguments
here, raising the same Lua errors, and return what the store returns (with its capacities,
eviction, `forcible` and "no memory").
]]

local now_ms, store_call = ...

local type, tostring, tonumber, error, pairs, ipairs, next, setmetatable, getmetatable, rawset =
  type, tostring, tonumber, error, pairs, ipairs, next, setmetatable, getmetatable, rawset
local math_type, tointeger, huge = math.type, math.tointeger, math.huge
local remove, insert = table.remove, table.insert

local methods = {}
local dict_mt = { __index = methods }

local function check_zone(zone, fname)
  if getmetatable(zone) ~= dict_mt then
    error('bad "zone" argument', 3)
  end
  return zone
end

local function check_key(key)
  if key == nil then return nil, "nil key" end
  if type(key) ~= "string" then key = tostring(key) end
  if #key == 0 then return nil, "empty key" end
  if #key > 65535 then return nil, "key too long" end
  return key
end

local function check_exptime(exptime)
  if exptime == nil then return 0 end
  local t = tonumber(exptime)
  if t == nil then error('bad "exptime" argument', 3) end
  if t < 0 then error('bad "exptime" argument', 3) end
  return t
end

--- True when key is present and not expired. An expired item is removed, unless `keep` (get
--- leaves it for get_stale, as OpenResty keeps expired items until their memory is needed).
local function alive(d, key, keep)
  if d.values[key] == nil then return false end
  local expires = d.expires[key]
  if expires ~= nil and expires <= now_ms() then
    if not keep then d.values[key], d.flags[key], d.expires[key], d.lists[key] = nil, nil, nil, nil end
    return false
  end
  return true
end

--- Removes expired items (at most max_count, 0 = all); how many.
local function sweep(d, max_count)
  local now, count = now_ms(), 0
  for k, expires in pairs(d.expires) do
    if expires <= now then
      d.values[k], d.flags[k], d.expires[k], d.lists[k] = nil, nil, nil, nil
      count = count + 1
      if max_count > 0 and count >= max_count then break end
    end
  end
  return count
end

-- Nothing evicts expired items here (there is no zone to run out of), so every SWEEP_EVERY
-- writes the dictionary drops the expired ones, keeping memory bounded by the live items.
local SWEEP_EVERY = 1000

local LIST = setmetatable({}, { __tostring = function() return "list" end })

local function store(d, key, value, exptime, flags)
  d.writes = d.writes + 1
  if d.writes % SWEEP_EVERY == 0 then sweep(d, 0) end
  d.values[key] = value
  d.flags[key] = (flags ~= nil and flags ~= 0) and flags or nil
  d.expires[key] = (exptime ~= nil and exptime > 0) and now_ms() + exptime * 1000 or nil
end

local function check_value(value)
  local tv = type(value)
  return tv == "string" or tv == "number" or tv == "boolean" or tv == "nil"
end

local function do_set(self, fname, mode, key, value, exptime, flags)
  local d = check_zone(self, fname)
  local k, err = check_key(key)
  if not k then return nil, err end
  if not check_value(value) then return nil, "bad value type" end
  local t = check_exptime(exptime)
  local f = 0
  if flags ~= nil then
    f = tointeger(flags)
    if f == nil then error('bad "flags" argument', 3) end
  end
  local present = alive(d, k)
  if mode == "add" and present then return false, "exists", false end
  if mode == "replace" and not present then return false, "not found", false end
  if value == nil then
    d.values[k], d.flags[k], d.expires[k], d.lists[k] = nil, nil, nil, nil
  else
    d.lists[k] = nil
    store(d, k, value, t, f)
  end
  return true, nil, false
end

--- dict:get(key): value, flags (flags only when not 0); nil when absent or expired.
function methods.get(self, key)
  local d = check_zone(self, "get")
  local k, err = check_key(key)
  if not k then return nil, err end
  if not alive(d, k, true) then return nil end
  local value = d.values[k]
  if value == LIST then return nil, "value is a list" end
  local flags = d.flags[k]
  if flags then return value, flags end
  return value
end

--- dict:get_stale(key): value, flags, stale (true when expired but not yet removed).
function methods.get_stale(self, key)
  local d = check_zone(self, "get_stale")
  local k, err = check_key(key)
  if not k then return nil, err end
  local value = d.values[k]
  if value == nil then return nil end
  if value == LIST then return nil, "value is a list" end
  local expires = d.expires[k]
  local stale = expires ~= nil and expires <= now_ms()
  return value, d.flags[k] or 0, stale
end

--- dict:set(key, value [, exptime [, flags]]): true, nil, false (a nil value deletes).
function methods.set(self, key, value, exptime, flags)
  return do_set(self, "set", "set", key, value, exptime, flags)
end

function methods.safe_set(self, key, value, exptime, flags)
  return do_set(self, "safe_set", "set", key, value, exptime, flags)
end

--- dict:add(...): like set, but false, "exists" when the key is present.
function methods.add(self, key, value, exptime, flags)
  return do_set(self, "add", "add", key, value, exptime, flags)
end

function methods.safe_add(self, key, value, exptime, flags)
  return do_set(self, "safe_add", "add", key, value, exptime, flags)
end

--- dict:replace(...): like set, but false, "not found" when the key is absent.
function methods.replace(self, key, value, exptime, flags)
  return do_set(self, "replace", "replace", key, value, exptime, flags)
end

function methods.delete(self, key)
  return do_set(self, "delete", "set", key, nil)
end

--- dict:incr(key, value [, init [, init_ttl]]): the new value; nil, "not found" when absent and
--- no init; nil, "not a number" when the stored value is not a number.
function methods.incr(self, key, value, init, init_ttl)
  local d = check_zone(self, "incr")
  local k, err = check_key(key)
  if not k then return nil, err end
  local step = tonumber(value)
  if step == nil then return nil, "value not a number" end
  if not alive(d, k) then
    if init == nil then return nil, "not found" end
    local start = tonumber(init)
    if start == nil then return nil, "init not a number" end
    local result = start + step
    d.lists[k] = nil
    store(d, k, result, check_exptime(init_ttl), 0)
    return result, nil, false
  end
  local old = d.values[k]
  if type(old) ~= "number" then return nil, "not a number" end
  local result = old + step
  d.values[k] = result
  return result, nil
end

local function push(self, fname, key, value, front)
  local d = check_zone(self, fname)
  local k, err = check_key(key)
  if not k then return nil, err end
  local tv = type(value)
  if tv ~= "string" and tv ~= "number" then return nil, "bad value type" end
  local list
  if alive(d, k) then
    if d.values[k] ~= LIST then return nil, "value not a list" end
    list = d.lists[k]
  else
    list = {}
    d.lists[k] = list
    store(d, k, LIST, 0, 0)
  end
  if front then insert(list, 1, value) else list[#list + 1] = value end
  return #list
end

local function pop(self, fname, key, front)
  local d = check_zone(self, fname)
  local k, err = check_key(key)
  if not k then return nil, err end
  if not alive(d, k) then return nil end
  if d.values[k] ~= LIST then return nil, "value not a list" end
  local list = d.lists[k]
  local value = remove(list, front and 1 or #list)
  if #list == 0 then d.values[k], d.lists[k], d.expires[k], d.flags[k] = nil, nil, nil, nil end
  return value
end

--- dict:lpush(key, value) / rpush: the list's new length.
function methods.lpush(self, key, value) return push(self, "lpush", key, value, true) end
function methods.rpush(self, key, value) return push(self, "rpush", key, value, false) end
--- dict:lpop(key) / rpop: the value, or nil when the list is empty or absent.
function methods.lpop(self, key) return pop(self, "lpop", key, true) end
function methods.rpop(self, key) return pop(self, "rpop", key, false) end

function methods.llen(self, key)
  local d = check_zone(self, "llen")
  local k, err = check_key(key)
  if not k then return nil, err end
  if not alive(d, k) then return 0 end
  if d.values[k] ~= LIST then return nil, "value not a list" end
  return #d.lists[k]
end

--- dict:ttl(key): seconds left (0 = never expires); nil, "not found".
function methods.ttl(self, key)
  local d = check_zone(self, "ttl")
  local k, err = check_key(key)
  if not k then return nil, err end
  if not alive(d, k) then return nil, "not found" end
  local expires = d.expires[k]
  if expires == nil then return 0 end
  return (expires - now_ms()) / 1000
end

--- dict:expire(key, exptime): true; nil, "not found". exptime 0 makes it permanent.
function methods.expire(self, key, exptime)
  local d = check_zone(self, "expire")
  local k, err = check_key(key)
  if not k then return nil, err end
  if exptime == nil then error('bad "exptime" argument', 2) end
  local t = check_exptime(exptime)
  if not alive(d, k) then return nil, "not found" end
  d.expires[k] = t > 0 and now_ms() + t * 1000 or nil
  return true
end

--- dict:flush_all(): every item expires now.
function methods.flush_all(self)
  local d = check_zone(self, "flush_all")
  d.values, d.flags, d.expires, d.lists = {}, {}, {}, {}
end

--- dict:flush_expired([max_count]): removes expired items; how many.
function methods.flush_expired(self, max_count)
  local d = check_zone(self, "flush_expired")
  return sweep(d, tointeger(max_count) or 0)
end

--- dict:get_keys([max_count]): the live keys (at most max_count, default 1024; 0 = all).
function methods.get_keys(self, max_count)
  local d = check_zone(self, "get_keys")
  local max = tointeger(max_count) or 1024
  local keys, now = {}, now_ms()
  for k in pairs(d.values) do
    local expires = d.expires[k]
    if expires == nil or expires > now then
      keys[#keys + 1] = k
      if max > 0 and #keys >= max then break end
    end
  end
  return keys
end

--- There is no fixed zone size here; the Lua state's memory cap bounds the dictionaries.
function methods.capacity(self)
  check_zone(self, "capacity")
  return huge
end

function methods.free_space(self)
  check_zone(self, "free_space")
  return huge
end

---------------------------------------------------------------------------------------------------
-- Dictionaries outside the Lua state (--workers N)
---------------------------------------------------------------------------------------------------

if store_call ~= nil then
  local store_methods = {}
  local store_mt = { __index = store_methods }

  local function zone_name(zone)
    if getmetatable(zone) ~= store_mt then error('bad "zone" argument', 3) end
    return zone.name
  end

  local function flags_of(flags)
    if flags == nil then return 0 end
    local f = tointeger(flags)
    if f == nil then error('bad "flags" argument', 3) end
    return f
  end

  local function setter(op)
    return function(self, key, value, exptime, flags)
      local name = zone_name(self)
      local k, err = check_key(key)
      if not k then return nil, err end
      if not check_value(value) then return nil, "bad value type" end
      local t = check_exptime(exptime)
      return store_call(name, op, k, value, t, flags_of(flags))
    end
  end
  for _, op in ipairs({ "set", "safe_set", "add", "safe_add", "replace" }) do
    store_methods[op] = setter(op)
  end

  --- The methods that take only a key.
  for _, op in ipairs({ "get", "get_stale", "delete", "lpop", "rpop", "llen", "ttl" }) do
    store_methods[op] = function(self, key)
      local name = zone_name(self)
      local k, err = check_key(key)
      if not k then return nil, err end
      return store_call(name, op, k)
    end
  end

  function store_methods.incr(self, key, value, init, init_ttl)
    local name = zone_name(self)
    local k, err = check_key(key)
    if not k then return nil, err end
    local step = tonumber(value)
    if step == nil then return nil, "value not a number" end
    local start
    if init ~= nil then
      start = tonumber(init)
      if start == nil then return nil, "init not a number" end
    end
    return store_call(name, "incr", k, step, start, check_exptime(init_ttl))
  end

  local function pusher(op)
    return function(self, key, value)
      local name = zone_name(self)
      local k, err = check_key(key)
      if not k then return nil, err end
      local tv = type(value)
      if tv ~= "string" and tv ~= "number" then return nil, "bad value type" end
      return store_call(name, op, k, value)
    end
  end
  store_methods.lpush, store_methods.rpush = pusher("lpush"), pusher("rpush")

  function store_methods.expire(self, key, exptime)
    local name = zone_name(self)
    local k, err = check_key(key)
    if not k then return nil, err end
    if exptime == nil then error('bad "exptime" argument', 2) end
    return store_call(name, "expire", k, check_exptime(exptime))
  end

  function store_methods.flush_all(self)
    store_call(zone_name(self), "flush_all")
  end

  function store_methods.flush_expired(self, max_count)
    return store_call(zone_name(self), "flush_expired", tointeger(max_count) or 0)
  end

  function store_methods.get_keys(self, max_count)
    return store_call(zone_name(self), "get_keys", tointeger(max_count) or 1024)
  end

  function store_methods.capacity(self) return store_call(zone_name(self), "capacity") end
  function store_methods.free_space(self) return store_call(zone_name(self), "free_space") end

  return setmetatable({}, {
    __index = function(t, name)
      if type(name) ~= "string" then return nil end
      local d = setmetatable({ name = name }, store_mt)
      rawset(t, name, d)
      return d
    end,
  })
end

local function new_dict(name)
  return setmetatable({ name = name, values = {}, flags = {}, expires = {}, lists = {}, writes = 0 }, dict_mt)
end

return setmetatable({}, {
  __index = function(t, name)
    if type(name) ~= "string" then return nil end
    local d = new_dict(name)
    rawset(t, name, d)
    return d
  end,
})
