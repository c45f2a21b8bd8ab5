--[[
safe-patterns.lua: string.find, string.match, string.gmatch and string.gsub that the CPU budget
can stop.

WHY
  The engine stops runaway Lua code with an instruction-count hook. Lua's pattern matcher
  (lstrlib.c) runs inside one C call, where the hook never fires, and it backtracks: on a
  subject of n bytes a pattern with q quantified items can take ~n^(q+1) steps.
  `(("a"):rep(2000) .. "c"):find(".-.-b")` runs for a minute, `("a"):rep(4e4):find(".-b")` for
  half a minute, and the whole server waits. Even a linear search costs ~40 ns a byte on this
  engine, so one `find` over a 100 MB string runs for seconds.

WHAT IT DOES
  It replaces the four functions in the `string` table (which is also the `__index` of the
  string metatable, so `s:find(...)` is covered). Each call decides:
    * the C function, when a worst-case estimate of its work is small (the common case: short
      subjects, or any subject with a pattern whose cost is linear and small);
    * a pure-Lua port of lstrlib's matcher otherwise. It is Lua bytecode, so the hook fires in
      it and the CPU budget stops it like any Lua loop. It reproduces Lua 5.4's results and
      error messages, including the lazy errors C raises only when the matcher reaches a
      malformed item.

THE DECISION
  The pattern is compiled once (cached per pattern string, up to 256 bytes long, in bounded
  tables) into items, and a worst-case cost of C's matcher is derived from them as a
  polynomial in x = (subject length from init) + 1, in nanoseconds of this engine (70 ns per
  call of C's `match`, 10 ns per class test, more for long sets; measured real times are
  0.1-0.5 of the estimates on adversarial subjects). Per item, backwards from the end of the
  pattern: f = cost of an attempt that fails, g = cost of one that succeeds (beyond a credit per
  consumed byte). A quantified item tries up to x alternatives, each with less subject left, so
  it costs the sum over 1..x of what follows (k nested quantifiers: ~x^k/k!), unless
    - what follows always matches (only its first alternative is ever tried: `^(%S+)%s*(.*)$`,
      `%s+`, the leading `%s*` of `^%s*(.-)%s*$`), or
    - what follows must start with a byte the item cannot match (`%w+=`, `[^,]*,`): all
      alternatives but one fail at their first test, and the item costs x, not x times.
  Totals: anchored (`^`) f + g; unanchored find/match: the sum of f over start positions, plus
  g; gsub/gmatch: the sum of f + g + a replacement's cost over start positions; plus a credit per
  byte. A plain find (or one without special characters) costs x * (10 + 2.5 * #pattern).
  The C function is called when the estimate is at most MAX_C_NS (5 % of the CPU budget,
  clamped to [2, 50] ms); above FAST_C_NS (MAX_C_NS / 20) a budget check is forced first, so
  expensive C calls never run back to back unchecked. Patterns the estimate cannot reason
  about (malformed, > 150 recursive items, unfinished captures, invalid replacement strings)
  always take the Lua path, which raises Lua's errors at the same points, so C never raises.
  The first call of a pattern string records, per function, the longest subject for which the
  call needs no budget check; later calls compare the subject's length with it and call C
  directly (one table lookup, one `type`, one comparison).
  The Lua path skips start positions the first item rejects, searching for them with C in
  32 KB windows (as fast as C on sparse matches); dense matches cost ~1-5 µs each.

HOW THE HOST USES IT
  Run once per state, after the sandbox prelude and before any script captures `string.find`:
      engine.run(source, "=safe-patterns", { cpu_budget_ms = 1000 })
  The argument is optional (also `max_c_ns`, `fast_c_ns`: the limits below, in ns). With
  `control = true` the chunk returns a table for tests (never reachable from scripts): `lua`
  (the Lua implementations, C never used), `route` (the path a call takes: "fast", "c-nocheck",
  "c" or "lua"), `estimate` (the estimate of a call, ns) and `limits`.

DIFFERENCES FROM THE C FUNCTIONS
  * Argument errors name the function as `string.find(...)` does ('find', 'gsub'…); a method
    call `s:find({})` numbers the arguments from the subject (#2, not #1), and an absent
    argument reads "got nil", not "got no value".
  * An "invalid replacement value (a table)" raised by C's gsub on the C path carries the
    position of this file instead of the caller's (the traceback still shows the caller).
  * A replacement function called by the Lua path may yield (C's gsub refuses to).
  * An error the Lua path raises in a call the script makes as a tail call
    (`return s:find(p)`) names the position of the script's caller: the tail call removed the
    script's frame (C functions keep it).
  * When the CPU budget runs out inside the Lua path, the message names this file's line
    ("safe-patterns:1213: cpu budget exceeded"); the traceback shows the script's.
]]

local options = ...
if type(options) ~= "table" then
  options = {}
end

local type, tostring, tonumber, error, pcall, getmetatable, rawget, next =
  type, tostring, tonumber, error, pcall, getmetatable, rawget, next
local math_type, tointeger, huge = math.type, math.tointeger, math.huge
local byte, char, sub, concat, move, unpack =
  string.byte, string.char, string.sub, table.concat, table.move, table.unpack
local string = string
local c_find, c_match, c_gmatch, c_gsub, c_rep =
  string.find, string.match, string.gmatch, string.gsub, string.rep

local loaded = rawget(_G, "package") and package.loaded
if loaded and loaded["moonsocket.safe-patterns"] then
  return -- already installed
end

---------------------------------------------------------------------------------------------------
-- Limits
---------------------------------------------------------------------------------------------------

local budget_ms = tonumber(options.cpu_budget_ms) or 1000
-- Longest a single C call may take (estimated, ns): 5 % of the budget, clamped to [2, 50] ms.
-- A budget check runs right before such a call, so it can overrun the budget by that much.
local MAX_C_NS = budget_ms * 1e6 * 0.05
if MAX_C_NS > 50e6 then
  MAX_C_NS = 50e6
elseif MAX_C_NS < 2e6 then
  MAX_C_NS = 2e6
end
if tonumber(options.max_c_ns) then
  MAX_C_NS = tonumber(options.max_c_ns)
end
-- Below this estimate a call needs no forced budget check: MAX_C_NS / 20 (2.5 ms at the default
-- budget). At most ~50 such calls run between two hook checks (the wrapper and a loop around it
-- cost ~20 VM instructions), and real times are about half the estimates.
local FAST_C_NS = tonumber(options.fast_c_ns) or MAX_C_NS / 20
if FAST_C_NS > MAX_C_NS then
  FAST_C_NS = MAX_C_NS
end

-- Cost constants (ns on this engine): a call of C's match(), a class test, the end of a match.
-- REPLACE: what gsub does per match besides matching (add_value, buffer).
local M, TS, TEND, REPLACE = 70, 10, 5, 100

local MAXCCALLS = 200
local MAXCAPTURES = 32
local CAP_UNF, CAP_POS = -1, -2
local MAX_CACHED_PATTERN = 256
local MAX_CACHE_ENTRIES = 256

-- Forces a budget check: the count hook fires every 1000 VM instructions, and each iteration
-- of this loop is one instruction. Costs ~30 µs.
local function checkpoint()
  for _ = 1, 1024 do
  end
end

---------------------------------------------------------------------------------------------------
-- Bounded caches
---------------------------------------------------------------------------------------------------

local function new_cache()
  return { n = 0, t = {} }
end

local function cache_put(c, k, v)
  local t = c.t
  if t[k] == nil then
    if c.n >= MAX_CACHE_ENTRIES then
      t = {}
      c.t = t
      c.n = 0
    end
    c.n = c.n + 1
  end
  t[k] = v
end

---------------------------------------------------------------------------------------------------
-- Character classes: 256-entry tables, byte value → true
---------------------------------------------------------------------------------------------------

local CHARS = {}
for c = 0, 255 do
  CHARS[c] = char(c)
end

local ALL = {}
for c = 0, 255 do
  ALL[c] = true
end

local LITERAL = {}
for c = 0, 255 do
  LITERAL[c] = { [c] = true }
end

local CLASS_LETTERS = {}
for l in ("acdglpsuwxzACDGLPSUWXZ"):gmatch(".") do
  CLASS_LETTERS[byte(l)] = true
end

-- %a, %D…: taken from the C matcher itself, so the locale's ctype agrees by construction.
local class_tables = {}
local function class_table(letter)
  local t = class_tables[letter]
  if t == nil then
    t = {}
    local pat = "^%" .. CHARS[letter]
    for c = 0, 255 do
      if c_find(CHARS[c], pat) then
        t[c] = true
      end
    end
    class_tables[letter] = t
  end
  return t
end

-- match_class(c, cl) as a table: a class letter, or the character itself.
local function escape_table(cl)
  if CLASS_LETTERS[cl] then
    return class_table(cl)
  end
  return LITERAL[cl]
end

local set_cache = new_cache()

-- The set p[i] = '[' … p[ec] = ']' (matchbracketclass), as a table.
local function set_table(p, i, ec)
  local key = sub(p, i, ec)
  local t = set_cache.t[key]
  if t ~= nil then
    return t
  end
  t = {}
  local sig = true
  if byte(p, i + 1) == 94 then -- '^'
    sig = false
    i = i + 1
  end
  i = i + 1
  while i < ec do
    local c = byte(p, i)
    if c == 37 then -- '%'
      i = i + 1
      for b in next, escape_table(byte(p, i)) do
        t[b] = true
      end
    elseif byte(p, i + 1) == 45 and i + 2 < ec then -- range a-z
      for b = c, byte(p, i + 2) do
        t[b] = true
      end
      i = i + 2
    else
      t[c] = true
    end
    i = i + 1
  end
  if not sig then
    local u = {}
    for c = 0, 255 do
      if not t[c] then
        u[c] = true
      end
    end
    t = u
  end
  cache_put(set_cache, key, t)
  return t
end

---------------------------------------------------------------------------------------------------
-- Pattern compilation
---------------------------------------------------------------------------------------------------

local K_SINGLE, K_OPEN, K_POSCAP, K_CLOSE, K_DOLLAR, K_BAL, K_FRONT, K_BREF, K_ERR =
  1, 2, 3, 4, 5, 6, 7, 8, 9
local Q_NONE, Q_OPT, Q_STAR, Q_PLUS, Q_MIN = 0, 1, 2, 3, 4

-- classEnd: index just after the class starting at i, or nil and the error message.
local function class_end(p, plen, i)
  local c = byte(p, i)
  i = i + 1
  if c == 37 then -- '%'
    if i > plen then
      return nil, "malformed pattern (ends with '%')"
    end
    return i + 1
  elseif c == 91 then -- '['
    if byte(p, i) == 94 then
      i = i + 1
    end
    repeat
      if i > plen then
        return nil, "malformed pattern (missing ']')"
      end
      local cc = byte(p, i)
      i = i + 1
      if cc == 37 and i <= plen then
        i = i + 1
      end
    until byte(p, i) == 93
    return i + 1
  end
  return i
end

--[[
Compiles `p` into items, in the order C's match() reads them (which does not depend on the
subject). A malformed item becomes a K_ERR item raised when the matcher reaches it, as C does.
`strip`: a leading '^' is the anchor (find, match, gsub), not a literal (gmatch).
]]
local function compile(p, strip)
  local plen = #p
  local i = 1
  local anchor = false
  if strip and byte(p, 1) == 94 then
    anchor = true
    i = 2
  end
  local kind, cls, q, tc, a1, a2 = {}, {}, {}, {}, {}, {}
  local k = 0
  -- Static validation for the C path: captures, recursion depth, errors.
  local valid = true
  local level, open = 0, {}
  local recursive = 0
  local lead_caps, lead_done, first, first_pat, first_plain = 0, false, nil, nil, false
  while i <= plen do
    k = k + 1
    local c = byte(p, i)
    local b1 = byte(p, i + 1)
    if c == 40 then -- '('
      if b1 == 41 then
        kind[k] = K_POSCAP
        i = i + 2
      else
        kind[k] = K_OPEN
        i = i + 1
      end
      if level >= MAXCAPTURES then
        valid = false
      else
        level = level + 1
        open[level] = kind[k] == K_OPEN
      end
      recursive = recursive + 1
      if not lead_done then
        lead_caps = lead_caps + 1
      end
    elseif c == 41 then -- ')'
      kind[k] = K_CLOSE
      i = i + 1
      local l = level
      while l > 0 and not open[l] do
        l = l - 1
      end
      if l == 0 then
        valid = false
      else
        open[l] = false
      end
      recursive = recursive + 1
      lead_done = true
    elseif c == 36 and i == plen then -- '$' at the end
      kind[k] = K_DOLLAR
      i = i + 1
      lead_done = true
    elseif c == 37 and b1 == 98 then -- %b
      lead_done = true
      if i + 3 > plen then
        kind[k] = K_ERR
        a1[k] = "malformed pattern (missing arguments to '%b')"
        valid = false
        break
      end
      kind[k] = K_BAL
      a1[k] = byte(p, i + 2)
      a2[k] = byte(p, i + 3)
      i = i + 4
    elseif c == 37 and b1 == 102 then -- %f
      lead_done = true
      i = i + 2
      if byte(p, i) ~= 91 then
        kind[k] = K_ERR
        a1[k] = "missing '[' after '%f' in pattern"
        valid = false
        break
      end
      local ep, err = class_end(p, plen, i)
      if ep == nil then
        kind[k] = K_ERR
        a1[k] = err
        valid = false
        break
      end
      kind[k] = K_FRONT
      cls[k] = set_table(p, i, ep - 1)
      tc[k] = TS + 4 * (ep - i)
      i = ep
    elseif c == 37 and b1 ~= nil and b1 >= 48 and b1 <= 57 then -- %0-%9
      lead_done = true
      kind[k] = K_BREF
      local l = b1 - 48
      a1[k] = l
      if l < 1 or l > level or open[l] then
        valid = false
      end
      i = i + 2
    else
      local ep, err = class_end(p, plen, i)
      if ep == nil then
        kind[k] = K_ERR
        a1[k] = err
        valid = false
        break
      end
      kind[k] = K_SINGLE
      local start = i
      local t
      if c == 46 then -- '.'
        t = ALL
        tc[k] = TS
      elseif c == 37 then
        t = escape_table(b1)
        tc[k] = TS
      elseif c == 91 then
        t = set_table(p, i, ep - 1)
        tc[k] = TS + 4 * (ep - i)
      else
        t = LITERAL[c]
        tc[k] = TS
      end
      cls[k] = t
      local qc = byte(p, ep)
      if qc == 63 then
        q[k] = Q_OPT
      elseif qc == 42 then
        q[k] = Q_STAR
      elseif qc == 43 then
        q[k] = Q_PLUS
      elseif qc == 45 then
        q[k] = Q_MIN
      else
        q[k] = Q_NONE
      end
      if q[k] == Q_NONE then
        i = ep
      else
        i = ep + 1
        recursive = recursive + 1
      end
      if not lead_done then
        lead_done = true
        -- A mandatory first item (after captures that cannot overflow): an attempt at a byte it
        -- rejects fails at once in C, without side effects, so the Lua path skips it.
        if (q[k] == Q_NONE or q[k] == Q_PLUS) and lead_caps < MAXCAPTURES and t ~= ALL then
          first = t
          if c == 37 or c == 91 then
            first_pat = sub(p, start, ep - 1) -- %x or [set]: a pattern of its own
          else
            first_pat, first_plain = CHARS[c], true
          end
        end
      end
    end
  end
  for l = 1, level do
    if open[l] then
      valid = false -- "unfinished capture" when a match succeeds
    end
  end
  if recursive > 150 then
    valid = false -- C's "pattern too complex" (200 nested calls) must stay the Lua path's
  end
  return {
    p = p,
    anchor = anchor,
    K = k,
    kind = kind,
    cls = cls,
    q = q,
    t = tc,
    a1 = a1,
    a2 = a2,
    valid = valid,
    ncap = level,
    first = first, -- class of the first item when an attempt can be skipped on it
    first_pat = first_pat, -- that item as a C pattern (plain when `first_plain`)
    first_plain = first_plain,
  }
end

---------------------------------------------------------------------------------------------------
-- Cost estimate (see the header)
---------------------------------------------------------------------------------------------------

-- Polynomials in x as coefficient arrays {c0, c1, ...}.
local function pc(c)
  return { c }
end

local function padd(a, b)
  local r = {}
  local n = #a > #b and #a or #b
  for i = 1, n do
    r[i] = (a[i] or 0) + (b[i] or 0)
  end
  return r
end

local function paddc(a, c)
  local r = move(a, 1, #a, 1, {})
  r[1] = r[1] + c
  return r
end

-- c * x * a
local function pmulx(a, c)
  local r = { 0 }
  for i = 1, #a do
    r[i + 1] = a[i] * c
  end
  return r
end

-- Upper bound of sum_{j=1..x} a(j): each c*x^d becomes c*x^(d+1)/(d+1) + c*x^d. Children of a
-- backtracking item start with less and less of the subject left, so their costs add up like
-- this, not like x * a(x): k nested quantifiers cost ~x^k/k!.
local function pint(a)
  local r = { 0 }
  for d = 0, #a - 1 do
    local c = a[d + 1]
    r[d + 2] = (r[d + 2] or 0) + c / (d + 1)
    r[d + 1] = r[d + 1] + c
  end
  return r
end

local function pscale(a, c)
  local r = {}
  for i = 1, #a do
    r[i] = a[i] * c
  end
  return r
end

local function peval(a, x)
  local v = 0.0 -- floats: integer arithmetic would wrap around
  x = x + 0.0
  for i = #a, 1, -1 do
    v = v * x + a[i]
  end
  return v
end

-- Largest n such that poly(n + 1) <= limit, or -1.
local function nlimit(poly, limit)
  if peval(poly, 1) > limit then
    return -1
  end
  local lo, hi = 0, 0x7fffffff
  if peval(poly, hi + 1) <= limit then
    return hi
  end
  while lo < hi do
    local mid = (lo + hi + 1) // 2
    if peval(poly, mid + 1) <= limit then
      lo = mid
    else
      hi = mid - 1
    end
  end
  return lo
end

local function disjoint(a, b)
  if a == ALL or b == ALL then
    return false
  end
  for c in next, a do
    if b[c] then
      return false
    end
  end
  return true
end

local function union(a, b)
  if a == ALL or b == ALL then
    return ALL
  end
  local r = {}
  for c in next, a do
    r[c] = true
  end
  for c in next, b do
    r[c] = true
  end
  return r
end

local function intersect(a, b)
  if a == ALL then
    return b
  end
  if b == ALL then
    return a
  end
  local r = {}
  for c in next, a do
    if b[c] then
      r[c] = true
    end
  end
  return r
end

local EMPTY = {}

--[[
Per suffix k (items k..K): A = always matches, E = matches when started at the end of the
subject, F = set of bytes a match must start with (a start on another byte fails within TF ns),
f / g = cost polynomials of a failing / succeeding attempt. Returns the three totals.
]]
local function estimate(pat)
  local K = pat.K
  local kind, cls, q, tc = pat.kind, pat.cls, pat.q, pat.t
  local A, E, F, TF, f, g = {}, {}, {}, {}, {}, {}
  local credit = TS -- ns per byte a successful attempt consumes (scans, copies)
  A[K + 1], E[K + 1], F[K + 1], TF[K + 1], f[K + 1], g[K + 1] = true, true, ALL, 0, pc(0), pc(TEND)
  for k = K, 1, -1 do
    local nx = k + 1
    local kd = kind[k]
    if kd == K_DOLLAR then
      A[k], E[k], F[k], TF[k], f[k], g[k] = false, true, EMPTY, TEND, pc(TEND), pc(TEND)
    elseif kd == K_OPEN or kd == K_POSCAP or kd == K_CLOSE then
      A[k], E[k], F[k], TF[k] = A[nx], E[nx], F[nx], M + TF[nx]
      f[k] = paddc(f[nx], M)
      g[k] = paddc(g[nx], M)
    elseif kd == K_BAL then
      A[k], E[k], F[k], TF[k] = false, false, LITERAL[pat.a1[k]], TS
      f[k] = padd(pc(TS), padd(pmulx(pc(1), 8), f[nx]))
      g[k] = paddc(g[nx], TS)
      if credit < 8 + TS then
        credit = 8 + TS
      end
    elseif kd == K_FRONT then
      local t = tc[k]
      A[k], E[k], TF[k] = false, false, 2 * t + TF[nx]
      F[k] = intersect(cls[k], F[nx])
      f[k] = paddc(f[nx], 2 * t)
      g[k] = paddc(g[nx], 2 * t)
    elseif kd == K_BREF then
      A[k], E[k], F[k], TF[k] = false, false, ALL, huge
      f[k] = padd(paddc(pmulx(pc(1), 1), 20), f[nx])
      g[k] = paddc(g[nx], 20)
    else -- K_SINGLE
      local t, C, qq = tc[k], cls[k], q[k]
      if credit < t then
        credit = t
      end
      if qq == Q_NONE then
        A[k], E[k], F[k], TF[k] = false, false, C, t
        f[k] = paddc(f[nx], t)
        g[k] = paddc(g[nx], t)
      else
        if qq == Q_PLUS then
          A[k], E[k], F[k], TF[k] = false, false, C, t
        else
          A[k] = A[nx] or (C == ALL and E[nx] and qq ~= Q_OPT)
          E[k] = E[nx]
          F[k] = union(C, F[nx])
          TF[k] = t + TF[nx]
        end
        local disj = disjoint(C, F[nx])
        local tfn = TF[nx]
        if qq == Q_STAR or qq == Q_PLUS then
          local extra = qq == Q_PLUS and t or 0
          if A[nx] then
            f[k] = pc(extra)
            g[k] = paddc(g[nx], t + M + extra)
          elseif disj then
            f[k] = padd(pmulx(pc(t + M + tfn), 1), paddc(f[nx], t + M + extra))
            g[k] = paddc(g[nx], t + M + extra)
          else
            -- scan, then one call per repetition count, each with less subject left
            f[k] = paddc(padd(pmulx(pc(t), 1), pint(paddc(f[nx], M))), extra)
            g[k] = padd(f[k], g[nx])
          end
        elseif qq == Q_MIN then
          if A[nx] then
            f[k] = pc(0)
            g[k] = paddc(g[nx], t + M)
          elseif disj then
            f[k] = padd(pmulx(pc(t + M + tfn), 1), paddc(f[nx], M))
            g[k] = paddc(g[nx], t + M)
            if credit < t + M + tfn then
              credit = t + M + tfn
            end
          else
            f[k] = padd(pmulx(pc(t), 1), pint(paddc(f[nx], M)))
            g[k] = padd(f[k], g[nx])
          end
        else -- Q_OPT
          if A[nx] then
            f[k] = pc(0)
            g[k] = paddc(g[nx], t + M)
          elseif disj then
            f[k] = paddc(f[nx], t + M + tfn)
            g[k] = paddc(g[nx], t + M)
          else
            f[k] = paddc(pscale(f[nx], 2), t + M)
            g[k] = paddc(padd(f[nx], g[nx]), t + M)
          end
        end
      end
      if A[k] then
        f[k] = pc(0)
      end
    end
  end
  local cr = pmulx(pc(credit + 5), 1)
  local f1, g1 = f[1], g[1]
  local anch = padd(paddc(padd(f1, g1), M), cr)
  local find_u, all_u
  if A[1] then
    find_u = padd(paddc(g1, M), cr)
  else
    -- one attempt per start position, each with less subject left
    find_u = padd(padd(pint(paddc(f1, M)), g1), cr)
  end
  -- gsub and gmatch: any start may fail or match; a match also costs its replacement
  all_u = padd(pint(paddc(padd(f1, g1), M + REPLACE)), cr)
  return anch, find_u, all_u
end

---------------------------------------------------------------------------------------------------
-- Pattern info per function kind
---------------------------------------------------------------------------------------------------

local SPECIALS = "[%^%$%*%+%?%.%(%[%%%-]"

local function plain_cost_poly(m)
  return { M, 10 + 2.5 * m }
end

-- Subject-length limits (fast: no budget check needed; c: C allowed at all) of a plain search.
local function plain_limits(p)
  local pp = plain_cost_poly(#p)
  return nlimit(pp, FAST_C_NS), nlimit(pp, MAX_C_NS)
end

local function nospecials(p)
  return c_find(p, SPECIALS) == nil
end

--[[
Info of pattern `p` for find/match/gsub (strip = true) or gmatch (strip = false): the compiled
pattern and, when C may run it, the subject-length limits of the unanchored find/match search
(find_*) and of gsub/gmatch (all_*); an anchored pattern has the same limits for all.
]]
local info_cache_s, info_cache_g = new_cache(), new_cache()

local function pattern_info(p, strip)
  local cache = strip and info_cache_s or info_cache_g
  local info = cache.t[p]
  if info ~= nil then
    return info
  end
  local pat = compile(p, strip)
  info = { pat = pat, find_fast = -1, find_c = -1, all_fast = -1, all_c = -1 }
  if pat.valid then
    local anch, find_u, all_u = estimate(pat)
    if pat.anchor then
      find_u, all_u = anch, anch
    end
    info.find_fast, info.find_c = nlimit(find_u, FAST_C_NS), nlimit(find_u, MAX_C_NS)
    info.all_fast, info.all_c = nlimit(all_u, FAST_C_NS), nlimit(all_u, MAX_C_NS)
  end
  if #p <= MAX_CACHED_PATTERN then
    cache_put(cache, p, info)
  end
  return info
end

---------------------------------------------------------------------------------------------------
-- The Lua matcher (lstrlib.c's match, item by item)
---------------------------------------------------------------------------------------------------

local SENTINEL = {}
local BLK, MAXBLK = 2048, 64

local function new_state(s, pat)
  local n = #s
  local sb
  if n <= BLK then
    sb = { byte(s, 1, n) }
  else
    sb = {}
  end
  return {
    pat = pat,
    src = s,
    n = n,
    sb = sb,
    nblk = 0,
    K = pat.K,
    kind = pat.kind,
    cls = pat.cls,
    q = pat.q,
    a1 = pat.a1,
    a2 = pat.a2,
    level = 0,
    cinit = {},
    clen = {},
    depth = MAXCCALLS,
    err = nil,
    res = {},
  }
end

-- Byte i (1 <= i <= n) of the subject, loading its block into the byte cache.
local function fill(ms, i)
  local n = ms.n
  local lo = i - (i - 1) % BLK
  local hi = lo + BLK - 1
  if hi > n then
    hi = n
  end
  local sb = ms.sb
  local nb = ms.nblk + 1
  if nb > MAXBLK then
    sb = {}
    ms.sb = sb
    nb = 1
  end
  ms.nblk = nb
  move({ byte(ms.src, lo, hi) }, 1, hi - lo + 1, lo, sb)
  return sb[i]
end

-- The first position from s on (at most n + 1) whose byte is not in class cl.
local function class_run_end(ms, s, n, cl)
  local sb = ms.sb
  while s <= n do
    local c = sb[s]
    if c == nil then
      c = fill(ms, s)
      sb = ms.sb
    end
    if not cl[c] then
      break
    end
    s = s + 1
  end
  return s
end

local MEMERR = "not enough memory"

-- Raises again an error caught by pcall. A memory error must stay one (the host reports
-- LUA_ERRMEM as such), so a real allocation failure is provoked: more than any cap allows.
local function rethrow(e)
  if e == MEMERR then
    local _ = c_rep("x", 0x7ffffffe)
  end
  error(e, 0)
end

-- Raises again what a pcall around the matcher caught: the matcher's own error (ms.err) at
-- the caller of the function calling this one, as C's luaL_error would, anything else as is.
-- Must not be tail-called (the level counts its caller's frame).
local function reraise(ms, e)
  if e == SENTINEL then
    error(ms.err, 3)
  end
  rethrow(e)
end

local function raise(ms, msg)
  ms.err = msg
  error(SENTINEL, 0)
end

local do_match

-- Returns the index after the match of items k.. at s, or nil.
do_match = function(ms, s, k)
  local depth = ms.depth
  if depth == 0 then
    raise(ms, "pattern too complex")
  end
  ms.depth = depth - 1
  local K, kind, cls, qt, n = ms.K, ms.kind, ms.cls, ms.q, ms.n
  local sb = ms.sb
  while k <= K do
    local kd = kind[k]
    if kd == K_SINGLE then
      local cl = cls[k]
      local m = false
      if s <= n then
        local c = sb[s]
        if c == nil then
          c = fill(ms, s)
          sb = ms.sb
        end
        m = cl[c]
      end
      local qq = qt[k]
      if not m then
        if qq == Q_STAR or qq == Q_OPT or qq == Q_MIN then
          k = k + 1
        else
          s = nil
          break
        end
      elseif qq == Q_NONE then
        s = s + 1
        k = k + 1
      elseif k == K and ms.depth > 0 then
        -- Last item: the first alternative (a call that would return at once) matches.
        if qq == Q_OPT then
          s = s + 1
        elseif qq ~= Q_MIN then
          if qq == Q_PLUS then
            s = s + 1
          end
          s = class_run_end(ms, s, n, cl)
        end
        break
      elseif qq == Q_OPT then
        local r = do_match(ms, s + 1, k + 1)
        if r ~= nil then
          s = r
          break
        end
        k = k + 1
      elseif qq == Q_MIN then
        local res = nil
        while true do
          local r = do_match(ms, s, k + 1)
          if r ~= nil then
            res = r
            break
          end
          if s > n then
            break
          end
          sb = ms.sb
          local c = sb[s]
          if c == nil then
            c = fill(ms, s)
          end
          if not cl[c] then
            break
          end
          s = s + 1
        end
        s = res
        break
      else -- Q_STAR, Q_PLUS: max_expand
        if qq == Q_PLUS then
          s = s + 1
        end
        local i = class_run_end(ms, s, n, cl)
        local res = nil
        while i >= s do
          local r = do_match(ms, i, k + 1)
          if r ~= nil then
            res = r
            break
          end
          i = i - 1
        end
        s = res
        break
      end
    elseif kd == K_OPEN or kd == K_POSCAP then
      local level = ms.level
      if level >= MAXCAPTURES then
        raise(ms, "too many captures")
      end
      level = level + 1
      ms.cinit[level] = s
      ms.clen[level] = kd == K_OPEN and CAP_UNF or CAP_POS
      ms.level = level
      local r = do_match(ms, s, k + 1)
      if r == nil then
        ms.level = ms.level - 1
      end
      s = r
      break
    elseif kd == K_CLOSE then
      local clen = ms.clen
      local l = ms.level
      while l > 0 and clen[l] ~= CAP_UNF do
        l = l - 1
      end
      if l == 0 then
        raise(ms, "invalid pattern capture")
      end
      clen[l] = s - ms.cinit[l]
      local r = do_match(ms, s, k + 1)
      if r == nil then
        clen[l] = CAP_UNF
      end
      s = r
      break
    elseif kd == K_DOLLAR then
      if s ~= n + 1 then
        s = nil
      end
      break
    elseif kd == K_BAL then
      if s > n then
        s = nil
        break
      end
      local bx, by = ms.a1[k], ms.a2[k]
      sb = ms.sb
      local c = sb[s] or fill(ms, s)
      if c ~= bx then
        s = nil
        break
      end
      local cont, j, e = 1, s + 1, nil
      while j <= n do
        sb = ms.sb
        c = sb[j] or fill(ms, j)
        if c == by then
          cont = cont - 1
          if cont == 0 then
            e = j + 1
            break
          end
        elseif c == bx then
          cont = cont + 1
        end
        j = j + 1
      end
      if e == nil then
        s = nil
        break
      end
      s = e
      k = k + 1
      sb = ms.sb
    elseif kd == K_FRONT then
      local set = cls[k]
      sb = ms.sb
      local prev, cur = 0, 0
      if s > 1 then
        prev = sb[s - 1] or fill(ms, s - 1)
      end
      if s <= n then
        sb = ms.sb
        cur = sb[s] or fill(ms, s)
      end
      sb = ms.sb
      if not set[prev] and set[cur] then
        k = k + 1
      else
        s = nil
        break
      end
    elseif kd == K_BREF then
      local l = ms.a1[k]
      if l < 1 or l > ms.level or ms.clen[l] == CAP_UNF then
        raise(ms, "invalid capture index %" .. l)
      end
      local len = ms.clen[l]
      if len >= 0 and n + 1 - s >= len then
        local ci = ms.cinit[l]
        if len == 0 or sub(ms.src, s, s + len - 1) == sub(ms.src, ci, ci + len - 1) then
          s = s + len
          k = k + 1
        else
          s = nil
          break
        end
      else
        s = nil
        break
      end
    else -- K_ERR
      raise(ms, ms.a1[k])
    end
  end
  ms.depth = ms.depth + 1
  return s
end

-- Capture i (1-based) of the match [s, e) (get_onecapture): a string or a position.
local function get_capture(ms, i, s, e)
  if i > ms.level then
    if i ~= 1 then
      raise(ms, "invalid capture index %" .. i)
    end
    return sub(ms.src, s, e - 1)
  end
  local l = ms.clen[i]
  local init = ms.cinit[i]
  if l == CAP_UNF then
    raise(ms, "unfinished capture")
  elseif l == CAP_POS then
    return init
  end
  return sub(ms.src, init, init + l - 1)
end

-- push_captures into ms.res; `s` nil for find (captures only). Returns the count.
local function push_captures(ms, s, e, base)
  local nlevels = ms.level
  if nlevels == 0 and s ~= nil then
    nlevels = 1
  end
  local res = ms.res
  for i = 1, nlevels do
    res[base + i] = get_capture(ms, i, s, e)
  end
  return base + nlevels
end

local SKIP_LUA, SKIP_WINDOW = 8, 1 << 15

--[[
First position >= s1 where an attempt can start (its byte is in the first item's class), or
n + 1. A few bytes are tested here (matches are often dense); then C searches for the class,
in windows of 32 KB (~1 ms each at worst) so that the hook runs between them.
]]
local function skip(ms, s1)
  local pat = ms.pat
  local first = pat.first
  local n = ms.n
  local sb = ms.sb
  local stop = s1 + SKIP_LUA
  while s1 <= n and s1 < stop do
    local c = sb[s1]
    if c == nil then
      c = fill(ms, s1)
      sb = ms.sb
    end
    if first[c] then
      return s1
    end
    s1 = s1 + 1
  end
  local fpat, fplain, src = pat.first_pat, pat.first_plain, ms.src
  while s1 <= n do
    local wend = s1 + SKIP_WINDOW - 1
    if wend >= n then
      return c_find(src, fpat, s1, fplain) or n + 1
    end
    local j = c_find(sub(src, s1, wend), fpat, 1, fplain)
    if j ~= nil then
      return s1 + j - 1
    end
    s1 = wend + 1
  end
  return s1
end

-- One unanchored or anchored search from `init` (str_find_aux's loop). Fills ms.res.
local function find_aux(ms, init, anchor, first, find)
  local n = ms.n
  local s1 = init
  while true do
    if first ~= nil and not anchor then
      -- Starts the first item rejects fail at once in C, without side effects: skip them.
      s1 = skip(ms, s1)
      if s1 > n then
        return 0
      end
    end
    ms.level = 0
    local e = do_match(ms, s1, 1)
    if e ~= nil then
      local res = ms.res
      if find then
        res[1] = s1
        res[2] = e - 1
        return push_captures(ms, nil, e, 2)
      end
      return push_captures(ms, s1, e, 0)
    end
    if anchor or s1 > n then
      return 0
    end
    s1 = s1 + 1
  end
end

---------------------------------------------------------------------------------------------------
-- Argument checks (Lua's messages)
---------------------------------------------------------------------------------------------------

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

local function string_arg(v, i, fname)
  local t = type(v)
  if t == "string" then
    return v
  elseif t == "number" then
    return tostring(v)
  end
  return nil, "bad argument #" .. i .. " to '" .. fname .. "' (string expected, got " ..
    typename(v) .. ")"
end

local function int_arg(v, i, fname)
  local mt = math_type(v)
  if mt == "integer" then
    return v
  end
  local x = v
  if mt == nil and type(v) == "string" then
    x = tonumber(v)
    mt = math_type(x)
    if mt == "integer" then
      return x
    end
  end
  if mt == "float" then
    local r = tointeger(x)
    if r ~= nil then
      return r
    end
    return nil, "bad argument #" .. i .. " to '" .. fname .. "' (number has no integer representation)"
  end
  return nil, "bad argument #" .. i .. " to '" .. fname .. "' (number expected, got " ..
    typename(v) .. ")"
end

local function posrelat(pos, len)
  if pos > 0 then
    return pos
  elseif pos == 0 then
    return 1
  elseif pos < -len then
    return 1
  end
  return len + pos + 1
end

---------------------------------------------------------------------------------------------------
-- Lua implementations. Called as tail calls, so level 2 is the script's call.
---------------------------------------------------------------------------------------------------

local PLAIN_WINDOW = 1 << 16

-- lmemfind with bounded C steps: windows searched for the first byte, candidates compared.
local function plain_find(s, p, init)
  local n, m = #s, #p
  if m == 0 then
    return init, init - 1
  end
  local last = n - m + 1
  if init > last then
    return nil
  end
  local first = sub(p, 1, 1)
  local pos = init
  while pos <= last do
    local wend = pos + PLAIN_WINDOW - 1
    if wend > last then
      wend = last
    end
    local window = sub(s, pos, wend)
    local j = 1
    while true do
      j = c_find(window, first, j, true)
      if j == nil then
        break
      end
      local st = pos + j - 1
      if m == 1 or sub(s, st, st + m - 1) == p then
        return st, st + m - 1
      end
      j = j + 1
    end
    pos = wend + 1
  end
  return nil
end

local function lua_find_aux(s, p, init, plain, find)
  local fname = find and "find" or "match"
  local err
  s, err = string_arg(s, 1, fname)
  if s == nil then
    error(err, 2)
  end
  p, err = string_arg(p, 2, fname)
  if p == nil then
    error(err, 2)
  end
  local ls = #s
  if init == nil then
    init = 1
  else
    init, err = int_arg(init, 3, fname)
    if init == nil then
      error(err, 2)
    end
    init = posrelat(init, ls)
  end
  if init > ls + 1 then
    return nil
  end
  if find and (plain or c_find(p, SPECIALS) == nil) then
    return plain_find(s, p, init)
  end
  local pat = pattern_info(p, true).pat
  local ms = new_state(s, pat)
  local ok, cnt = pcall(find_aux, ms, init, pat.anchor, pat.first, find)
  if not ok then
    reraise(ms, cnt)
  end
  if cnt == 0 then
    return nil
  end
  return unpack(ms.res, 1, cnt)
end

local function lua_find(s, p, init, plain)
  return lua_find_aux(s, p, init, plain, true)
end

local function lua_match(s, p, init)
  return lua_find_aux(s, p, init, nil, false)
end

-- One gmatch step from src: returns count of captures in ms.res and the new position, or 0.
local function gmatch_step(ms, src, lastmatch, first)
  local n = ms.n
  while src <= n + 1 do
    if first ~= nil then
      src = skip(ms, src)
      if src > n then
        return 0
      end
    end
    ms.level = 0
    local e = do_match(ms, src, 1)
    if e ~= nil and e ~= lastmatch then
      return push_captures(ms, src, e, 0), e
    end
    src = src + 1
  end
  return 0
end

local function lua_gmatch(s, p, init)
  local err
  s, err = string_arg(s, 1, "gmatch")
  if s == nil then
    error(err, 2)
  end
  p, err = string_arg(p, 2, "gmatch")
  if p == nil then
    error(err, 2)
  end
  local ls = #s
  if init == nil then
    init = 1
  else
    init, err = int_arg(init, 3, "gmatch")
    if init == nil then
      error(err, 2)
    end
    init = posrelat(init, ls)
  end
  if init > ls + 1 then
    init = ls + 2 -- C: src = s + ls + 1, past the end: nothing is found
  end
  local pat = pattern_info(p, false).pat
  local first = pat.first
  local ms = new_state(s, pat)
  local src, lastmatch = init, nil
  return function()
    local ok, cnt, e = pcall(gmatch_step, ms, src, lastmatch, first)
    if not ok then
      reraise(ms, cnt)
    end
    if cnt == 0 then
      return
    end
    src, lastmatch = e, e
    return unpack(ms.res, 1, cnt)
  end
end

-- A replacement string as a list: strings (literal text), numbers (capture 0-9) and `false`
-- (a '%' C rejects), in order, so errors come at the same point as in C's add_s.
local function parse_repl(repl)
  local ops, nops = {}, 0
  local i, rl = 1, #repl
  while true do
    local j = c_find(repl, "%", i, true)
    if j == nil then
      break
    end
    if j > i then
      nops = nops + 1
      ops[nops] = sub(repl, i, j - 1)
    end
    local c = byte(repl, j + 1)
    nops = nops + 1
    if c == 37 then
      ops[nops] = "%"
    elseif c ~= nil and c >= 48 and c <= 57 then
      ops[nops] = c - 48
    else
      ops[nops] = false
      break -- raised when reached; what follows is never used
    end
    i = j + 2
  end
  if i <= rl and (nops == 0 or ops[nops] ~= false) then
    nops = nops + 1
    ops[nops] = sub(repl, i, rl)
  end
  ops.n = nops
  return ops
end

-- Next match for gsub from src (C's loop body), skipping starts the first item rejects.
-- Returns the match start and end + 1, or nil and the position where the subject ran out.
local function gsub_next(ms, src, lastmatch, anchor, first)
  local n = ms.n
  while true do
    if first ~= nil and not anchor then
      src = skip(ms, src)
      if src > n then
        return nil, src
      end
    end
    ms.level = 0
    local e = do_match(ms, src, 1)
    if e ~= nil and e ~= lastmatch then
      return src, e
    end
    if anchor or src > n then
      return nil, src
    end
    src = src + 1
  end
end

-- gsub with a replacement string (no user code runs): the whole loop, under one pcall.
local function gsub_string(ms, ops, max_s, anchor, first, out)
  local s = ms.src
  local nops = ops.n
  local src, lastmatch, count, copied, nout = 1, nil, 0, 1, 0
  while count < max_s do
    local st, e = gsub_next(ms, src, lastmatch, anchor, first)
    if st == nil then
      break
    end
    count = count + 1
    if st > copied then
      nout = nout + 1
      out[nout] = sub(s, copied, st - 1)
    end
    for i = 1, nops do
      local op = ops[i]
      local t = type(op)
      nout = nout + 1
      if t == "string" then
        out[nout] = op
      elseif op == 0 then
        out[nout] = sub(s, st, e - 1)
      elseif op then
        out[nout] = tostring(get_capture(ms, op, st, e))
      else
        raise(ms, "invalid use of '%' in replacement string")
      end
    end
    src, lastmatch, copied = e, e, e
    if anchor then
      break
    end
  end
  out.n = nout
  return count, copied
end

-- What a replacement function (all captures) or table (the first) gets, in ms.res.
local function repl_args(ms, s, e, all)
  if all then
    return push_captures(ms, s, e, 0)
  end
  ms.res[1] = get_capture(ms, 1, s, e)
  return 1
end

local function lua_gsub(s, p, repl, max_s)
  local orig, err = s, nil
  s, err = string_arg(s, 1, "gsub")
  if s == nil then
    error(err, 2)
  end
  p, err = string_arg(p, 2, "gsub")
  if p == nil then
    error(err, 2)
  end
  local tr = type(repl)
  local ls = #s
  if max_s == nil then
    max_s = ls + 1
  else
    max_s, err = int_arg(max_s, 4, "gsub")
    if max_s == nil then
      error(err, 2)
    end
  end
  if tr == "number" then
    repl = tostring(repl)
    tr = "string"
  elseif tr ~= "string" and tr ~= "function" and tr ~= "table" then
    error("bad argument #3 to 'gsub' (string/function/table expected, got " .. typename(repl) ..
      ")", 2)
  end
  local pat = pattern_info(p, true).pat
  local anchor, first = pat.anchor, pat.first
  local ms = new_state(s, pat)
  local out = {}
  if tr == "string" then
    local ok, count, copied = pcall(gsub_string, ms, parse_repl(repl), max_s, anchor, first, out)
    if not ok then
      reraise(ms, count)
    end
    if count == 0 then
      return orig, 0
    end
    local nout = out.n
    if copied <= ls then
      nout = nout + 1
      out[nout] = sub(s, copied, ls)
    end
    return concat(out, "", 1, nout), count
  end
  local nout = 0
  local src, lastmatch, count, changed = 1, nil, 0, false
  local copied = 1 -- first byte of s not yet in `out`
  while count < max_s do
    local ok, st, e = pcall(gsub_next, ms, src, lastmatch, anchor, first)
    if not ok then
      reraise(ms, st)
    end
    if st == nil then
      break
    end
    count = count + 1
    if st > copied then
      nout = nout + 1
      out[nout] = sub(s, copied, st - 1)
    end
    local cnt
    ok, cnt = pcall(repl_args, ms, st, e, tr == "function")
    if not ok then
      reraise(ms, cnt)
    end
    local v
    if tr == "function" then
      v = repl(unpack(ms.res, 1, cnt))
    else
      v = repl[ms.res[1]]
    end
    nout = nout + 1
    if not v then
      out[nout] = sub(s, st, e - 1)
    else
      local tv = type(v)
      if tv == "string" then
        out[nout] = v
      elseif tv == "number" then
        out[nout] = tostring(v)
      else
        error("invalid replacement value (a " .. typename(v) .. ")", 2)
      end
      changed = true
    end
    src, lastmatch, copied = e, e, e
    if anchor then
      break
    end
  end
  if not changed then
    return orig, count
  end
  if copied <= ls then
    nout = nout + 1
    out[nout] = sub(s, copied, ls)
  end
  return concat(out, "", 1, nout), count
end

---------------------------------------------------------------------------------------------------
-- Routing
---------------------------------------------------------------------------------------------------

-- Fast-path limits per pattern string: longest subject C runs without a budget check.
local FIND, PLAIN, MATCH, GMATCH, GSUB = {}, {}, {}, {}, {}
local fast_count = 0
local GSUBCAP = {} -- pattern → highest capture index a replacement string may use
local REPL = new_cache() -- replacement string → highest capture index it uses (99: invalid)

local function remember(tbl, p, n, cap)
  if #p > MAX_CACHED_PATTERN then
    return
  end
  if fast_count >= MAX_CACHE_ENTRIES * 4 then
    FIND, PLAIN, MATCH, GMATCH, GSUB, GSUBCAP = {}, {}, {}, {}, {}, {}
    fast_count = 0
  end
  fast_count = fast_count + 1
  if cap ~= nil then
    GSUBCAP[p] = cap
  end
  tbl[p] = n
end

local function repl_max(repl)
  local v = REPL.t[repl]
  if v ~= nil then
    return v
  end
  v = 0
  local i = c_find(repl, "%", 1, true)
  while i ~= nil do
    local c = byte(repl, i + 1)
    if c ~= nil and c >= 48 and c <= 57 then
      if c - 48 > v then
        v = c - 48
      end
    elseif c ~= 37 then
      v = 99
      break
    end
    i = c_find(repl, "%", i + 2, true)
  end
  if #repl <= MAX_CACHED_PATTERN then
    cache_put(REPL, repl, v)
  end
  return v
end

-- "c" (with a forced budget check when `est` is past the fast limit) or "lua" for a subject
-- of n bytes against limits (fast, c). Returns the route and whether to check first.
local function decide(n, fast, climit)
  if n <= fast then
    return "c", false
  elseif n <= climit then
    return "c", true
  end
  return "lua", false
end

local function plan_find(s, p, init, plain, find)
  if type(s) ~= "string" or type(p) ~= "string" then
    return "lua"
  end
  local ls = #s
  local i = 1
  if init ~= nil then
    i = math_type(init) == "integer" and posrelat(init, ls) or nil
    if i == nil then
      return "lua"
    end
  end
  if i > ls + 1 then
    return "c", false
  end
  local n = ls - i + 1
  if find and (plain or nospecials(p)) then
    local fast, climit = plain_limits(p)
    remember(plain and PLAIN or FIND, p, fast)
    return decide(n, fast, climit)
  end
  local info = pattern_info(p, true)
  remember(find and FIND or MATCH, p, info.find_fast)
  return decide(n, info.find_fast, info.find_c)
end

local function plan_gmatch(s, p, init)
  if type(s) ~= "string" or type(p) ~= "string" then
    return "lua"
  end
  local ls = #s
  local i = 1
  if init ~= nil then
    i = math_type(init) == "integer" and posrelat(init, ls) or nil
    if i == nil then
      return "lua"
    end
  end
  local n = ls - i + 1
  if n < 0 then
    n = 0
  end
  local info = pattern_info(p, false)
  remember(GMATCH, p, info.all_fast)
  return decide(n, info.all_fast, info.all_c)
end

local function plan_gsub(s, p, repl, max_s)
  if type(s) ~= "string" or type(p) ~= "string" then
    return "lua"
  end
  if max_s ~= nil and math_type(max_s) ~= "integer" then
    return "lua"
  end
  local tr = type(repl)
  local info = pattern_info(p, true)
  local pat = info.pat
  local cap = pat.ncap > 0 and pat.ncap or 1
  if tr == "string" then
    if repl_max(repl) > cap then
      return "lua"
    end
  elseif tr ~= "number" and tr ~= "function" and tr ~= "table" then
    return "lua"
  end
  remember(GSUB, p, info.all_fast, cap)
  return decide(#s, info.all_fast, info.all_c)
end

-- A table with a metatable goes to C through a function, so __index chains run under the hook.
local function table_repl(repl)
  if getmetatable(repl) == nil then
    return repl
  end
  return function(k)
    return repl[k]
  end
end

local function find_general(s, p, init, plain)
  local route, check = plan_find(s, p, init, plain, true)
  if route == "c" then
    if check then
      checkpoint()
    end
    return c_find(s, p, init, plain)
  end
  return lua_find(s, p, init, plain)
end

local function match_general(s, p, init)
  local route, check = plan_find(s, p, init, nil, false)
  if route == "c" then
    if check then
      checkpoint()
    end
    return c_match(s, p, init)
  end
  return lua_match(s, p, init)
end

local function gmatch_general(s, p, init)
  local route, check = plan_gmatch(s, p, init)
  if route == "c" then
    if check then
      checkpoint()
    end
    return c_gmatch(s, p, init)
  end
  return lua_gmatch(s, p, init)
end

local function gsub_general(s, p, repl, max_s)
  local route, check = plan_gsub(s, p, repl, max_s)
  if route == "c" then
    if check then
      checkpoint()
    end
    if type(repl) == "table" then
      repl = table_repl(repl)
    end
    return c_gsub(s, p, repl, max_s)
  end
  return lua_gsub(s, p, repl, max_s)
end

---------------------------------------------------------------------------------------------------
-- The replacements
---------------------------------------------------------------------------------------------------

function string.find(s, p, init, plain)
  local fast
  if plain then
    fast = PLAIN[p]
  else
    fast = FIND[p]
  end
  if fast ~= nil and type(s) == "string" and #s <= fast
    and (init == nil or math_type(init) == "integer") then
    return c_find(s, p, init, plain)
  end
  return find_general(s, p, init, plain)
end

function string.match(s, p, init)
  local fast = MATCH[p]
  if fast ~= nil and type(s) == "string" and #s <= fast
    and (init == nil or math_type(init) == "integer") then
    return c_match(s, p, init)
  end
  return match_general(s, p, init)
end

function string.gmatch(s, p, init)
  local fast = GMATCH[p]
  if fast ~= nil and type(s) == "string" and #s <= fast
    and (init == nil or math_type(init) == "integer") then
    return c_gmatch(s, p, init)
  end
  return gmatch_general(s, p, init)
end

function string.gsub(s, p, repl, max_s)
  local fast = GSUB[p]
  if fast ~= nil and type(s) == "string" and #s <= fast
    and (max_s == nil or math_type(max_s) == "integer") then
    local tr = type(repl)
    if tr == "string" then
      local v = REPL.t[repl]
      if v ~= nil and v <= GSUBCAP[p] then
        return c_gsub(s, p, repl, max_s)
      end
    elseif tr == "function" or tr == "number" or (tr == "table" and getmetatable(repl) == nil) then
      return c_gsub(s, p, repl, max_s)
    end
  end
  return gsub_general(s, p, repl, max_s)
end

---------------------------------------------------------------------------------------------------
-- Control table (host and tests only)
---------------------------------------------------------------------------------------------------

local control = {
  lua = { find = lua_find, match = lua_match, gmatch = lua_gmatch, gsub = lua_gsub },
  limits = { max_c_ns = MAX_C_NS, fast_c_ns = FAST_C_NS },
}

-- Which path a call takes: "fast" (C, no check), "c" (C after a budget check) or "lua".
function control.route(fname, s, p, a3, a4)
  local fast, route, check
  if fname == "find" then
    fast = (a4 and PLAIN or FIND)[p]
    if fast ~= nil and type(s) == "string" and #s <= fast
      and (a3 == nil or math_type(a3) == "integer") then
      return "fast"
    end
    route, check = plan_find(s, p, a3, a4, true)
  elseif fname == "match" then
    fast = MATCH[p]
    if fast ~= nil and type(s) == "string" and #s <= fast
      and (a3 == nil or math_type(a3) == "integer") then
      return "fast"
    end
    route, check = plan_find(s, p, a3, nil, false)
  elseif fname == "gmatch" then
    fast = GMATCH[p]
    if fast ~= nil and type(s) == "string" and #s <= fast
      and (a3 == nil or math_type(a3) == "integer") then
      return "fast"
    end
    route, check = plan_gmatch(s, p, a3)
  else
    fast = GSUB[p]
    local tr = type(a3)
    if fast ~= nil and type(s) == "string" and #s <= fast
      and (a4 == nil or math_type(a4) == "integer") then
      if (tr == "string" and REPL.t[a3] ~= nil and REPL.t[a3] <= GSUBCAP[p])
        or tr == "function" or tr == "number" or (tr == "table" and getmetatable(a3) == nil) then
        return "fast"
      end
    end
    route, check = plan_gsub(s, p, a3, a4)
  end
  if route == "c" and not check then
    return "c-nocheck"
  end
  return route
end

-- Worst-case estimate (ns) of C on n bytes, per function, or nil when C may not run it.
function control.estimate(fname, p, n)
  if fname == "find" and nospecials(p) then
    return peval(plain_cost_poly(#p), n + 1)
  end
  local info = pattern_info(p, fname ~= "gmatch")
  if not info.pat.valid then
    return nil
  end
  local anch, find_u, all_u = estimate(info.pat)
  if info.pat.anchor then
    return peval(anch, n + 1)
  elseif fname == "find" or fname == "match" then
    return peval(find_u, n + 1)
  end
  return peval(all_u, n + 1)
end

if loaded then
  loaded["moonsocket.safe-patterns"] = true
end

if options.control then
  return control
end
