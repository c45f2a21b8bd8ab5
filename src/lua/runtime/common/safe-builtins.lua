--[[
safe-builtins.lua: budget guards for the library functions (other than pattern matching, see
safe-patterns.lua) whose single C call can run for seconds.

The CPU budget is enforced by a hook every 1000 VM instructions; one C call is one instruction.
Measured on this engine, without these guards:
  * string.rep("a", 2^28): 3.5 s (one memcpy per copy); string.rep("", 2^60): forever (C loops
    n times even when there is nothing to copy);
  * table.move(t, 1, 1e9, 2): 6.5 s, and any range is accepted (1e12 runs for hours);
  * table.concat of 2e6 integers: 2 s; of 1e4 values read through a 2000-deep `__index` chain:
    0.5 s (each read walks the chain in C);
  * table.sort of 1e6 numbers: 1 s (16e6 numbers fit in the default memory cap);
  * table.insert(t, 1, v) / table.remove(t, 1) on 2e6 elements: 50 ms each, so a loop of them
    runs ~200 calls (10 s) between two hook checks;
  * table.unpack through an `__index` chain: 50 µs per value, up to 1e6 values;
  * load of a 16 MB chunk: 0.3 s (2e6 statements: 0.7 s);
  * collectgarbage() with 1e6 live tables: 50 ms per call, 200 calls between hook checks;
  * string.upper/lower/reverse of 32 MB: 0.15-0.2 s per call.
What the guards do:
  * string.rep builds large results from a ~64 KB block repeated in ~4 MB pieces (memcpy speed,
    budget checked between pieces); `rep("", n)` and `rep(s, 0)` return "" at once.
  * table.concat, table.move, table.insert, table.remove and table.sort run in C on small ranges
    and plain tables; large ranges go to C in bounded chunks, and tables with a metatable (whose
    reads and writes can walk `__index`/`__newindex` chains in C) in small chunks or in Lua.
    A large table.sort (or one on a table with a metatable) gets a Lua comparator, so the hook
    runs between comparisons.
  * table.unpack reads through a metatable in Lua.
  * load and loadstring feed a long string chunk to the parser in 64 KB pieces through a reader
    function, so the hook runs between pieces.
  * collectgarbage("collect"/"step") and string.upper/lower/reverse of more than 64 KB force a
    budget check first, so such calls cannot run back to back unchecked.
Results and errors are those of the C functions. Errors the C functions raise keep the
script's position (they are raised again at the script's level); the exceptions are the rare
errors of calls that run user code inside C (a `__len`/`__index` metamethod, a sort comparator).
A memory error stays a memory error.

NOT COVERED (single VM instructions, or functions whose cost is bounded by the memory cap and
small): comparing (`<`, `<=`: strcoll) two equal 100 MB strings takes ~0.45 s per comparison,
`==` ~0.1 s, `..` ~0.1 s, and a loop of them runs 1000 of those between hook checks. Only the
engine can bound that (check the clock from the hook more often after a slow interval). Also
utf8.len (~8 ns/byte), string.format("%q"), string.pack with large sizes: ~1-2 s per call at
the default 256 MB cap; these force a budget check before a call with a string argument over
64 KB, so at most one such call runs past the budget.

HOW THE HOST USES IT
  Run once per state, after the sandbox prelude (it wraps the sandbox's `load`, `loadstring` and
  `collectgarbage`) and before any script:
      engine.run(source, "=safe-builtins", { memory_limit_bytes = 256 * 1024 * 1024 })
  The argument is optional.
]]

local type, error, pcall, select, getmetatable, tostring, tonumber, rawget =
  type, error, pcall, select, getmetatable, tostring, tonumber, rawget
local math_type, tointeger, maxinteger = math.type, math.tointeger, math.maxinteger
local sub = string.sub
local c_rep, c_upper, c_lower, c_reverse = string.rep, string.upper, string.lower, string.reverse
local c_concat, c_sort, c_insert, c_remove, c_move, c_unpack =
  table.concat, table.sort, table.insert, table.remove, table.move, table.unpack

