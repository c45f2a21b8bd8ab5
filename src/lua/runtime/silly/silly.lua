-- The coroutine style (silly): the modules `silly`, `silly.task`, `silly.time`,
-- `silly.logger`, `silly.sync.channel`, `silly.sync.waitgroup` and `silly.encoding.json`,
-- built on the shared cooperative scheduler (moonsocket.scheduler). The network modules
-- (`silly.net.http`, `silly.net.websocket`) live in silly-net.lua.
--
-- Called as a chunk with the host primitives (see coroutine-style.ts). Returns start_main,
-- the function the host runs the script's main chunk with. silly-net.lua reaches the rest
-- of the runtime (spawn_task, block, wake) as package.loaded["moonsocket.silly"].
local H = ...

local sched = require "moonsocket.scheduler"

local co_running, co_status = coroutine.running, coroutine.status
local pack, unpack, concat = table.pack, table.unpack, table.concat
local tostring, type, select, error, pairs = tostring, type, select, error, pairs
local traceback = debug and debug.traceback or function(msg) return tostring(msg) end

local R = {}

---------------------------------------------------------------------------------------------
-- Tasks. silly names a task's state RUN, READY, WAIT, SLEEP; a finished task has none.

local status = setmetatable({}, { __mode = "k" })
R.status = status
local exiting = false

