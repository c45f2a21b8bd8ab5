-- Cooperative scheduler and socket inboxes shared by the coroutine (silly) and OpenResty
-- styles. Coroutines run one at a time in this single Lua state; a coroutine that waits for
-- I/O, a timer or a wakeup yields back here, and the host resumes the loop (run) after every
-- event it delivers. Nothing busy-polls.
--
-- Called as a chunk with the host primitives:
--   host.set_timer(ms, fn, repeat) -> id, host.cancel_timer(id)
--   host.failed(context, message, traceback)   a coroutine died with an error
--   host.epoch   the engine's budget epoch table (see run_entry)
-- Returns the scheduler module (also preloaded as "moonsocket.scheduler").
local host = ...

local co_create, co_resume, co_status, co_running, co_yield =
  coroutine.create, coroutine.resume, coroutine.status, coroutine.running, coroutine.yield
local pack, unpack = table.pack, table.unpack
local type, tostring, getmetatable, pcall = type, tostring, getmetatable, pcall
local debug_traceback = debug and debug.traceback

local M = {}

-- Backpressure on a socket the script reads too slowly (when the host gives host.flow): past
-- this many unread events or bytes the host stops reading from the peer (TCP then slows it
-- down), and reads again once the script has caught up to half. Without it a client could
-- fill the Lua heap, which every connection shares, by sending to a handler that never reads.
local flow = host.flow
local HIGH_EVENTS <const> = 1024
local HIGH_BYTES <const> = 8 * 1024 * 1024

-- Ready queue: entries { co, n = k, args... } resumed in order by run().
local queue, head, tail = {}, 1, 0
-- Owner context of each coroutine (e.g. the connection it serves), inherited by spawned children.
local contexts = setmetatable({}, { __mode = "k" })
-- Context of the coroutine being resumed right now, for the host after a CPU-budget abort.
M.current_context = nil

local function push(co, ...)
  tail = tail + 1
  queue[tail] = pack(co, ...)
end

--- Creates a coroutine running fn(...) and queues it. `context` defaults to the caller's.
function M.spawn(fn, context, ...)
  local co = co_create(fn)
  local parent = co_running()
  contexts[co] = context or contexts[parent]
  push(co, ...)
  return co
end

--- Queues `co` to be resumed with the given values.
function M.wakeup(co, ...)
  push(co, ...)
end

--- The context of `co` (default: the running coroutine).
function M.context(co)
  return contexts[co or co_running()]
end

function M.set_context(co, context)
  contexts[co] = context
end

--- Suspends the running coroutine until someone calls wakeup on it; returns the wakeup values.
function M.wait()
  local co, main = co_running()
  if main then error("cannot wait outside a coroutine (use task.fork)", 2) end
  return co_yield()
end

--- The text of an error value, as the standalone `lua` shows it: a string or number as is,
--- the result of a __tostring metamethod, else "(error object is a table value)".
function M.error_text(e)
  local t = type(e)
  if t == "string" then return e end
  if t == "number" then return tostring(e) end
  local mt = getmetatable(e)
  if type(mt) == "table" and mt.__tostring ~= nil then
    local ok, text = pcall(tostring, e)
    if ok and type(text) == "string" then return text end
  end
  return "(error object is a " .. t .. " value)"
end
local error_text = M.error_text

local function traceback(co, message)
  if debug_traceback then
    local ok, text = pcall(debug_traceback, co, message)
    if ok then return text end
  end
  return message
end

--- Resumes the next ready coroutine. Returns true if one ran, false when none is ready.
--- The host bridge calls this once per entry into Lua, so that the CPU budget (which the
--- engine counts per entry) applies to each resume separately: one runaway coroutine is
--- stopped without eating the budget of the others queued behind it.
function M.step()
  while head <= tail do
    local entry = queue[head]
    queue[head] = nil
    head = head + 1
    local co = entry[1]
    if co_status(co) == "suspended" then
      -- Kept until the failure is reported: a spent CPU budget may raise again on the way
      -- (it fires on every instruction until control is back in the host), and the host then
      -- blames current_context.
      M.current_context = contexts[co]
      local ok, err = co_resume(co, unpack(entry, 2, entry.n))
      if not ok then
        local text = error_text(err)
        host.failed(contexts[co], text, traceback(co, text))
      end
      M.current_context = nil
      return true
    end
  end
  head, tail = 1, 0
  return false
end

--- Resumes queued coroutines until none is ready.
function M.run()
  while M.step() do end