local loaded = rawget(_G, "package") and package.loaded
if loaded and loaded["moonsocket.safe-builtins"] then
  return
end

-- Forces a budget check: the count hook fires every 1000 VM instructions; each iteration of this
-- loop is one instruction (~30 µs).
local function checkpoint()
  for _ = 1, 1024 do
  end
end

local options = ...
if type(options) ~= "table" then
  options = {}
end
-- The state's memory cap, when the host passes it: a string.rep result larger than it fails at
-- once, as C's single allocation does.
local memory_limit = tonumber(options.memory_limit_bytes)

local MEMERR = "not enough memory"
local MAXSIZE = 0x7fffffff -- lstrlib's MAXSIZE on wasm32 (INT_MAX)

-- Raises a real memory error (LUA_ERRMEM, which the host reports as such) by asking for more
-- than any memory cap allows.
local function memory_error()
  c_rep("x", MAXSIZE - 1)
  error(MEMERR, 0) -- not reached
end

--[[
finisher(name) returns finish: the results of `pcall(cfn, ...)`, called as
`return finish(pcall(cfn, ...))` from a wrapper (a tail call, so level 2 is the script). C's
luaL_error messages carry the position of the C function's caller, which under pcall is none:
they are raised again at the script's position. Argument errors name the function as the script
called it ('?' under pcall, since the C function is no longer in the library table).
]]
local function finisher(name)
  local prefix = "bad argument #(%d+) to '%?'"
  local replacement = "bad argument #%1 to '" .. name .. "'"
  return function(ok, ...)
    if ok then
      return ...
    end
    local e = ...
    if e == MEMERR then
      memory_error()
    end
    if type(e) == "string" then
      error((e:gsub(prefix, replacement, 1)), 2)
    end
    error(e, 0)
  end
end

local function typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" then
    local name = rawget(mt, "__name")
    if type(name) == "string" then
      return name
    end
  end
  return type(v)
end

-- luaL_checkinteger / luaL_optinteger conversion: an integer, or nil.
local function to_int(v)
  local mt = math_type(v)
  if mt == "integer" then
    return v
  end
  if mt == nil and type(v) == "string" then
    v = tonumber(v)
    mt = math_type(v)
    if mt == "integer" then
      return v
    end
  end
  if mt == "float" then
    return tointeger(v)
  end
  return nil
end

local function plain(t)
  return type(t) == "table" and getmetatable(t) == nil
end

---------------------------------------------------------------------------------------------------
-- string.rep
---------------------------------------------------------------------------------------------------

-- Estimated ns of C's rep: a memcpy call per copy (~20 ns) plus the bytes (~1 ns each).
local REP_FAST_NS, REP_MAX_NS = 0.25e6, 5e6
local REP_BLOCK, REP_PIECE = 1 << 16, 1 << 22

local finisher_rep = finisher("rep")

local function rep_big(s, n, sep)
  local l = #s
  local lsep = sep and #sep or 0
  local unit = l + lsep
  if unit == 0 then
    return "" -- C would loop n times copying nothing
  end
  if unit > MAXSIZE // n then
    error("resulting string too large", 2)
  end
  if memory_limit ~= nil and n * l + (n - 1) * lsep > memory_limit then
    memory_error() -- C fails its single allocation at once too
  end
  if n * (unit + 25.0) <= REP_MAX_NS then
    checkpoint()
    return c_rep(s, n, sep)
  end
  -- s (sep s)^(n-1) from a ~64 KB block of k copies and a ~4 MB piece of `per` blocks: every C
  -- call copies large chunks, and the parts are joined by one exact-size concatenation, so the
  -- peak memory is twice the result, as for C's own rep.
  local k = REP_BLOCK // unit
  if k < 1 then
    k = 1
  end
  local block = c_rep(s, k, sep)
  local per = REP_PIECE // (#block + lsep)
  if per < 1 then
    per = 1
  end
  local q = n // (per * k)
  local r = n - q * per * k
  local a = r // k
  local b = r - a * k
  local x, y, z
  if q > 0 then
    checkpoint()
    local piece = c_rep(block, per, sep)
    checkpoint()
    x = c_rep(piece, q, sep)
    piece = nil
    checkpoint()
  end
  if a > 0 then
    y = c_rep(block, a, sep)
  end
  if b > 0 then
    z = c_rep(s, b, sep)
  end
  block = nil
  if sep == nil or lsep == 0 then
    if x and y and z then
      return x .. y .. z
    elseif x and y then
      return x .. y
    elseif x and z then
      return x .. z
    elseif y and z then
      return y .. z
    end
  else
    if x and y and z then
      return x .. sep .. y .. sep .. z
    elseif x and y then
      return x .. sep .. y
    elseif x and z then
      return x .. sep .. z
    elseif y and z then
      return y .. sep .. z
    end
  end
  return x or y or z