--- Runs fn(...) as a new task with `context` (the connection it serves; nil inherits the
--- creator's, see scheduler.spawn). Returns the coroutine.
local function task_body(fn, ...)
  local co = co_running()
  status[co] = "RUN"
  fn(...)
  status[co] = nil
end

-- The same for one argument (task.fork, timers), with no vararg frame and no local below the
-- call: a task blocked in a read then fits in the coroutine's initial stack of 40 slots, which
-- Lua would double for good (+750 bytes per idle task) once a call needs more.
local function task_body1(fn, arg)
  status[co_running()] = "RUN"
  fn(arg)
  status[co_running()] = nil
end

local function spawn_task(fn, context, ...)
  -- Shared body functions: no closure per task (an idle connection's task lives long).
  local co
  if select("#", ...) == 1 then
    co = sched.spawn(task_body1, context, fn, ...)
  else
    co = sched.spawn(task_body, context, fn, ...)
  end
  status[co] = "READY"
  return co
end
R.spawn_task = spawn_task

local function current()
  local co, main = co_running()
  if main then error("this call blocks: run it inside a task (task.fork)", 3) end
  return co
end

--- Blocks the running task in state `state` while calling `wait_fn(...)` (a scheduler call
--- that yields), and returns its results.
local function block(state, wait_fn, ...)
  local co = current()
  status[co] = state
  local results = pack(wait_fn(...))
  status[co] = "RUN"
  return unpack(results, 1, results.n)
end
R.block = block

--- Makes a waiting task ready, passing `value` as the result of its wait.
local function wake(co, value)
  status[co] = "READY"
  sched.wakeup(co, value)
end
R.wake = wake

local task = {}

--- Creates a task running func(userdata) and schedules it; returns the coroutine.
function task.fork(func, userdata)
  if type(func) ~= "function" then
    error("bad argument #1 to 'fork' (function expected, got " .. type(func) .. ")", 2)
  end
  if exiting then return nil end
  return spawn_task(func, nil, userdata)
end

--- The running task.
function task.running()
  return (co_running())
end

--- Suspends the running task until task.wakeup; returns the value given to wakeup.
function task.wait()
  local co = current()
  local state = status[co]
  if state ~= nil and state ~= "RUN" then error("BUG: wait on task stat:" .. tostring(state), 2) end
  return block("WAIT", sched.wait)
end

--- Wakes a task suspended in task.wait with `result`.
function task.wakeup(t, result)
  local state = status[t]
  if state ~= "WAIT" then error("BUG: wakeup on task stat:" .. tostring(state), 2) end
  wake(t, result)
end

--- "RUN", "READY", "WAIT", "SLEEP", or nil once the task is gone.
function task.status(t)
  if co_status(t) == "dead" then return nil end
  return status[t]
end

--- Number of tasks ready to run.
function task.readycount()
  local n = 0
  for t, state in pairs(status) do
    if state == "READY" and co_status(t) ~= "dead" then n = n + 1 end
  end
  return n
end
task.taskstat = task.readycount

--- Every live task with its traceback and state (for debugging).
function task.inspect()
  local tasks = {}
  for t, state in pairs(status) do
    if co_status(t) ~= "dead" then tasks[t] = { traceback = traceback(t), status = state } end
  end
  return tasks
end
task.tasks = task.inspect

---------------------------------------------------------------------------------------------
-- Logging: the server's log, with silly's levels. Arguments are joined by spaces.

local levels = { DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3 }
local level_names = { [0] = "debug", "info", "warn", "error" }
local visible = 0

local function join(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  return concat(parts, " ", 1, n)
end

local function formatf(fmt, ...)
  local args = pack(...)
  for i = 1, args.n do
    if type(args[i]) ~= "number" then args[i] = tostring(args[i]) end
  end
  local ok, text = pcall(string.format, tostring(fmt), unpack(args, 1, args.n))
  if ok then return text end
  return tostring(fmt) .. " " .. join(...)
end

local logger = { DEBUG = levels.DEBUG, INFO = levels.INFO, WARN = levels.WARN, ERROR = levels.ERROR }
for level = 0, 3 do
  local name = level_names[level]
  logger[name] = function(...)
    if level >= visible then H.log(name, join(...)) end
  end
  logger[name .. "f"] = function(fmt, ...)
    if level >= visible then H.log(name, formatf(fmt, ...)) end
  end
end

function logger.getlevel()
  return visible
end

function logger.setlevel(level)
  if type(level) ~= "number" or level < 0 or level > 3 then
    error("bad argument #1 to 'setlevel' (level 0..3 expected)", 2)
  end
  visible = level // 1
end

-- `print` writes a line to the server log at level info. Standard Lua separates the
-- arguments with tabs, which a log line would show escaped; a space reads as intended.
function print(...)
  H.log("info", join(...))
end

---------------------------------------------------------------------------------------------
-- Time. Milliseconds everywhere, as in silly.

local time = {}
local floor = math.floor
time.now = H.now
--- Milliseconds since the script started, as an integer.
function time.monotonic() return floor(H.monotonic()) end

--- Suspends the running task for `ms` milliseconds.
function time.sleep(ms)
  if type(ms) ~= "number" then error("bad argument #1 to 'sleep' (number expected, got " .. type(ms) .. ")", 2) end
  if ms < 0 then ms = 0 end
  block("SLEEP", sched.sleep, ms)
end

local timers = {}

--- Runs func(userdata or session) in a new task after `ms` milliseconds; returns the session.
function time.after(ms, func, userdata)
  if type(ms) ~= "number" then error("bad argument #1 to 'after' (number expected, got " .. type(ms) .. ")", 2) end
  if type(func) ~= "function" then error("bad argument #2 to 'after' (function expected, got " .. type(func) .. ")", 2) end
  if ms < 0 then ms = 0 end
  local session
  session = H.set_timer(ms, function()
    if timers[session] == nil then return end
    timers[session] = nil
    -- A timer's task belongs to no connection (the timer fires outside every task).
    if userdata == nil then
      spawn_task(func, nil, session)
    else
      spawn_task(func, nil, userdata)
    end
  end)
  timers[session] = true
  return session
end

--- Cancels a timer made by time.after (nothing happens if it already ran).
function time.cancel(session)
  if timers[session] then
    timers[session] = nil
    H.cancel_timer(session)
  end
end

---------------------------------------------------------------------------------------------
-- silly.sync.channel: many producers, one consumer. `push`/`pop` are silly's names,
-- `send`/`recv` the reference document's.

local channel = {}
local channel_mt = { __index = channel }

function channel.new()
  return setmetatable({ items = {}, first = 1, last = 0, co = nil, closed = false, reason = nil }, channel_mt)
end

--- Queues `dat` (not nil) or hands it to the waiting consumer: true, or false, err.
function channel.push(self, dat)
  if dat == nil then return false, "nil data" end
  if self.closed then return false, self.reason end
  local co = self.co
  if co then
    self.co = nil
    wake(co, dat)
  else
    self.last = self.last + 1
    self.items[self.last] = dat
  end
  return true, nil
end
channel.send = channel.push

--- Next value, blocking while the channel is empty: value, or nil, err once closed and empty.
function channel.pop(self)
  if self.first <= self.last then
    local dat = self.items[self.first]
    self.items[self.first] = nil
    self.first = self.first + 1
    if self.first > self.last then self.first, self.last = 1, 0 end
    return dat, nil
  end
  if self.closed then return nil, self.reason end
  if self.co then return nil, "channel is mpsc" end
  self.co = current()
  local dat = block("WAIT", sched.wait)
  if dat == nil then return nil, self.reason or "channel closed" end
  return dat, nil
end
channel.recv = channel.pop

--- Drops the queued values.
function channel.clear(self)
  self.items, self.first, self.last = {}, 1, 0
end

--- Closes the channel: pushes fail from now on, pops fail once the queue is empty.
function channel.close(self, reason)
  if self.closed then return end
  self.closed = true
  self.reason = reason == nil and "channel closed" or reason
  local co = self.co
  if co then
    self.co = nil
    wake(co, nil)
  end
end

---------------------------------------------------------------------------------------------
-- silly.sync.waitgroup: wait for a set of tasks.

local waitgroup = {}
local waitgroup_mt = { __index = waitgroup }

function waitgroup.new()
  return setmetatable({ count = 0, co = nil }, waitgroup_mt)
end

local function waitgroup_done(self)
  self.count = self.count - 1
  if self.count <= 0 and self.co then
    local co = self.co
    self.co = nil
    wake(co, nil)
  end
end

--- Runs func in a new task counted by the group.
function waitgroup.fork(self, func)
  self.count = self.count + 1
  return spawn_task(function()
    local ok, err = xpcall(func, traceback)
    waitgroup_done(self)
    if not ok then error(err, 0) end
  end)
end

--- Blocks until every task of the group finished.
function waitgroup.wait(self)
  if self.count <= 0 then return end
  self.co = current()
  block("WAIT", sched.wait)
end

---------------------------------------------------------------------------------------------
-- silly: the core module.

local silly = {
  pid = H.pid(),
  gitsha1 = "",
  version = H.version,
  tostring = tostring,
}

local next_id = 0
function silly.genid()
  next_id = next_id + 1
  return next_id
end

function silly.register()
  error("silly.register is internal to silly and not available in moonsocket", 2)
end

--- Logs `errmsg` and the current traceback at level error.
function silly.error(errmsg)
  H.log("error", tostring(errmsg))
  H.log("error", traceback())
end

--- pcall that adds a traceback to the error.
function silly.pcall(f, ...)
  return xpcall(f, function(msg) return traceback("error: " .. tostring(msg), 2) end, ...)
end

--- Stops the script: no new tasks, the servers close (moonsocket has no process to end).
function silly.exit(code)
  exiting = true
  H.exit(code or 0)
  local co, main = co_running()
  if not main then coroutine.yield() end
end

-- The older API had the task functions on `silly` itself.
silly.fork = task.fork
silly.running = task.running
silly.wait = task.wait
silly.wakeup = task.wakeup
silly.status = task.status
silly.taskstat = task.readycount
silly.tasks = task.inspect

---------------------------------------------------------------------------------------------
-- silly.encoding.json on top of cjson.

local function json_module()
  local cjson = require "cjson"
  local json = {}
  function json.encode(obj)
    return cjson.encode(obj)
  end
  function json.decode(str)
    local ok, obj = pcall(cjson.decode, str)
    if not ok then return nil, tostring(obj) end
    return obj, #str + 1
  end
  return json
end

---------------------------------------------------------------------------------------------

local preload = package.preload
preload["silly"] = function() return silly end
preload["silly.task"] = function() return task end
preload["silly.time"] = function() return time end
preload["silly.logger"] = function() return logger end
preload["silly.sync.channel"] = function() return channel end
preload["silly.sync.waitgroup"] = function() return waitgroup end
preload["silly.encoding.json"] = json_module

--- Starts the script's main chunk as the first task (context "main").
function R.start_main(fn)
  spawn_task(fn, "main")
end

package.loaded["moonsocket.silly"] = R
return R.start_main