end

local epoch = host.epoch

--- Host entry: calls first(...) when given (the host wakes tasks so), then resumes queued
--- coroutines until none is ready, all in this one entry. Each resume gets a CPU budget of
--- its own: moving the budget epoch makes the engine start the budget over. A runaway
--- coroutine still ends the entry (a spent budget fires until control is back in the host),
--- and the host calls again for the rest.
function M.run_entry(first, ...)
  M.current_context = nil
  if first then first(...) end
  local step = M.step
  repeat
    epoch[1] = epoch[1] + 1
  until not step()
end

--- Sleeps `ms` milliseconds (yields; other coroutines run meanwhile).
function M.sleep(ms)
  local co = co_running()
  host.set_timer(ms, function() M.wakeup(co) end, false)
  return co_yield()
end

---------------------------------------------------------------------------------------------
-- Socket inboxes. The host delivers events for socket handle h with deliver(h, kind, data,
-- extra); a coroutine reads them in order with read(h, timeout_ms).
-- kinds: 0 continuation, 1 text, 2 binary, 8 close (data = reason, extra = code), 9 ping,
-- 10 pong, and -1 "closed" (the connection is gone; extra = code).

local sockets = {}

function M.open_socket(h)
  -- Events are kept in three parallel arrays (no table per event), created on first use so
  -- that an idle connection costs little.
  sockets[h] = { first = 1, last = 0, waiter = nil, closed = false }
end

function M.socket_closed(h)
  local s = sockets[h]
  return s == nil or s.closed
end

function M.forget_socket(h)
  sockets[h] = nil
end

--- Queues n events at once (a socket read's worth of messages): one entry into Lua instead
--- of n, and a reader woken once takes them all without yielding in between.
function M.post_batch(hs, kinds, datas, extras, n)
  local post = M.post
  for i = 1, n do post(hs[i], kinds[i], datas[i], extras[i]) end
end

--- Queues an event for socket h and wakes its reader, without running the scheduler (the
--- bridge then runs it one resume per entry, see step).
function M.post(h, kind, data, extra)
  local s = sockets[h]
  if s then
    if kind == -1 then
      s.closed = true
      s.close_code = extra
    else
      local last = s.last + 1
      s.last = last
      local kinds = s.kinds
      if kinds == nil then
        kinds = {}
        s.kinds, s.datas, s.extras = kinds, {}, {}
      end
      kinds[last], s.datas[last], s.extras[last] = kind, data, extra
      if flow and data then
        local bytes = (s.bytes or 0) + #data
        s.bytes = bytes
        if not s.paused and (last - s.first + 1 >= HIGH_EVENTS or bytes >= HIGH_BYTES) then
          s.paused = true
          flow(h, false)
        end
      end
    end
    local waiter = s.waiter
    if waiter then
      s.waiter = nil
      push(waiter)
    end
  end
end

--- Number of events queued for socket h and not read yet.
function M.pending(h)
  local s = sockets[h]
  if s == nil then return 0 end
  return s.last - s.first + 1
end

--- Next event of socket h: kind, data, extra; or nil, "timeout" / nil, "closed".
function M.read(h, timeout_ms)
  local s = sockets[h]
  if s == nil then return nil, "closed" end
  while s.first > s.last do
    if s.closed then return nil, "closed" end
    local co, main = co_running()
    if main then error("cannot read outside a coroutine", 2) end
    local timer, timed_out = nil, false
    if timeout_ms and timeout_ms > 0 then
      timer = host.set_timer(timeout_ms, function()
        if s.waiter == co then
          s.waiter = nil
          timed_out = true
          push(co)
        end
      end, false)
    end
    s.waiter = co
    co_yield()
    if timer and not timed_out then host.cancel_timer(timer) end
    if timed_out then return nil, "timeout" end
  end
  local first = s.first
  local kinds, datas, extras = s.kinds, s.datas, s.extras
  local kind, data, extra = kinds[first], datas[first], extras[first]
  kinds[first], datas[first], extras[first] = nil, nil, nil
  s.first = first + 1
  if flow and data then
    local bytes = s.bytes - #data
    s.bytes = bytes
    if s.paused and s.last - first <= HIGH_EVENTS / 2 and bytes <= HIGH_BYTES / 2 then
      s.paused = false
      flow(h, true)
    end
  end
  return kind, data, extra
end

package.loaded["moonsocket.scheduler"] = M
return M