end

function string.rep(s, n, sep)
  if type(s) == "string" and math_type(n) == "integer" and (sep == nil or type(sep) == "string") then
    if n <= 0 then
      return ""
    end
    if n * (#s + (sep and #sep or 0) + 25.0) <= REP_FAST_NS then
      return c_rep(s, n, sep)
    end
    return rep_big(s, n, sep)
  end
  -- Other argument types: C converts them or raises the argument error (cheaply, before any
  -- copying), then the call is decided on the converted values.
  local ts = type(s)
  if ts == "number" then
    s = tostring(s)
  end
  local tsep = type(sep)
  if tsep == "number" then
    sep = tostring(sep)
  end
  local ni = to_int(n)
  if type(s) ~= "string" or ni == nil or (sep ~= nil and type(sep) ~= "string") then
    return finisher_rep(pcall(c_rep, s, n, sep))
  end
  return string.rep(s, ni, sep)
end

---------------------------------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------------------------------

local CONCAT_FAST, CONCAT_CHUNK, META_CHUNK = 1024, 1024, 16
local SORT_FAST = 2048
local SHIFT_FAST, MOVE_CHUNK = 8192, 8192

local finish_concat, finish_sort, finish_move = finisher("concat"), finisher("sort"), finisher("move")
local finish_insert, finish_remove, finish_unpack =
  finisher("insert"), finisher("remove"), finisher("unpack")

local function concat_chunked(list, sep, i, j, meta)
  local chunk = meta and META_CHUNK or CONCAT_CHUNK
  local pieces, np = {}, 0
  local a = i
  while a <= j do
    local b = a + chunk - 1
    if b > j or b < a then
      b = j
    end
    np = np + 1
    if meta then
      pieces[np] = c_concat(list, sep, a, b)
    else
      local ok, r = pcall(c_concat, list, sep, a, b)
      if not ok then
        if r == MEMERR then
          memory_error()
        end
        error(r, 2)
      end
      pieces[np] = r
    end
    if b == j then
      break
    end
    a = b + 1
  end
  return finish_concat(pcall(c_concat, pieces, sep, 1, np))
end

function table.concat(list, sep, i, j)
  if i == nil and j == nil and plain(list) and #list <= CONCAT_FAST then
    return finish_concat(pcall(c_concat, list, sep))
  end
  if type(list) ~= "table" then
    return finish_concat(pcall(c_concat, list, sep, i, j)) -- C's argument error, or table-like
  end
  local meta = getmetatable(list) ~= nil
  local a, b = 1, nil
  if i ~= nil then
    a = to_int(i)
  end
  if j ~= nil then
    b = to_int(j)
  end
  local ts = type(sep)
  if a == nil or (j ~= nil and b == nil) or (sep ~= nil and ts ~= "string" and ts ~= "number") then
    return finish_concat(pcall(c_concat, list, sep, i, j)) -- C raises the argument error
  end
  if b == nil then
    b = #list
  end
  if b < a or (b - a < CONCAT_FAST and not meta) then
    return finish_concat(pcall(c_concat, list, sep, a, b))
  end
  return concat_chunked(list, sep, a, b, meta)
end

-- `a < b` for table.sort without a comparator. Numbers and strings compare here; anything else
-- goes through `<` under pcall so that C's position-less messages ("attempt to compare two table
-- values") stay position-less.
local function raw_lt(a, b)
  return a < b
end

local function default_lt(a, b)
  local ta, tb = type(a), type(b)
  if ta == tb and (ta == "number" or ta == "string") then
    return a < b
  end
  local ok, r = pcall(raw_lt, a, b)
  if ok then
    return r
  end
  if r == MEMERR then
    memory_error()
  end
  if type(r) == "string" then
    r = r:gsub("^safe%-builtins:%d+: ", "", 1)
  end
  error(r, 0)
end

function table.sort(t, comp)
  if plain(t) and #t <= SORT_FAST and (comp == nil or type(comp) == "function") then
    return c_sort(t, comp)
  end
  if type(t) == "table" and (comp == nil or type(comp) == "function") then
    -- Large or with a metatable: a Lua comparator, so the hook runs between comparisons.
    local lt = default_lt
    if comp ~= nil then
      lt = function(a, b)
        return comp(a, b)
      end
    end
    return c_sort(t, lt)
  end
  return finish_sort(pcall(c_sort, t, comp)) -- C's argument errors
end

-- a2[t..] = a1[f..e] in chunks, in C's order (`up`: ascending), on tables without metatables.
local function move_chunks(a1, f, e, t, a2, up)
  if up then
    local i = f
    while i <= e do
      local j = i + MOVE_CHUNK - 1
      if j > e or j < i then
        j = e
      end
      c_move(a1, i, j, t + (i - f), a2)
      if j == e then
        break
      end
      i = j + 1
    end
  else
    local j = e
    while j >= f do
      local i = j - MOVE_CHUNK + 1
      if i < f or i > j then
        i = f
      end
      c_move(a1, i, j, t + (i - f), a2)
      if i == f then
        break
      end
      j = i - 1
    end
  end
end

function table.move(a1, f, e, t, a2)
  local fi, ei, ti = to_int(f), to_int(e), to_int(t)
  local dest = a2
  if dest == nil then
    dest = a1
  end
  if fi == nil or ei == nil or ti == nil or ei < fi or type(a1) ~= "table"
    or type(dest) ~= "table" then
    -- Argument errors, nothing to move, or userdata with metamethods (which run in Lua).
    return finish_move(pcall(c_move, a1, f, e, t, a2))
  end
  if not (fi > 0 or ei < maxinteger + fi) then
    error("bad argument #3 to 'move' (too many elements to move)", 2)
  end
  local n = ei - fi + 1
  if ti > maxinteger - n + 1 then
    error("bad argument #4 to 'move' (destination wrap around)", 2)
  end
  local pa1, pdest = plain(a1), plain(dest)
  if n <= MOVE_CHUNK and pa1 and pdest then
    return c_move(a1, fi, ei, ti, a2)
  end
  local up = ti > ei or ti <= fi or (a2 ~= nil and a1 ~= a2)
  if pa1 and pdest then
    move_chunks(a1, fi, ei, ti, a2, up)
  elseif up then
    for k = 0, n - 1 do
      dest[ti + k] = a1[fi + k]
    end
  else
    for k = n - 1, 0, -1 do
      dest[ti + k] = a1[fi + k]
    end
  end
  return dest
end

function table.insert(t, ...)
  local nargs = select("#", ...)
  if nargs == 1 then
    return c_insert(t, ...) -- append: no shifting
  end
  if nargs == 2 and type(t) == "table" then
    local pos, v = ...
    local p = to_int(pos)
    if p ~= nil then
      if getmetatable(t) == nil then
        local e = #t + 1
        if p >= 1 and p <= e and e - p > SHIFT_FAST then
          move_chunks(t, p, e - 1, p + 1, nil, false)
          t[p] = v
          return
        end
      else
        -- Reads and writes may run metamethods (or walk __index chains): shift in Lua.
        local e = #t + 1
        if p < 1 or p > e then
          error("bad argument #2 to 'insert' (position out of bounds)", 2)
        end
        for i = e, p + 1, -1 do
          t[i] = t[i - 1]
        end
        t[p] = v
        return
      end
    end
  end
  return finish_insert(pcall(c_insert, t, ...))
end

function table.remove(t, pos)
  if type(t) == "table" and pos ~= nil then
    local p = to_int(pos)
    if p ~= nil then
      local meta = getmetatable(t) ~= nil
      local size = #t
      if meta or size - p > SHIFT_FAST then
        if p ~= size and (p < 1 or p > size + 1) then
          error("bad argument #2 to 'remove' (position out of bounds)", 2)
        end
        local v = t[p]
        if meta then
          for i = p, size - 1 do
            t[i] = t[i + 1]
          end
        elseif p < size then
          move_chunks(t, p + 1, size, p, nil, true)
        end
        if p < size then
          p = size
        end
        t[p] = nil
        return v
      end
    end
  end
  return finish_remove(pcall(c_remove, t, pos))
end

function table.unpack(list, i, j)
  if getmetatable(list) == nil and (i == nil or math_type(i) == "integer")
    and (j == nil or math_type(j) == "integer") then
    if type(list) ~= "table" then
      return c_unpack(list, i, j) -- C's errors here carry no position
    end
    local a, b = i or 1, j or #list
    if a > b or (b + 0.0) - a < 999000 then
      return c_unpack(list, i, j)
    end
  end
  -- Reads go through metamethods (`__index` chains walk in C): read them in Lua.
  local a, b = 1, nil
  if i ~= nil then
    a = to_int(i)
    if a == nil then
      return finish_unpack(pcall(c_unpack, {}, i, j)) -- C's argument error
    end
  end
  if j ~= nil then
    b = to_int(j)
    if b == nil then
      return finish_unpack(pcall(c_unpack, {}, a, j))
    end
  else
    b = #list
  end
  if a > b then
    return
  end
  if b - a >= 1000000 then -- beyond LUAI_MAXSTACK: C fails too
    error("too many results to unpack", 2)
  end
  local copy = {}
  for k = 0, b - a do
    copy[k + 1] = list[a + k]
  end
  return c_unpack(copy, 1, b - a + 1)
end

---------------------------------------------------------------------------------------------------
-- load, loadstring, collectgarbage, linear string functions
---------------------------------------------------------------------------------------------------

local LOAD_PIECE = 1 << 16
local sandbox_load = load
local sandbox_collectgarbage = collectgarbage

-- A long string chunk goes to the parser through a reader, 64 KB at a time.
function load(chunk, chunkname, ...)
  if type(chunk) == "string" and #chunk > LOAD_PIECE then
    local pos, n = 1, #chunk
    local source = chunk
    local function reader()
      if pos > n then
        return nil
      end
      local piece = sub(source, pos, pos + LOAD_PIECE - 1)
      pos = pos + LOAD_PIECE
      return piece
    end
    if chunkname == nil then
      chunkname = chunk -- what load(string) names the chunk by default
    end
    return sandbox_load(reader, chunkname, ...)
  end
  return sandbox_load(chunk, chunkname, ...)
end

if rawget(_G, "loadstring") ~= nil then
  function loadstring(s, chunkname)
    return load(s, chunkname)
  end
end

function collectgarbage(opt, ...)
  if opt == nil or opt == "collect" or opt == "step" then
    checkpoint() -- a full cycle can take ~50 ms per million objects
  end
  return sandbox_collectgarbage(opt, ...)
end

local BIG_STRING = 1 << 16

local function linear(cfn, name)
  local finish = finisher(name)
  return function(s)
    if type(s) == "string" then
      if #s > BIG_STRING then
        checkpoint()
      end
      return cfn(s)
    end
    return finish(pcall(cfn, s))
  end
end

string.upper = linear(c_upper, "upper")
string.lower = linear(c_lower, "lower")
string.reverse = linear(c_reverse, "reverse")

-- Calls whose cost grows with their string arguments (utf8.len: ~8 ns a byte; format's %q and
-- %s; pack and unpack with big sizes): a budget check before a call with a big string or a
-- long argument list, so such calls cannot run back to back past the budget. Errors read as
-- the C function's, at the script's position.
local function sized(cfn, name)
  local finish = finisher(name)
  return function(...)
    local n = select("#", ...)
    if n > 8 then
      checkpoint()
    else
      for i = 1, n do
        local v = select(i, ...)
        if type(v) == "string" and #v > BIG_STRING then
          checkpoint()
          break
        end
      end
    end
    return finish(pcall(cfn, ...))
  end
end

-- format's %q of a big string is one slow C call (8 MB of NUL bytes: 3.5 s): quote such a
-- string in 64 KB pieces with budget checks between them, and format it with %s.
local c_format, byte = string.format, string.byte
local QUOTE_PIECE = 1 << 16

-- True when a piece may end after byte i of s: C's %q writes a control character as \ddd only
-- when a digit follows, which the next piece cannot see.
local function clean_cut(s, i)
  local b = byte(s, i)
  local n = byte(s, i + 1)
  return n == nil or n < 48 or n > 57 or (b >= 32 and b ~= 127)
end

local function quote_big(s)
  local parts, count, from, len = {}, 0, 1, #s
  while from <= len do
    local to = from + QUOTE_PIECE - 1
    if to >= len then
      to = len
    else
      while not clean_cut(s, to) do
        to = to + 1
      end
    end
    local q = c_format("%q", sub(s, from, to))
    count = count + 1
    parts[count] = sub(q, 2, -2)
    from = to + 1
    if count % 16 == 0 then
      checkpoint()
    end
  end
  return '"' .. table.concat(parts) .. '"'
end

-- The format with each %q whose argument is a big string turned into %s of the quoted
-- string; nil when there is none.
local function requote(fmt, ...)
  if type(fmt) ~= "string" then
    return nil
  end
  local args, changed, out, last = nil, false, {}, 1
  local i, len, arg = 1, #fmt, 0
  while i <= len do
    if byte(fmt, i) == 37 then -- '%'
      if byte(fmt, i + 1) == 37 then
        i = i + 2
      else
        arg = arg + 1
        local j = i + 1
        local c = byte(fmt, j)
        while c and (c < 65 or (c > 90 and c < 97) or c > 122) do
          j = j + 1
          c = byte(fmt, j)
        end
        if c == 113 and j == i + 1 then -- a plain '%q'
          local v = select(arg, ...)
          if type(v) == "string" and #v > BIG_STRING then
            args = args or { n = select("#", ...), ... }
            args[arg] = quote_big(v)
            out[#out + 1] = sub(fmt, last, i - 1) .. "%s"
            last = j + 1
            changed = true
          end
        end
        i = j + 1
      end
    else
      i = i + 1
    end
  end
  if not changed then
    return nil
  end
  out[#out + 1] = sub(fmt, last)
  return table.concat(out), args
end

local finish_format = finisher("format")
function string.format(fmt, ...)
  local n = select("#", ...)
  local big = n > 8 or (type(fmt) == "string" and #fmt > BIG_STRING)
  if not big then
    for i = 1, n do
      local v = select(i, ...)
      if type(v) == "string" and #v > BIG_STRING then
        big = true
        break
      end
    end
  end
  if big then
    checkpoint()
    local new_fmt, args = requote(fmt, ...)
    if new_fmt then
      return finish_format(pcall(c_format, new_fmt, table.unpack(args, 1, args.n)))
    end
  end
  return finish_format(pcall(c_format, fmt, ...))
end
string.pack = sized(string.pack, "pack")
string.unpack = sized(string.unpack, "unpack")
string.packsize = sized(string.packsize, "packsize")
if rawget(_G, "utf8") then
  utf8.len = sized(utf8.len, "len")
  utf8.codepoint = sized(utf8.codepoint, "codepoint")
  utf8.offset = sized(utf8.offset, "offset")
end

if loaded then
  loaded["moonsocket.safe-builtins"] = true
end
