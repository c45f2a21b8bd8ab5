/**
 * The Lua chunk that turns a fresh state (all standard libraries open) into the sandbox. It runs
 * once, before any script, with two private host functions as arguments, and returns a table of
 * originals the engine keeps for itself. Nothing it removes stays reachable from scripts: the
 * originals live only in this chunk's locals and in the engine's registry refs.
 *
 * What scripts get, and why:
 * - `io`, `dofile`, `loadfile`, `package.loadlib`, `package.searchpath`, `package.cpath`: gone —
 *   they reach the file system or native code.
 * - `os`: only `clock`, `date`, `difftime`, `time` (no `execute`, `exit`, `getenv`, `remove`,
 *   `rename`, `tmpname`, `setlocale`). `os.clock` is CPU time, as C's `clock()` is; the
 *   WebAssembly build's own counts wall-clock time.
 * - `debug`: only `traceback`, which reads the stack and changes nothing (scripts commonly pass it
 *   to `xpcall`); the rest of `debug` can read and write any local, upvalue or metatable.
 * - `string.dump` gone and `load` forced to mode `"t"`: crafted bytecode can break memory safety.
 *   `loadstring` (Lua 5.1 / LuaJIT habit) is `load` with a string.
 * - `collectgarbage`: `"collect"`, `"count"`, `"step"`, `"isrunning"` only; `"stop"` and the tuning
 *   options could disable collection and defeat the memory cap.
 * - `require`: `package.preload`, then the script folder through the host (see
 *   `sandbox-require.ts`); no C searchers.
 * - `print`: goes to the engine's log (there is no stdout to write to).
 * - `setmetatable` refuses metatables with a `__gc` field: Lua runs finalizers with hooks off, so
 *   the CPU budget could not stop an endless `__gc`. An object is only marked for finalization if
 *   its metatable has `__gc` when set, so adding the field later has no effect (as in plain Lua).
 *
 * @module
 */

/** Chunk name of the prelude, shown in its own error messages. */
export const SANDBOX_PRELUDE_NAME = "=[sandbox]";

/**
 * Lua source of the prelude. Arguments: `read_module(name)`, `host_print(text)`, `cpu_clock()`
 * (CPU seconds of the thread that runs Lua).
 */
export const SANDBOX_PRELUDE = `
local read_module, host_print, cpu_clock = ...
local error, select, tostring, type = error, select, tostring, type
local concat, format = table.concat, string.format
local raw_load, raw_collectgarbage, raw_setmetatable = load, collectgarbage, setmetatable
local rawget = rawget
local package, loaded = package, package.loaded

io = nil
loaded.io = nil

local os_lib = os
os = {
  clock = cpu_clock,
  date = os_lib.date,
  difftime = os_lib.difftime,
  time = os_lib.time,
}
loaded.os = os

debug = { traceback = debug.traceback }
loaded.debug = debug

string.dump = nil
dofile = nil
loadfile = nil

-- The caller's mode is ignored: only text chunks. An explicit env argument (even nil) is kept.
function load(chunk, chunkname, mode, ...)
  if select("#", ...) > 0 then
    return raw_load(chunk, chunkname, "t", (...))
  end
  return raw_load(chunk, chunkname, "t")
end

function loadstring(s, chunkname)
  return raw_load(s, chunkname, "t")
end

local gc_allowed = { collect = true, count = true, step = true, isrunning = true }
function collectgarbage(opt, ...)
  if opt == nil then opt = "collect" end
  if not gc_allowed[opt] then
    error(format("bad argument #1 to 'collectgarbage' (option '%s' is not allowed)", tostring(opt)), 2)
  end
  return raw_collectgarbage(opt, ...)
end

function setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("bad argument #2 to 'setmetatable' (__gc metamethods are not supported)", 2)
  end
  return raw_setmetatable(t, mt)
end

function print(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    parts[i] = tostring((select(i, ...)))
  end
  host_print(concat(parts, "\\t"))
end

local preload_searcher = package.searchers[1]
local function script_searcher(name)
  local source, path = read_module(name)
  if source == nil then
    return path
  end
  local loader, err = raw_load(source, "@" .. path, "t")
  if loader == nil then
    error(format("error loading module '%s' from file '%s':\\n\\t%s", name, path, err), 0)
  end
  return loader, path
end

package.loadlib = nil
package.searchpath = nil
package.cpath = ""
package.path = "./?.lua;./?/init.lua"
package.searchers = { preload_searcher, script_searcher }

return { collectgarbage = raw_collectgarbage }
`;
