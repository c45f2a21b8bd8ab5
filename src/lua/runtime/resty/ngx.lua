--[[
ngx.lua: the `ngx` API of OpenResty-style scripts (lua-nginx-module's names, return values and
error strings), on moonsocket's cooperative scheduler (scheduler.lua).

Run once per Lua state by openresty-style.ts, as a chunk with:
  prim     the host primitives (openresty-style.ts, `primitives()`)
  sources  { [module name] = Lua source } of the resty.* modules, loaded here so that they can
           reach the private API without exposing it to scripts
  chunk    the compiled script (rewritten by openresty-style.ts: it takes `_ENV, __ngx_shared`)
It sets the global `ngx`, preloads the resty.* modules and returns the style's private API
(start, abort, release, shutdown) to the host.

Requests. Each WebSocket upgrade request runs the script in its own coroutine, the "entry
thread", whose scheduler context is the request's handle (a positive integer), as
content_by_lua_file does. Light threads (ngx.thread.spawn) inherit the context; ngx.timer callbacks
run with a timer context (a negative integer) and no request. Each request has its own global environment (falling back to
_G), `ngx.ctx` and `ngx.var`, as in OpenResty.

A request finishes when its entry thread and all its light threads are done, when one of them
calls ngx.exit, when the entry thread raises an error, or -- moonsocket's addition -- when one of
them calls ngx.sleep after the connection closed: OpenResty would leave such a loop (the
tutorial's live feed) running forever, here it is stopped at its next ngx.sleep. Finishing closes
every other suspended thread of the request and tells the host, which closes or answers the
connection.

Error strings are OpenResty's, verbatim, because scripts match on them.
]]

local prim, sources, chunk = ...

local sched = require("moonsocket.scheduler")

local co_running, co_yield, co_resume, co_status, co_close, co_create =
  coroutine.running, coroutine.yield, coroutine.resume, coroutine.status, coroutine.close, coroutine.create
local pack, unpack, concat = table.pack, table.unpack, table.concat
local type, tostring, tonumber, select, error, pairs, ipairs, pcall, xpcall =
  type, tostring, tonumber, select, error, pairs, ipairs, pcall, xpcall
local setmetatable, getmetatable, rawget, rawset, load = setmetatable, getmetatable, rawget, rawset, load
local floor, tointeger = math.floor, math.tointeger
local format, lower, gsub, gmatch, char, sub, find, match =
  string.format, string.lower, string.gsub, string.gmatch, string.char, string.sub, string.find, string.match
local traceback = debug.traceback
local G = _G

local ngx = {}
local internal = { sched = sched, prim = prim }
local api = {}

--- Requests by handle.
local conns = {}
--- Timer runs by context (a negative integer): { running = bool, ngx_ctx = table }.
local timer_runs = {}
local last_timer_context = 0
--- True once the server is shutting down (ngx.worker.exiting()).
local exiting = false

---------------------------------------------------------------------------------------------------
-- Requests and threads
---------------------------------------------------------------------------------------------------

--- The request of the running coroutine (or nil), and the raw scheduler context (a request
--- handle, a timer context, or nil).
local function current()
  local ctx = sched.context()
  if type(ctx) == "number" then return conns[ctx], ctx end
  return nil, ctx
end
internal.current = current

--- The running request, or the error OpenResty raises where there is none.
local function need_request(level)
  local conn, ctx = current()
  if conn then return conn end
  if ctx ~= nil then error("API disabled in the context of ngx.timer", level + 1) end
  error("no request found", level + 1)
end

--- Ends the running coroutine for good: it yields and is never resumed (a stray resume only
--- makes it yield again). Used by ngx.exit and by threads of a finished request.
local function die()
  while true do co_yield() end
end
internal.die = die

--- Finishes a request: closes its other suspended threads and tells the host how it ended
--- ("normal", "error", or "exit" with the ngx.exit status).
local function finish(conn, how, status)
  if conn.finished then return end
  conn.finished = true
  local me = co_running()
  for co in pairs(conn.coroutines) do
    if co ~= me and co_status(co) == "suspended" then co_close(co) end
  end
  prim.finish(conn.h, how, status or 0)
end

local function maybe_finish(conn)
  if conn.entry_done and conn.live_threads == 0 and not conn.finished then finish(conn, "normal") end
end

--- xpcall handler: the message and a traceback, kept apart for the log.
local function capture(e)
  return { msg = sched.error_text(e), tb = traceback(nil, 2) }
end

--- The script's shared tables (see openresty-style.ts: top-level `local NAME = {}`).
local shared_tables = {}
local function shared_table(name)
  local t = shared_tables[name]
  if t == nil then
    t = {}
    shared_tables[name] = t
  end
  return t
end

local env_mt = { __index = G }

local function run_entry(conn)
  local ok, err = xpcall(chunk, capture, conn.env, shared_table)
  conn.entry_done = true
  if not ok then
    prim.report_error("handler", err.msg, err.tb, conn.h)
    finish(conn, "error")
  else
    maybe_finish(conn)
  end
end

--- Host: a WebSocket upgrade request arrived with handle h; run the script for it.
function api.start(h)
  -- Four fields to start with (eight slots once the handshake adds wb and accepted): the
  -- flags start as nil (false), status nil means 200, clients is made by the first connect.
  -- A connection lives as long as its client, so its table stays small.
  local conn = {
    h = h,
    env = setmetatable({}, env_mt),
    coroutines = {},
    live_threads = 0,
  }
  conns[h] = conn
  sched.open_socket(h)
  local co = sched.spawn(run_entry, h, conn)
  conn.coroutines[co] = true
end

--- Host: a thread of request h died of an error the request cannot survive (CPU budget, memory).
function api.abort(h)
  local conn = conns[h]
  if conn then finish(conn, "error") end
end

--- Host: request h is finished and its connection closed; forget it.
function api.release(h)
  local conn = conns[h]
  conns[h] = nil
  sched.forget_socket(h)
  if conn then
    local clients = conn.clients
    if clients then
      for _, ch in ipairs(clients) do sched.forget_socket(ch) end
    end
  end
end

--- Stops the running thread if its request is finished, or finishes the request if its
--- connection is gone (see the header: handlers looping on ngx.sleep).
local function check_alive(conn)
  if conn.finished then die() end
  if sched.socket_closed(conn.h) then
    prim.log("debug", "connection closed: stopping its handler at ngx.sleep", nil, conn.h)
    finish(conn, "normal")
    die()
  end
end

---------------------------------------------------------------------------------------------------
-- ngx.thread
---------------------------------------------------------------------------------------------------

--- Light-thread records by coroutine: parent, state ("running", "zombie", "dead"), results.
local threads = setmetatable({}, { __mode = "k" })

local function thread_main(rec, fn, ...)
  local res = pack(xpcall(fn, capture, ...))
  local conn = rec.conn
  if not res[1] then
    local e = res[2]
    prim.report_error("light thread", e.msg, e.tb, conn and conn.h)
    res = pack(false, e.msg)
  end
  rec.results = res
  rec.state = "zombie"
  if conn then conn.live_threads = conn.live_threads - 1 end
  local waiter = rec.waiter
  if waiter then sched.wakeup(waiter, rec) end
  if conn then maybe_finish(conn) end
end

local thread = {}

--- ngx.thread.spawn(fn, ...): runs fn(...) in a new light thread at once, until it first
--- yields; returns the thread.
function thread.spawn(fn, ...)
  if type(fn) ~= "function" then
    error(format("bad argument #1 to 'spawn' (function expected, got %s)", type(fn)), 2)
  end
  local parent, main = co_running()
  if main then error("no request found", 2) end
  local ctx = sched.context(parent)
  local conn = type(ctx) == "number" and conns[ctx] or nil
  if conn and conn.finished then die() end
  local co = co_create(thread_main)
  local rec = { co = co, parent = parent, conn = conn, state = "running" }
  threads[co] = rec
  sched.set_context(co, ctx)
  if conn then
    conn.coroutines[co] = true
    conn.live_threads = conn.live_threads + 1
  end
  local ok, err = co_resume(co, rec, fn, ...)
  if not ok then error(err, 0) end
  -- The child may have called ngx.exit: then this thread ends too.
  if conn and conn.finished then die() end
  return co
end

local function results(rec)
  rec.state = "dead"
  return unpack(rec.results, 1, rec.results.n)
end

--- ngx.thread.wait(t1, t2, ...): the results of the first of the threads to end
--- (true, ... or false, err).
function thread.wait(...)
  local n = select("#", ...)
  if n == 0 then error("at least one coroutine should be specified", 2) end
  local me = co_running()
  for i = 1, n do
    local t = select(i, ...)
    if type(t) ~= "thread" then error(format("bad argument #%d to 'wait' (lua thread expected)", i), 2) end
    local rec = threads[t]
    if rec == nil then error("attempt to wait on a coroutine that is not a user thread", 2) end
    if rec.parent ~= me then error("only the parent coroutine can wait on the thread", 2) end
    if rec.state == "zombie" then
      return results(rec)
    elseif rec.state == "dead" and i == n then
      return nil, "already waited or killed"
    end
  end
  for i = 1, n do
    local rec = threads[select(i, ...)]
    if rec.state == "running" then rec.waiter = me end
  end
  local done
  repeat
    done = co_yield()
  until type(done) == "table" and threads[done.co] == done and done.state == "zombie"
  for i = 1, n do
    local rec = threads[select(i, ...)]
    if rec.waiter == me then rec.waiter = nil end
  end
  local conn = current()
  if conn and conn.finished then die() end
  return results(done)
end

--- ngx.thread.kill(t): 1, or nil and OpenResty's reason.
function thread.kill(t)
  if type(t) ~= "thread" then error("bad argument #1 to 'kill' (lua thread expected)", 2) end
  local rec = threads[t]
  if rec == nil then return nil, "not user thread" end
  if rec.parent ~= co_running() then return nil, "killer not parent" end
  if rec.state == "zombie" then
    rec.state = "dead"
    return nil, "already terminated"
  elseif rec.state == "dead" then
    return nil, "already waited or killed"
  end
  rec.state = "dead"
  if co_status(t) == "suspended" then co_close(t) end
  local conn = rec.conn
  if conn then
    conn.live_threads = conn.live_threads - 1
    conn.coroutines[t] = nil
  end
  return 1
end

ngx.thread = thread

---------------------------------------------------------------------------------------------------
-- ngx.exit, ngx.sleep
---------------------------------------------------------------------------------------------------

--- ngx.exit(status): ends the request's handler (all its threads). Before the WebSocket
--- handshake, status is the HTTP response (444: close without one); after it, 0 or a 2xx ends the
--- handler normally and anything else (>= 300, ngx.ERROR) drops the connection.
function ngx.exit(status)
  local code = tointeger(status)
  if code == nil then
    error(format("bad argument #1 to 'exit' (number expected, got %s)", type(status)), 2)
  end
  local _, main = co_running()
  if main then error("no request found", 2) end
  local conn, ctx = current()
  if conn then
    finish(conn, "exit", code)
  else
    local run = timer_runs[ctx]
    if run and run.running then
      run.running = false
      internal.timer_done()
    end
  end
  die()
end

--- ngx.sleep(seconds): yields for that long (millisecond resolution); 0 just yields.
function ngx.sleep(...)
  local n = select("#", ...)
  if n ~= 1 then error(format("attempt to pass %d arguments, but accepted 1", n), 2) end
  local arg = ...
  local seconds = tonumber(arg)
  if seconds == nil then error(format("bad argument #1 to 'sleep' (number expected, got %s)", type(arg)), 2) end
  if seconds < 0 then error(format('invalid sleep duration "%s"', tostring(arg)), 2) end
  local _, main = co_running()
  if main then error("no request found", 2) end
  local conn = current()
  if conn then check_alive(conn) end
  sched.sleep(floor(seconds * 1000 + 0.5))
  if conn then check_alive(conn) end
end

---------------------------------------------------------------------------------------------------
-- ngx.timer
---------------------------------------------------------------------------------------------------

local timer = {}
local pending_timers = {}
local pending_count, running_count = 0, 0

function internal.timer_done()
  running_count = running_count - 1
end

local function run_timer(ctx, rec, premature)
  local run = { running = true }
  timer_runs[ctx] = run
  running_count = running_count + 1
  local ok, e = xpcall(rec.fn, capture, premature, unpack(rec.args, 1, rec.args.n))
  if run.running then
    run.running = false
    running_count = running_count - 1
  end
  timer_runs[ctx] = nil
  if not ok then prim.report_error("ngx.timer callback", e.msg, e.tb, nil) end
end

--- Runs a timer's callback in a new coroutine with a fresh timer context.
local function spawn_timer(rec, premature)
  last_timer_context = last_timer_context - 1
  local ctx = last_timer_context
  sched.spawn(run_timer, ctx, ctx, rec, premature)
end

local function fire(rec, premature)
  if not rec.every and pending_timers[rec] then
    pending_timers[rec] = nil
    pending_count = pending_count - 1
  end
  spawn_timer(rec, premature)
end

local function add_timer(name, every, ...)
  local n = select("#", ...)
  if n < 2 then error(format("expecting at least 2 arguments but got %d", n), 3) end
  local delay, fn = ...
  local seconds = tonumber(delay)
  if seconds == nil then error(format("bad argument #1 to '%s' (number expected, got %s)", name, type(delay)), 3) end
  local ms = floor(seconds * 1000)
  if every and ms <= 0 then error("delay cannot be zero", 3) end
  if type(fn) ~= "function" then error(format("bad argument #2 to '%s' (Lua function expected)", name), 3) end
  if exiting and ms > 0 then return nil, "process exiting" end
  local rec = { fn = fn, args = pack(select(3, ...)), every = every }
  pending_timers[rec] = true
  pending_count = pending_count + 1
  rec.id = prim.set_timer(ms < 0 and 0 or ms, function() fire(rec, false) end, every)
  return true
end

--- ngx.timer.at(delay, callback, ...): callback(premature, ...) after delay seconds, in a
--- detached light thread (no request). Returns true, or nil, "process exiting".
function timer.at(...)
  return add_timer("at", false, ...)
end

--- ngx.timer.every(delay, callback, ...): callback(premature, ...) every delay seconds.
function timer.every(...)
  return add_timer("every", true, ...)
end

function timer.running_count()
  return running_count
end

function timer.pending_count()
  return pending_count
end

ngx.timer = timer

--- Host: the server is shutting down. Pending timers fire at once with premature = true.
function api.shutdown()
  exiting = true
  for rec in pairs(pending_timers) do
    prim.cancel_timer(rec.id)
    pending_timers[rec] = nil
    pending_count = pending_count - 1
    spawn_timer(rec, true)
  end
end

---------------------------------------------------------------------------------------------------
-- Logging, output
---------------------------------------------------------------------------------------------------

ngx.STDERR, ngx.EMERG, ngx.ALERT, ngx.CRIT, ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.INFO, ngx.DEBUG =
  0, 1, 2, 3, 4, 5, 6, 7, 8
-- nginx's levels onto the server log's.
local LOG_LEVELS = { [0] = "error", "error", "error", "error", "error", "warn", "info", "info", "debug" }

--- "script.lua:12" of the function `level` levels up (1 = the caller of this function's caller).
local function location(level)
  local tb = traceback("", level + 1)
  local line = match(tb, "traceback:\n\t([^\n]*)")
  return line and match(line, "^(.-:%d+):") or nil
end

-- Logs `text` at `level` with the position of the script line that called the function
-- calling this one, and the client of the running request.
local function log_line(level, text)
  local _, h = current()
  prim.log(level, text, location(3), type(h) == "number" and h or nil)
end

local function log_arg(v, i, fname)
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "number" then return (math.type(v) == "float" and v == floor(v) and v > -1e15 and v < 1e15) and format("%d", v) or tostring(v) end
  if tv == "nil" then return "nil" end
  if tv == "boolean" then return v and "true" or "false" end
  if v == ngx.null then return "null" end
  if tv == "table" then
    local mt = getmetatable(v)
    if type(mt) == "table" and mt.__tostring then return tostring(v) end
    error(format("bad argument #%d to '%s' (expected table to have __tostring metamethod)", i, fname), 3)
  end
  error(format("bad argument #%d to '%s' (string, number, boolean, or nil expected, got %s)", i, fname, tv), 3)
end

--- ngx.log(level, ...): the arguments concatenated, into the server log.
function ngx.log(level, ...)
  local l = tointeger(level)
  if l == nil then error(format("bad argument #1 to 'log' (number expected, got %s)", type(level)), 2) end
  if l < 0 or l > 8 then error(format("bad log level: %d", l), 2) end
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = log_arg((select(i, ...)), i + 1, "log") end
  log_line(LOG_LEVELS[l], concat(parts, "", 1, n))
end

--- print(...): ngx.log at NOTICE (the server's info), as in OpenResty: the arguments are
--- concatenated, with no separator.
function G.print(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  log_line("info", concat(parts, "", 1, n))
end

--- Text of ngx.say / ngx.print arguments (strings, numbers, booleans, nil, ngx.null, arrays).
local function output_text(parts, v)
  local tv = type(v)
  if tv == "table" and v ~= ngx.null then
    for i = 1, #v do output_text(parts, v[i]) end
  elseif v == ngx.null then
    parts[#parts + 1] = "null"
  else
    parts[#parts + 1] = log_arg(v, #parts + 1, "say")
  end
end

local function output(newline, ...)
  local conn = need_request(3)
  local parts = {}
  for i = 1, select("#", ...) do output_text(parts, (select(i, ...))) end
  if newline then parts[#parts + 1] = "\n" end
  if conn.accepted then return nil, "raw request socket acquired" end
  return prim.say(conn.h, concat(parts))
end

--- ngx.say / ngx.print: before websocket:new they make the HTTP response body (sent if the
--- handler ends without a handshake); after it there is no HTTP response to write to.
function ngx.say(...) return output(true, ...) end
function ngx.print(...) return output(false, ...) end
function ngx.flush() return 1 end
function ngx.send_headers() return 1 end
function ngx.eof() return 1 end

-- Response headers: a plain table; moonsocket answers the handshake itself.
ngx.header = {}

---------------------------------------------------------------------------------------------------
-- Constants
---------------------------------------------------------------------------------------------------

ngx.OK, ngx.ERROR, ngx.AGAIN, ngx.DONE, ngx.DECLINED = 0, -1, -2, -4, -5

ngx.HTTP_GET, ngx.HTTP_HEAD, ngx.HTTP_PUT, ngx.HTTP_POST, ngx.HTTP_DELETE = 2, 4, 16, 8, 32
ngx.HTTP_OPTIONS, ngx.HTTP_MKCOL, ngx.HTTP_COPY, ngx.HTTP_MOVE = 512, 64, 128, 256
ngx.HTTP_PROPFIND, ngx.HTTP_PROPPATCH, ngx.HTTP_LOCK, ngx.HTTP_UNLOCK = 1024, 2048, 4096, 8192
ngx.HTTP_PATCH, ngx.HTTP_TRACE = 16384, 32768

local STATUSES = {
  HTTP_CONTINUE = 100, HTTP_SWITCHING_PROTOCOLS = 101, HTTP_OK = 200, HTTP_CREATED = 201,
  HTTP_ACCEPTED = 202, HTTP_NO_CONTENT = 204, HTTP_PARTIAL_CONTENT = 206,
  HTTP_SPECIAL_RESPONSE = 300, HTTP_MOVED_PERMANENTLY = 301, HTTP_MOVED_TEMPORARILY = 302,
  HTTP_SEE_OTHER = 303, HTTP_NOT_MODIFIED = 304, HTTP_TEMPORARY_REDIRECT = 307,
  HTTP_PERMANENT_REDIRECT = 308, HTTP_BAD_REQUEST = 400, HTTP_UNAUTHORIZED = 401,
  HTTP_PAYMENT_REQUIRED = 402, HTTP_FORBIDDEN = 403, HTTP_NOT_FOUND = 404, HTTP_NOT_ALLOWED = 405,
  HTTP_NOT_ACCEPTABLE = 406, HTTP_REQUEST_TIMEOUT = 408, HTTP_CONFLICT = 409, HTTP_GONE = 410,
  HTTP_UPGRADE_REQUIRED = 426, HTTP_TOO_MANY_REQUESTS = 429, HTTP_CLOSE = 444, HTTP_ILLEGAL = 451,
  HTTP_INTERNAL_SERVER_ERROR = 500, HTTP_METHOD_NOT_IMPLEMENTED = 501, HTTP_BAD_GATEWAY = 502,
  HTTP_SERVICE_UNAVAILABLE = 503, HTTP_GATEWAY_TIMEOUT = 504, HTTP_VERSION_NOT_SUPPORTED = 505,
  HTTP_INSUFFICIENT_STORAGE = 507,
}
for name, value in pairs(STATUSES) do ngx[name] = value end

local cjson_ok, cjson = pcall(require, "cjson")
ngx.null = cjson_ok and cjson.null or setmetatable({}, { __tostring = function() return "userdata: NULL" end })

---------------------------------------------------------------------------------------------------
-- Time
---------------------------------------------------------------------------------------------------

--- Wall-clock seconds since the epoch, with milliseconds.
function ngx.now() return prim.now() / 1000 end
ngx.time = prim.time
ngx.today = prim.today
ngx.localtime = prim.localtime
ngx.utctime = prim.utctime
ngx.http_time = prim.http_time
ngx.cookie_time = prim.cookie_time
ngx.parse_http_time = prim.parse_http_time
--- moonsocket's clock is never cached, so there is nothing to update.
function ngx.update_time() end

---------------------------------------------------------------------------------------------------
-- Encoding, hashing
---------------------------------------------------------------------------------------------------

ngx.md5 = prim.md5
ngx.md5_bin = prim.md5_bin
ngx.sha1_bin = prim.sha1_bin
ngx.hmac_sha1 = prim.hmac_sha1
ngx.crc32_short = prim.crc32
ngx.crc32_long = prim.crc32
ngx.encode_base64 = prim.encode_base64
ngx.decode_base64 = prim.decode_base64

local function hex_byte(c)
  return format("%%%02X", c:byte())
end

--- ngx.escape_uri(str [, type]): type 2 (the default, a URI component) escapes all but
--- A-Z a-z 0-9 - . _ ~; type 0 (a whole URI) escapes only controls, space, #, %, ? and bytes >= 0x7f.
function ngx.escape_uri(s, kind)
  if s == nil then return "" end
  s = tostring(s)
  if kind == 0 then return (gsub(s, "[%z\1-\32#%%?\127-\255]", hex_byte)) end
  return (gsub(s, "[^%w%-%._~]", hex_byte))
end

local function unescape(s)
  s = gsub(s, "+", " ")
  return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

--- ngx.unescape_uri(str): %XX sequences decoded, + as a space; malformed ones kept.
function ngx.unescape_uri(s)
  if s == nil then return "" end
  return unescape(tostring(s))
end

--- Query-string arguments as ngx.req.get_uri_args / ngx.decode_args return them.
local function decode_args(s, max)
  max = tointeger(max) or 100
  local t, count = {}, 0
  if s == nil or s == "" then return t end
  for part in gmatch(s, "[^&]+") do
    if max > 0 and count >= max then return t, "truncated" end
    local eq = find(part, "=", 1, true)
    local key, value
    if eq then
      key, value = unescape(sub(part, 1, eq - 1)), unescape(sub(part, eq + 1))
    else
      key, value = unescape(part), true
    end
    if key ~= "" then
      count = count + 1
      local old = t[key]
      if old == nil then
        t[key] = value
      elseif type(old) == "table" then
        old[#old + 1] = value
      else
        t[key] = { old, value }
      end
    end
  end
  return t
end

function ngx.decode_args(s, max)
  if type(s) ~= "string" then error(format("bad argument #1 to 'decode_args' (string expected, got %s)", type(s)), 2) end
  return decode_args(s, max)
end

function ngx.encode_args(args)
  if type(args) ~= "table" then error(format("bad argument #1 to 'encode_args' (table expected, got %s)", type(args)), 2) end
  local parts = {}
  local function add(key, v)
    local tv = type(v)
    if v == true then
      parts[#parts + 1] = key
    elseif tv == "string" or tv == "number" then
      parts[#parts + 1] = key .. "=" .. ngx.escape_uri(tostring(v))
    elseif v ~= false then
      error(format("attempt to use %s as query arg value", tv), 3)
    end
  end
  for k, v in pairs(args) do
    if type(k) ~= "string" then error(format("attempt to use %s as query arg key", type(k)), 2) end
    local key = ngx.escape_uri(k)
    if type(v) == "table" then
      for _, item in ipairs(v) do add(key, item) end
    else
      add(key, v)
    end
  end
  return concat(parts, "&")
end

---------------------------------------------------------------------------------------------------
-- ngx.req, ngx.var, ngx.ctx, ngx.status
---------------------------------------------------------------------------------------------------

-- Header tables answer `headers.foo_bar` for "foo-bar", as OpenResty's do.
local headers_mt = {
  __index = function(t, k)
    if type(k) ~= "string" then return nil end
    local normalized = gsub(lower(k), "_", "-")
    if normalized ~= k then return rawget(t, normalized) end
    return nil
  end,
}

local req = {}

--- ngx.req.get_headers([max_headers [, raw]]): lower-case names (original case if raw), repeated
--- headers as arrays; "truncated" as second value beyond max_headers (default 100, 0 = all).
function req.get_headers(max, raw)
  local conn = need_request(2)
  local list = conn.raw_headers
  if list == nil then
    list = prim.req(conn.h, "headers")
    conn.raw_headers = list
  end
  max = tointeger(max) or 100
  local t, count = {}, 0
  for i = 1, #list, 2 do
    if max > 0 and count >= max then
      if not raw then setmetatable(t, headers_mt) end
      return t, "truncated"
    end
    count = count + 1
    local key = raw and list[i] or lower(list[i])
    local value = list[i + 1]
    local old = t[key]
    if old == nil then
      t[key] = value
    elseif type(old) == "table" then
      old[#old + 1] = value
    else
      t[key] = { old, value }
    end
  end
  if not raw then setmetatable(t, headers_mt) end
  return t
end

--- ngx.req.get_uri_args([max_args]): the query string's arguments (`?a` gives true, repeated
--- names an array); "truncated" as second value beyond max_args (default 100, 0 = all).
function req.get_uri_args(max)
  local conn = need_request(2)
  return decode_args(prim.req(conn.h, "args"), max)
end

function req.get_method()
  return prim.req(need_request(2).h, "method")
end

function req.http_version()
  return prim.req(need_request(2).h, "http_version")
end

function req.raw_header(no_request_line)
  return prim.req(need_request(2).h, no_request_line and "raw_header_only" or "raw_header")
end

function req.start_time()
  return prim.req(need_request(2).h, "start_time")
end

function req.is_internal() return false end
function req.read_body() end
function req.discard_body() end
function req.get_body_data() return nil end
function req.get_body_file() return nil end
function req.get_post_args() return nil, "no request body" end

--- The request socket belongs to resty.websocket.server here.
function req.socket()
  return nil, "ngx.req.socket is not supported by moonsocket (use resty.websocket.server)"
end

ngx.req = req

ngx.var = setmetatable({}, {
  __index = function(_, name)
    local conn = need_request(2)
    if type(name) ~= "string" then return nil end
    return prim.var(conn.h, name)
  end,
  __newindex = function(_, name)
    error(format('variable "%s" not found for writing; maybe it is a built-in variable that is not ' ..
      'changeable or you forgot to use "set $%s \'\';" in the config file to define it first',
      tostring(name), tostring(name)), 2)
  end,
})

setmetatable(ngx, {
  __index = function(_, k)
    if k == "ctx" then
      local conn, ctx = current()
      local holder = conn or timer_runs[ctx]
      if holder == nil then error("no request found", 2) end
      local t = holder.ngx_ctx
      if t == nil then
        t = {}
        holder.ngx_ctx = t
      end
      return t
    elseif k == "status" then
      local conn = current()
      if conn == nil then return 0 end
      return conn.accepted and 101 or conn.status or 200
    elseif k == "headers_sent" then
      local conn = current()
      return conn ~= nil and conn.accepted
    end
    return nil
  end,
  __newindex = function(t, k, v)
    if k == "ctx" then
      local conn, ctx = current()
      local holder = conn or timer_runs[ctx]
      if holder == nil then error("no request found", 2) end
      holder.ngx_ctx = v
    elseif k == "status" then
      local conn = need_request(2)
      local status = tointeger(v)
      if status == nil then error("bad argument #3 to '__newindex' (number expected)", 2) end
      if not conn.accepted then
        conn.status = status
        prim.set_status(conn.h, status)
      end
    else
      rawset(t, k, v)
    end
  end,
})

---------------------------------------------------------------------------------------------------
-- ngx.re (JavaScript RegExp through the host; see openresty-style.ts for the PCRE differences)
---------------------------------------------------------------------------------------------------

local re = {}
local re_exec, re_sub = prim.re_exec, prim.re_sub

local function subject_string(s, fname)
  local ts = type(s)
  if ts == "string" then return s end
  if ts == "number" then return tostring(s) end
  error(format("bad argument #1 to '%s' (string expected, got %s)", fname, ts), 3)
end

--- Runs the regex once from byte position init (1-based): positions (0-based start, end
--- exclusive, -1 for unmatched groups) and group names, or nil (no match), or false and an error.
local function exec(subject, regex, opts, init, fname)
  local pos, names, raise = re_exec(subject, tostring(regex), opts or "", init)
  if pos == false and raise then error(names, 3) end
  return pos, names
end

local function captures(subject, pos, names, res)
  local m = res or {}
  for i = 0, #pos // 2 - 1 do
    local s = pos[2 * i + 1]
    m[i] = s >= 0 and sub(subject, s + 1, pos[2 * i + 2]) or false
  end
  if names then
    for name, index in pairs(names) do m[name] = m[index] end
  end
  return m
end

--- ngx.re.match(subject, regex [, options [, ctx [, res_table]]]): captures (m[0] the whole
--- match, m[1..n], named captures by name, false for unmatched groups), or nil; nil, err on error.
function re.match(subject, regex, opts, ctx, res)
  subject = subject_string(subject, "match")
  local init = ctx and ctx.pos or 1
  local pos, names = exec(subject, regex, opts, init, "match")
  if not pos then return nil, names end
  if ctx then ctx.pos = pos[2] + 1 end
  return captures(subject, pos, names, res)
end

--- ngx.re.find(subject, regex [, options [, ctx [, nth]]]): from, to (1-based, inclusive) of the
--- match (or of capture nth), or nil; nil, nil, err on error.
function re.find(subject, regex, opts, ctx, nth)
  subject = subject_string(subject, "find")
  local init = ctx and ctx.pos or 1
  local pos, names = exec(subject, regex, opts, init, "find")
  if pos == nil then return nil end
  if pos == false then return nil, nil, names end
  if ctx then ctx.pos = pos[2] + 1 end
  local i = tointeger(nth) or 0
  local s, e = pos[2 * i + 1], pos[2 * i + 2]
  if s == nil or s < 0 then return nil end
  return s + 1, e
end

--- ngx.re.gmatch(subject, regex [, options]): an iterator of captures tables.
function re.gmatch(subject, regex, opts)
  subject = subject_string(subject, "gmatch")
  local _, err = exec("", regex, opts, 1, "gmatch")
  if _ == false then return nil, err end
  local init, done = 1, false
  return function()
    if done then return nil end
    local pos, names = exec(subject, regex, opts, init, "gmatch")
    if not pos then
      done = true
      return nil, names
    end
    local s, e = pos[1], pos[2]
    init = e + 1
    if e == s then
      -- An empty match: go on one character further (a byte, or a UTF-8 sequence in "u" mode).
      if init > #subject then done = true end
      init = init + (find(opts or "", "u", 1, true) and (match(subject, "^[\192-\247][\128-\191]*", e + 1) or "x"):len() or 1)
    end
    return captures(subject, pos, names)
  end
end

local function substitute(fname, global, subject, regex, replace, opts)
  subject = subject_string(subject, fname)
  if type(replace) == "string" or type(replace) == "number" then
    local out, n, raise = re_sub(subject, tostring(regex), tostring(replace), opts or "", global)
    if out == false then
      if raise then error(n, 3) end
      return nil, nil, n
    end
    return out, n
  end
  if type(replace) ~= "function" then
    error(format("bad argument #3 to '%s' (string, number, or function expected, got %s)", fname, type(replace)), 3)
  end
  local parts, n, init, last = {}, 0, 1, 1
  while init <= #subject + 1 do
    local pos, names = exec(subject, regex, opts, init, fname)
    if pos == nil then break end
    if pos == false then return nil, nil, names end
    local s, e = pos[1], pos[2]
    parts[#parts + 1] = sub(subject, last, s)
    local value = replace(captures(subject, pos, names))
    parts[#parts + 1] = type(value) == "string" and value or tostring(value)
    n = n + 1
    last = e + 1
    init = e + 1
    if e == s then
      if init > #subject then break end
      local step = find(opts or "", "u", 1, true) and (match(subject, "^[\192-\247][\128-\191]*", init) or "x"):len() or 1
      parts[#parts + 1] = sub(subject, init, init + step - 1)
      init = init + step
      last = init
    end
    if not global then break end
  end
  parts[#parts + 1] = sub(subject, last)
  return concat(parts), n
end

--- ngx.re.sub(subject, regex, replace [, options]): newstr, n (0 or 1); replace is a template
--- ($0, $1, ${1}, $$) or a function of the captures table.
function re.sub(subject, regex, replace, opts)
  return substitute("sub", false, subject, regex, replace, opts)
end

--- ngx.re.gsub(subject, regex, replace [, options]): every match replaced; newstr, n.
function re.gsub(subject, regex, replace, opts)
  return substitute("gsub", true, subject, regex, replace, opts)
end

ngx.re = re

---------------------------------------------------------------------------------------------------
-- ngx.worker, ngx.config, ngx.shared, what is not supported
---------------------------------------------------------------------------------------------------

ngx.worker = {
  exiting = function() return exiting end,
  id = prim.worker_id,
  count = prim.worker_count,
  pid = prim.pid,
}

ngx.config = {
  debug = false,
  subsystem = "http",
  ngx_lua_version = 10026,
  nginx_version = 1025003,
  prefix = function() return "" end,
  nginx_configure = function() return "" end,
}

local shdict = load(sources["resty.core.shdict"], "=resty.core.shdict", "t")(prim.monotonic, prim.shdict)
ngx.shared = shdict

ngx.socket = {
  tcp = function() return nil, "ngx.socket.tcp is not supported by moonsocket (use resty.websocket.client)" end,
  udp = function() return nil, "ngx.socket.udp is not supported by moonsocket" end,
}

ngx.location = {
  capture = function() error("ngx.location.capture is not supported by moonsocket", 2) end,
}

-- `require "ffi"` fails with a clear message (the shared library leaves it absent). `setfenv`
-- stays absent rather than erroring: scripts test `if setfenv then` and fall back to _ENV.
if package.preload.ffi == nil and package.loaded.ffi == nil then
  package.preload.ffi = function()
    error("module 'ffi' is LuaJIT-only and not supported by moonsocket (Lua 5.4)", 2)
  end
end

G.ngx = ngx

---------------------------------------------------------------------------------------------------
-- resty.websocket.*
---------------------------------------------------------------------------------------------------

for _, name in ipairs({ "resty.websocket.protocol", "resty.websocket.server", "resty.websocket.client" }) do
  local loader = load(sources[name], "=" .. name, "t")
  package.preload[name] = function() return loader(internal) end
end

return api
