-- Cooperative scheduler shared by the coroutine (silly) and OpenResty styles. Coroutines run one
-- at a time in this single Lua state; a coroutine that waits for I/O, a timer or a wakeup
-- yields back here, and the host resumes the loop (run_entry) after every event it delivers.
-- Nothing busy-polls.
--
-- Socket events wait in the host (host/socket-inboxes.ts), not here: a read takes the next
-- one with a host call, or parks; the host wakes parked readers once per event-loop turn with
-- their event as the resume values (wake_readers), so a message costs one resume and one yield.
--
-- Called as a chunk with the host primitives:
--   host.set_timer(ms, fn, repeat) -> id, host.cancel_timer(id)
--   host.failed(context, message, traceback)   a coroutine died with an error
--   host.epoch   the engine's budget epoch table (see run_entry)
--   host.inbox_take(h, timeout_ms) -> kind, data, extra | nothing (the reader is parked)
--   host.inbox_put_back(h, kind, data, extra), host.inbox_open(h), host.inbox_forget(h),
--   host.inbox_closed(h) -> boolean
-- Returns the scheduler module (also preloaded as "moonsocket.scheduler").
local host = ...

local co_create, co_resume, co_status, co_running, co_yield =
  coroutine.create, coroutine.resume, coroutine.status, coroutine.running, coroutine.yield
local pack, unpack, select = table.pack, table.unpack, select
local type, tostring, getmetatable, pcall = type, tostring, getmetatable, pcall
local debug_traceback = debug and debug.traceback
local inbox_take, inbox_put_back = host.inbox_take, host.inbox_put_back

local M = {}

-- Ready queue, a ring of parallel arrays (no table per wakeup): the coroutine, how many resume
-- values it gets (-1: more than three, packed in a table in slot a), and up to three values.
local q_co, q_n, q_a, q_b, q_c = {}, {}, {}, {}, {}
local head, tail = 1, 0
-- Owner context of each coroutine (e.g. the connection it serves), inherited by spawned children.
local contexts = setmetatable({}, { __mode = "k" })
-- Context of the coroutine being resumed right now, for the host after a CPU-budget abort.
M.current_context = nil

local function push(co, ...)
  local n = select("#", ...)
  -- Written before tail moves: a memory error half-way leaves the queue as it was.
  local at = tail + 1
  if n <= 3 then
    q_a[at], q_b[at], q_c[at] = ...
  else
    q_a[at], n = pack(...), -1
  end
  q_co[at], q_n[at] = co, n
  tail = at
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
    local at = head
    local co, n, a, b, c = q_co[at], q_n[at], q_a[at], q_b[at], q_c[at]
    q_co[at], q_a[at], q_b[at], q_c[at] = nil, nil, nil, nil
    head = at + 1
    if co_status(co) == "suspended" then
      -- Kept until the failure is reported: a spent CPU budget may raise again on the way
      -- (it fires on every instruction until control is back in the host), and the host then
      -- blames current_context.
      M.current_context = contexts[co]
      local ok, err
      if n == 3 then
        ok, err = co_resume(co, a, b, c)
      elseif n == 0 then
        ok, err = co_resume(co)
      elseif n == 1 then
        ok, err = co_resume(co, a)
      elseif n == 2 then
        ok, err = co_resume(co, a, b)
      else
        ok, err = co_resume(co, unpack(a, 1, a.n))
      end
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
--- and the host calls again for the rest (see wake_progress).
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
-- Socket reads. Event kinds: 0 continuation, 1 text, 2 binary, 8 close (data = reason,
-- extra = code), 9 ping, 10 pong, -1 "closed" (the connection is gone; extra = code), -2 the
-- read's deadline passed; the coroutine style adds its own (listen and connect results).

local CLOSED <const> = -1
local TIMEOUT <const> = -2

-- The coroutine parked reading each handle (cleared by the wake that hands it its event).
local readers = {}
M.readers = readers
-- The raw host read, for a style that parks its readers itself (silly: its task states).
M.inbox_take = inbox_take

function M.open_socket(h) host.inbox_open(h) end
function M.forget_socket(h) host.inbox_forget(h) end
function M.socket_closed(h) return host.inbox_closed(h) end

--- Next event of socket h: kind, data, extra; or nil, "timeout" (after timeout_ms, when
--- given) / nil, "closed". Waits, parked, while none is queued; errors outside a coroutine.
--- Kept thin (one frame, few registers): the frames below a parked reader's yield decide its
--- coroutine's stack size.
function M.read(h, timeout_ms)
  local kind, data, extra = inbox_take(h, timeout_ms)
  if kind == nil then
    local co, main = co_running()
    if main then error("cannot read outside a coroutine", 2) end
    repeat
      readers[h] = co
      kind, data, extra = co_yield()
      -- Woken by anything but wake_readers (which clears readers[h]): ask again.
      if readers[h] == co then kind, data, extra = inbox_take(h, timeout_ms) end
    until kind ~= nil
  end
  if kind < 0 then return nil, kind == CLOSED and "closed" or "timeout" end
  return kind, data, extra
end

-- Quads handled by the last wake_readers, for the host after an abort (see below).
local woken = 0

--- Host entry (as run_entry's first): hands events to parked readers, given as flat quads
--- h1, kind1, data1, extra1, h2, …: each reader is queued to resume with its event. An event
--- whose reader is no longer parked (it died) goes back to the host. Counted in `woken` as it
--- goes, so that after an abort the host goes on from the next quad and never delivers twice.
local function wake_reader(h, kind, data, extra)
  local co = readers[h]
  woken = woken + 1
  if co ~= nil and co_status(co) == "suspended" then
    readers[h] = nil
    push(co, kind, data, extra)
  elseif kind ~= TIMEOUT then
    inbox_put_back(h, kind, data, extra)
  end
end

function M.wake_readers(h, kind, data, extra, ...)
  woken = 0
  wake_reader(h, kind, data, extra)
  local n = select("#", ...)
  if n == 0 then return end
  -- More than one (many, under load): a table for the rest beats select() per quad.
  local rest = { ... }
  for i = 1, n, 4 do wake_reader(rest[i], rest[i + 1], rest[i + 2], rest[i + 3]) end
end

--- Quads the last wake_readers reached (the one an abort interrupted counts as handled).
function M.wake_progress()
  return woken
end

package.loaded["moonsocket.scheduler"] = M
return M
