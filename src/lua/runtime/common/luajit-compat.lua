--[[
luajit-compat.lua: the LuaJIT habits OpenResty scripts rely on, on Lua 5.4.

HOW THE HOST USES IT
  Run this chunk once in every Lua state, after the sandbox is in place and before any script:

      engine.run(readFileSync("src/lua/runtime/luajit-compat.lua"), "@luajit-compat.lua");

  It returns nothing. It needs no host function and is idempotent (a second run changes nothing).
  It sets:
    * global `bit` (as LuaJIT does) and the module "bit": `require "bit"` returns the same table;
    * `table.new` and the module "table.new" (`require "table.new"` returns the function, so the
      OpenResty idiom `local ok, new_tab = pcall(require, "table.new")` works);
    * `table.clear` and the module "table.clear";
    * globals `unpack` (= table.unpack) and `loadstring` (text chunks only), when absent;
    * Lua 5.1 library functions LuaJIT keeps and Lua 5.4 dropped, when absent: `math.pow`,
      `math.ldexp`, `math.frexp`, `math.log10`, `math.cosh`, `math.sinh`, `math.tanh`,
      `math.atan2`, `table.getn`, `table.maxn`, `table.foreach`, `table.foreachi`.
  The modules are registered in both `package.loaded` (as LuaJIT has them from the start) and
  `package.preload` (so they come back after `package.loaded[name] = nil`). Without a `package`
  table the globals are still set and the host has to register the three modules itself.

bit: LuaJIT's BitOp semantics. Every argument goes through `bit.tobit` (numbers, or strings
  that convert to numbers); results are signed 32-bit integers (a Lua 5.4 integer in
  [-2^31, 2^31 - 1]). Non-integral arguments are rounded to nearest, ties to even, as LuaJIT's
  FPU conversion does; infinities and NaN become 0; from 2^51 on (where LuaJIT's result is
  implementation-defined) the integral part is taken modulo 2^32.
  Shift and rotate counts use their lower 5 bits. `bit.tohex(x [, n])` gives |n| hex digits
  (default 8, at most 8: LuaJIT 2.1 allows up to 16 digits of a 64-bit value), upper case when n
  is negative.

NOT SUPPORTED (LuaJIT-only, cannot be provided on Lua 5.4 or in the sandbox):
  * `ffi` (`require "ffi"` fails), and the 64-bit cdata integers bit operations accept in LuaJIT;
  * `setfenv`, `getfenv`, `module` (function environments do not exist in 5.4; use `_ENV`);
  * `jit` and its submodules: the global `jit` is left absent, so `if jit then` tests take their
    non-LuaJIT branch;
  * `newproxy`;
  * `table.new` preallocation: it returns an empty table (same behaviour, no preallocation).
  Differences of the language itself remain: integer division and float formatting follow Lua
  5.4 (`tostring(4 / 2)` is "2.0"; `string.format("%d", 2.5)` raises an error).
]]

local type, tonumber, tostring, error, select, next, rawset, rawget, load =
  type, tonumber, tostring, error, select, next, rawset, rawget, load
local math_type, floor, huge, fmod, tointeger = math.type, math.floor, math.huge, math.fmod,
  math.tointeger
local sub, concat = string.sub, table.concat

---------------------------------------------------------------------------------------------------
-- bit
---------------------------------------------------------------------------------------------------

local bit = rawget(_G, "bit")

