-- The `moonsocket` module, in every script style: logging into the server's log, clocks and
-- timers. Host primitives live in the global __moonsocket, which this chunk hides.
local host = __moonsocket
__moonsocket = nil

local M = { _VERSION = "moonsocket 0.1" }

local function log_at(level)
  return function(...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    host.log(level, table.concat(parts, "", 1, parts.n))
  end
end

M.debug = log_at("debug")
M.info = log_at("info")
M.warn = log_at("warn")
M.error = log_at("error")

--- Logs at `level` ("debug", "info", "warn", "error"); arguments are concatenated.
function M.log(level, ...)
  log_at(level)(...)
end

--- Wall-clock time in seconds since the epoch, with milliseconds.
M.now = host.now
--- Milliseconds since the script started, monotonic.
M.monotonic = host.monotonic

--- set_timeout(ms, fn): calls `fn` once after `ms` milliseconds; returns a timer id for `cancel`.
M.set_timeout = host.set_timeout
--- set_interval(ms, fn): calls `fn` every `ms` milliseconds; returns a timer id for `cancel`.
M.set_interval = host.set_interval

--- Cancels a timer; false when it already fired.
M.cancel = host.cancel_timer

--- publish(topic, msg [, binary]): to every subscriber of `topic` (clients and scripts, on every
--- node of the cluster); returns the number of receivers on this node.
M.publish = host.publish
--- subscribe(topic, fn): calls fn(msg, topic) for every message published on `topic`; returns a
--- subscription id for unsubscribe.
M.subscribe = host.subscribe
--- unsubscribe(id or topic): ends one subscription, or every one of a topic; false when none.
M.unsubscribe = host.unsubscribe
--- history(topic): the last messages published on `topic`, oldest first (see --history).
M.history = host.history

-- `print` goes to the server log at level info, as ngx's print does: its arguments
-- concatenated, no separator (OpenResty's tutorial snippets, which need no ngx, run in this
-- style and print so).
print = M.info

package.preload["moonsocket"] = function() return M end