if type(bit) ~= "table" then
  local TWO32 = 0x100000000

  -- Argument `i` of function `fname`, converted to a signed 32-bit integer. `level` is 1 when
  -- called by the bit function itself (errors point at that function's caller).
  local function tobit32(x, i, fname, level)
    local tx = type(x)
    if tx == "string" then
      local n = tonumber(x)
      if n == nil then
        error("bad argument #" .. i .. " to '" .. fname .. "' (number expected, got string)",
          (level or 1) + 2)
      end
      x = n
    elseif tx ~= "number" then
      error("bad argument #" .. i .. " to '" .. fname .. "' (number expected, got " .. tx .. ")",
        (level or 1) + 2)
    end
    if math_type(x) == "float" then
      if x ~= x or x == huge or x == -huge then
        return 0
      end
      if x > -0x1p51 and x < 0x1p51 then
        -- LuaJIT's conversion: adding 1.5 * 2^52 rounds to an integer (nearest, ties to even).
        x = (x + 0x1.8p52) - 0x1.8p52
      else
        x = fmod(floor(x), TWO32)
      end
      x = tointeger(x)
    end
    x = x & 0xFFFFFFFF
    if x >= 0x80000000 then
      x = x - TWO32
    end
    return x
  end

  local function norm(x)
    x = x & 0xFFFFFFFF
    if x >= 0x80000000 then
      return x - TWO32
    end
    return x
  end

  -- Folds the arguments of a variadic bit function with `op` (at least one argument).
  local function fold(fname, op, ...)
    local n = select("#", ...)
    if n == 0 then
      error("bad argument #1 to '" .. fname .. "' (number expected, got no value)", 3)
    end
    local acc = tobit32((...), 1, fname, 2)
    for i = 2, n do
      acc = op(acc, tobit32((select(i, ...)), i, fname, 2))
    end
    return acc
  end

  bit = {}

  function bit.tobit(x)
    local v = tobit32(x, 1, "tobit") -- not a tail call: errors must point at our caller
    return v
  end

  function bit.bnot(x)
    return norm(~tobit32(x, 1, "bnot"))
  end

  local function band2(a, b) return a & b end
  local function bor2(a, b) return a | b end
  local function bxor2(a, b) return a ~ b end

  function bit.band(...)
    return norm(fold("band", band2, ...))
  end

  function bit.bor(...)
    return norm(fold("bor", bor2, ...))
  end

  function bit.bxor(...)
    return norm(fold("bxor", bxor2, ...))
  end

  function bit.lshift(x, n)
    local v, s = tobit32(x, 1, "lshift"), tobit32(n, 2, "lshift") & 31
    return norm(v << s)
  end

  function bit.rshift(x, n)
    local v, s = tobit32(x, 1, "rshift"), tobit32(n, 2, "rshift") & 31
    return norm((v & 0xFFFFFFFF) >> s)
  end

  function bit.arshift(x, n)
    local v, s = tobit32(x, 1, "arshift"), tobit32(n, 2, "arshift") & 31
    -- v is sign-extended to 64 bits, so a logical shift keeps copies of the sign in bit 31 down.
    return norm(v >> s)
  end

  function bit.rol(x, n)
    local v, s = tobit32(x, 1, "rol") & 0xFFFFFFFF, tobit32(n, 2, "rol") & 31
    return norm((v << s) | (v >> (32 - s)))
  end

  function bit.ror(x, n)
    local v, s = tobit32(x, 1, "ror") & 0xFFFFFFFF, tobit32(n, 2, "ror") & 31
    return norm((v >> s) | (v << (32 - s)))
  end

  function bit.bswap(x)
    local v = tobit32(x, 1, "bswap") & 0xFFFFFFFF
    return norm(((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | (v >> 24))
  end

  local LOWER, UPPER = "0123456789abcdef", "0123456789ABCDEF"

  function bit.tohex(x, n)
    local v = tobit32(x, 1, "tohex") & 0xFFFFFFFF
    local digits = LOWER
    if n == nil then
      n = 8
    else
      n = tobit32(n, 2, "tohex")
      if n < 0 then
        n = -n
        digits = UPPER
      end
      if n > 8 then
        n = 8
      end
    end
    local out = {}
    for i = n, 1, -1 do
      local d = (v & 15) + 1
      out[i] = sub(digits, d, d)
      v = v >> 4
    end
    return concat(out, "", 1, n)
  end

  _G.bit = bit
end

---------------------------------------------------------------------------------------------------
-- table.new, table.clear
---------------------------------------------------------------------------------------------------

local function check_count(x, i, fname)
  local n = x
  if type(x) == "string" then n = tonumber(x) end
  if type(n) ~= "number" then
    error("bad argument #" .. i .. " to '" .. fname .. "' (number expected, got " .. type(x) .. ")",
      3)
  end
end

if table.new == nil then
  -- LuaJIT preallocates; Lua code cannot, so this only checks its arguments.
  function table.new(narray, nhash)
    check_count(narray, 1, "new")
    check_count(nhash, 2, "new")
    return {}
  end
end

if table.clear == nil then
  function table.clear(t)
    if type(t) ~= "table" then
      error("bad argument #1 to 'clear' (table expected, got " .. type(t) .. ")", 2)
    end
    -- Raw, as LuaJIT's: assigning nil to present fields while traversing is allowed.
    for k in next, t do
      rawset(t, k, nil)
    end
  end
end

---------------------------------------------------------------------------------------------------
-- Lua 5.1 globals and library functions LuaJIT keeps
---------------------------------------------------------------------------------------------------

if rawget(_G, "unpack") == nil then
  _G.unpack = table.unpack
end

if rawget(_G, "loadstring") == nil and load ~= nil then
  function _G.loadstring(s, chunkname)
    if type(s) == "number" then
      s = tostring(s)
    elseif type(s) ~= "string" then
      error("bad argument #1 to 'loadstring' (string expected, got " .. type(s) .. ")", 2)
    end
    return load(s, chunkname, "t")
  end
end

if math.pow == nil then
  function math.pow(x, y)
    return x ^ y
  end
end

if math.ldexp == nil then
  function math.ldexp(m, e)
    e = math.tointeger(e) or floor(e)
    -- In two steps so that a large exponent on a small mantissa does not overflow early.
    local half = e // 2
    return m * 2.0 ^ half * 2.0 ^ (e - half)
  end
end

if math.frexp == nil then
  function math.frexp(x)
    x = x + 0.0
    if x == 0 or x ~= x or x == huge or x == -huge then
      return x, 0
    end
    local e = 0
    local a = x < 0 and -x or x
    if a < 0x1p-1000 then
      -- Bring subnormal and tiny numbers into range first.
      a = a * 0x1p64
      e = -64
    end
    local k = floor(math.log(a, 2)) + 1
    local m = a / 2.0 ^ k
    -- log() may be off by one near powers of two.
    if m >= 1 then
      m = m / 2
      k = k + 1
    elseif m < 0.5 then
      m = m * 2
      k = k - 1
    end
    return x < 0 and -m or m, e + k
  end
end

if math.log10 == nil then
  function math.log10(x)
    return math.log(x, 10)
  end
end

if math.cosh == nil then
  function math.cosh(x)
    return (math.exp(x) + math.exp(-x)) / 2
  end
end

if math.sinh == nil then
  function math.sinh(x)
    return (math.exp(x) - math.exp(-x)) / 2
  end
end

if math.tanh == nil then
  function math.tanh(x)
    if x > 20 then return 1.0 end
    if x < -20 then return -1.0 end
    local a, b = math.exp(x), math.exp(-x)
    return (a - b) / (a + b)
  end
end

if math.atan2 == nil then
  function math.atan2(y, x)
    return math.atan(y, x)
  end
end

if table.getn == nil then
  function table.getn(t)
    return #t
  end
end

if table.maxn == nil then
  function table.maxn(t)
    local max = 0
    for k in next, t do
      if type(k) == "number" and k > max then
        max = k
      end
    end
    return max
  end
end

if table.foreach == nil then
  function table.foreach(t, f)
    for k, v in next, t do
      local r = f(k, v)
      if r ~= nil then return r end
    end
  end
end

if table.foreachi == nil then
  function table.foreachi(t, f)
    for i = 1, #t do
      local r = f(i, t[i])
      if r ~= nil then return r end
    end
  end
end

---------------------------------------------------------------------------------------------------
-- Modules
---------------------------------------------------------------------------------------------------

local package = rawget(_G, "package")
if type(package) == "table" then
  local modules = { bit = bit, ["table.new"] = table.new, ["table.clear"] = table.clear }
  for name, value in next, modules do
    if type(package.loaded) == "table" and package.loaded[name] == nil then
      package.loaded[name] = value
    end
    if type(package.preload) == "table" and package.preload[name] == nil then
      package.preload[name] = function()
        return value
      end
    end
  end
end
