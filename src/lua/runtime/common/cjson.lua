--[[
cjson.lua: lua-cjson's API and behaviour (OpenResty's fork, 2.1.0.x), in plain Lua 5.4.

Written from lua-cjson's documentation and observable behaviour (no code copied). Output, error
strings and configuration functions follow lua-cjson, so scripts written for OpenResty keep
working: `encode`, `decode`, `null`, `empty_array`, `array_mt`, `empty_array_mt`, `new`,
`encode_empty_table_as_object`, `decode_array_with_array_mt`, `encode_escape_forward_slash`,
`encode_skip_unsupported_value_types`, `encode_indent`, `encode_sparse_array`,
`encode_max_depth`, `decode_max_depth`, `encode_number_precision`, `encode_keep_buffer`,
`encode_invalid_numbers`, `decode_invalid_numbers`, `_NAME`, `_VERSION`.

HOW THE HOST LOADS IT
  The chunk returns the `cjson` module, which has one field lua-cjson lacks, `safe()`: it makes
  a new `cjson.safe` instance. So:

      engine.preload("cjson", cjsonSource, "@cjson.lua");
      engine.preload("cjson.safe", "return require('cjson').safe()", "=cjson.safe");

  Alternatively the same source can be preloaded under both names: run by `require` as the
  loader of "cjson.safe" (its first vararg is that name), the chunk returns the safe variant.
  OpenResty's `ngx.null` is the same value as `cjson.null`; a host providing `ngx` sets
  `ngx.null = require("cjson").null`.

SHARED CONSTANTS
  `null`, `empty_array`, `array_mt` and `empty_array_mt` are the same values in every instance
  (`cjson`, `cjson.safe`, every `new()`), as in lua-cjson. They are kept in
  `package.loaded["cjson.constants"]`, so they survive `package.loaded.cjson = nil` followed by
  a new `require`. A host able to create userdata may put its own values there before the first
  `require` (`{ null = <userdata>, empty_array = <userdata> }`, missing fields are filled in);
  otherwise they are tables (see DEVIATIONS).

DEVIATIONS FROM lua-cjson (pure Lua cannot make a lightuserdata)
  * `cjson.null` and `cjson.empty_array` are unique tables with a protected metatable, so
    `type(cjson.null)` is "table", not "userdata". `tostring(cjson.null)` is "userdata: NULL" as
    in OpenResty. Assigning a field of either raises an error; reading one gives nil (a
    userdata would raise an error there too). Used as a table key, encode's error names it a
    "table" where lua-cjson says "userdata".
  * `encode_escape_forward_slash` applies to the instance it is called on (lua-cjson changes a
    process-wide table, so it leaks into every instance).
  * Metatables are read with `getmetatable`, so a table whose metatable has a `__metatable`
    field is not recognised as having `array_mt`/`empty_array_mt`.
  * Argument errors name the function by its field name ('decode'), as lua-cjson's do when
    called as `cjson.decode(...)`; lua-cjson says 'cjson.decode' when called through pcall.
  * Keys of type float that hold huge integral values (beyond 2^63) never make a table an
    array (lua-cjson's C code has undefined behaviour there).
  * Numbers: integers (Lua 5.4 subtype) print as integers (`%d`); floats with `%.14g` (the
    precision set by `encode_number_precision`). Decoding gives an integer for a number written
    with digits only that fits in 64 bits, a float otherwise (`1.0`, `1e2`, hex, inf, nan).
  * `encode_keep_buffer` is accepted and reported, and changes nothing (Lua manages memory).
  * `decode_allow_comment` is not provided.
]]

local type, next, select = type, next, select
local rawget, rawequal, rawlen = rawget, rawequal, rawlen
local getmetatable, setmetatable = getmetatable, setmetatable
local pcall, error, tostring, tonumber = pcall, error, tostring, tonumber
local byte, char, find, sub, gsub, fmt, lower, rep =
  string.byte, string.char, string.find, string.sub, string.gsub, string.format, string.lower,
  string.rep
local concat = table.concat
local math_type, huge, tointeger = math.type, math.huge, math.tointeger

local MODNAME = ...
local VERSION = "2.1.0.14"
local INT_MAX = 2147483647

---------------------------------------------------------------------------------------------------
-- Shared constants
---------------------------------------------------------------------------------------------------

local function sentinel(name)
  return setmetatable({}, {
    __metatable = false,
    __tostring = function()
      return name == "null" and "userdata: NULL" or "userdata: cjson." .. name
    end,
    __newindex = function()
      error("attempt to index a userdata value (cjson." .. name .. ")", 2)
    end,
  })
end

local shared
do
  local loaded = type(package) == "table" and type(package.loaded) == "table" and package.loaded
  shared = loaded and rawget(loaded, "cjson.constants")
  if type(shared) ~= "table" then
    shared = {}
  end
  if shared.null == nil then shared.null = sentinel("null") end
  if shared.empty_array == nil then shared.empty_array = sentinel("empty_array") end
  if type(shared.array_mt) ~= "table" then shared.array_mt = {} end
  if type(shared.empty_array_mt) ~= "table" then shared.empty_array_mt = {} end
  if loaded then
    loaded["cjson.constants"] = shared
  end
end

local null, empty_array = shared.null, shared.empty_array
local array_mt, empty_array_mt = shared.array_mt, shared.empty_array_mt

---------------------------------------------------------------------------------------------------
-- Errors
---------------------------------------------------------------------------------------------------

-- Errors raised by the encoder/decoder are tagged tables, caught by the public entry points and
-- re-raised there at the caller's level (or returned, in cjson.safe). Any other error (out of
-- memory, CPU budget) passes through untouched.
local ERR = {}

local function throw(msg)
  error({ ERR, msg }, 0)
end

local function typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" then
    local name = rawget(mt, "__name")
    if type(name) == "string" then return name end
  end
  return type(v)
end

---------------------------------------------------------------------------------------------------
-- Encoding
---------------------------------------------------------------------------------------------------

-- Escapes, as lua-cjson writes them: control characters as \uXXXX (lower-case hex) except the
-- five with a short form, DEL as \u007f, '"', '\' and (by default) '/'. Bytes >= 0x80 are
-- passed through unchanged.
local ESC = {}
for i = 0, 31 do
  ESC[char(i)] = fmt("\\u%04x", i)
end
ESC["\b"], ESC["\t"], ESC["\n"], ESC["\f"], ESC["\r"] = "\\b", "\\t", "\\n", "\\f", "\\r"
ESC['"'], ESC["\\"], ESC["/"], ESC["\127"] = '\\"', "\\\\", "\\/", "\\u007f"

local ESC_SLASH = '[\0-\31"\\/\127]'
local ESC_NO_SLASH = '[\0-\31"\\\127]'

-- Encoded object keys ('"key":') for compact output, by escape pattern. Bounded: at most
-- KEY_CACHE_MAX keys of at most KEY_CACHE_LEN bytes, then it starts afresh.
local KEY_CACHE_MAX, KEY_CACHE_LEN = 1024, 64
local key_cache = { [ESC_SLASH] = {}, [ESC_NO_SLASH] = {} }
local key_cache_size = { [ESC_SLASH] = 0, [ESC_NO_SLASH] = 0 }

local function encoded_key(k, esc)
  local cache = key_cache[esc]
  local size = key_cache_size[esc]
  local text = k
  if find(text, esc) then text = gsub(text, esc, ESC) end
  text = '"' .. text .. '":'
  if #k <= KEY_CACHE_LEN then
    if size >= KEY_CACHE_MAX then
      cache = {}
      key_cache[esc] = cache
      size = 0
    end
    cache[k] = text
    key_cache_size[esc] = size + 1
  end
  return text
end

local function number_text(v, cfg)
  if math_type(v) == "integer" then
    return fmt("%d", v)
  end
  if v ~= v or v == huge or v == -huge then
    local mode = cfg.encode_invalid_numbers
    if mode == 0 then
      throw("Cannot serialise number: must not be NaN or Infinity")
    elseif mode == 1 then
      if v ~= v then return "NaN" end
      return v > 0 and "Infinity" or "-Infinity"
    end
    return "null"
  end
  return fmt(cfg.number_format, v)
end

local function unsupported(v)
  local tv = type(v)
  if tv == "string" or tv == "number" or tv == "boolean" or tv == "nil" or tv == "table" then
    return false
  end
  return not (rawequal(v, null) or rawequal(v, empty_array))
end

local encode_value

-- Appends array items 1..len of `t` (raw access) to buf; returns the new length.
local function encode_array(t, len, cfg, depth, buf, n, raw)
  if len == 0 then
    n = n + 1
    buf[n] = "[]"
    return n
  end
  local esc, indent = cfg.escape_pattern, cfg.indent
  local skip = cfg.encode_skip_unsupported_value_types
  local sep, open, close = ",", "[", "]"
  if indent ~= "" then
    local inner = "\n" .. rep(indent, depth)
    sep, open, close = "," .. inner, "[" .. inner, "\n" .. rep(indent, depth - 1) .. "]"
  end
  n = n + 1
  buf[n] = open
  local first = true
  for i = 1, len do
    local v
    if raw then v = rawget(t, i) else v = t[i] end
    if not (skip and unsupported(v)) then
      if first then
        first = false
      else
        n = n + 1
        buf[n] = sep
      end
      local tv = type(v)
      if tv == "string" then
        if find(v, esc) then v = gsub(v, esc, ESC) end
        n = n + 1
        buf[n] = '"' .. v .. '"'
      elseif tv == "number" then
        n = n + 1
        buf[n] = number_text(v, cfg)
      else
        n = encode_value(v, cfg, depth, buf, n)
      end
    end
  end
  if first and indent ~= "" then
    -- Every item was skipped: write the empty array compactly, as for an empty table.
    buf[n] = "[]"
    return n
  end
  n = n + 1
  buf[n] = close
  return n
end

local function encode_object(t, cfg, depth, buf, n)
  local esc, indent = cfg.escape_pattern, cfg.indent
  local skip = cfg.encode_skip_unsupported_value_types
  local sep, open, close, colon = ",", "{", "}", '":'
  if indent ~= "" then
    local inner = "\n" .. rep(indent, depth)
    sep, open, close, colon = "," .. inner, "{" .. inner, "\n" .. rep(indent, depth - 1) .. "}", '": '
  end
  local keys = indent == "" and key_cache[esc]
  local start = n + 1
  n = start
  buf[n] = open
  local first = true
  for k, v in next, t do
    local key = keys and keys[k]
    if not key then
      local tk = type(k)
      if tk == "string" then
        if keys then
          key = encoded_key(k, esc)
        else
          if find(k, esc) then k = gsub(k, esc, ESC) end
          key = '"' .. k .. colon
        end
      elseif tk == "number" then
        key = '"' .. number_text(k, cfg) .. colon
      else
        throw("Cannot serialise " .. tk .. ": table key must be a number or string")
      end
    end
    if not (skip and unsupported(v)) then
      if first then
        first = false
      else
        n = n + 1
        buf[n] = sep
      end
      n = n + 1
      buf[n] = key
      local tv = type(v)
      if tv == "string" then
        if find(v, esc) then v = gsub(v, esc, ESC) end
        n = n + 1
        buf[n] = '"' .. v .. '"'
      elseif tv == "number" then
        n = n + 1
        buf[n] = number_text(v, cfg)
      else
        n = encode_value(v, cfg, depth, buf, n)
      end
    end
  end
  if first then
    buf[start] = "{}"
    return start
  end
  n = n + 1
  buf[n] = close
  return n
end

local function encode_table(t, mt, cfg, depth, buf, n)
  depth = depth + 1
  if depth > cfg.encode_max_depth then
    throw("Cannot serialise, excessive nesting (" .. depth .. ")")
  end
  if mt == array_mt then
    return encode_array(t, rawlen(t), cfg, depth, buf, n, true)
  end
  -- Array if every key is a positive integer; its length is the largest key.
  local max, items = 0, 0
  for k in next, t do
    if math_type(k) == "integer" and k >= 1 then
      if k > max then max = k end
      items = items + 1
    else
      max = -1
      break
    end
  end
  if max > 0 then
    local ratio = cfg.encode_sparse_ratio
    if ratio > 0 and max > items * ratio and max > cfg.encode_sparse_safe then
      if not cfg.encode_sparse_convert then
        throw("Cannot serialise table: excessively sparse array")
      end
      return encode_object(t, cfg, depth, buf, n)
    end
    return encode_array(t, max, cfg, depth, buf, n, mt ~= nil)
  elseif max == 0 and (not cfg.encode_empty_table_as_object or mt == empty_array_mt) then
    n = n + 1
    buf[n] = "[]"
    return n
  end
  return encode_object(t, cfg, depth, buf, n)
end

encode_value = function(v, cfg, depth, buf, n)
  local tv = type(v)
  if tv == "table" then
    local mt = getmetatable(v)
    if mt == false then
      if rawequal(v, null) then
        n = n + 1
        buf[n] = "null"
        return n
      elseif rawequal(v, empty_array) then
        n = n + 1
        buf[n] = "[]"
        return n
      end
    end
    return encode_table(v, mt, cfg, depth, buf, n)
  elseif tv == "string" then
    local esc = cfg.escape_pattern
    if find(v, esc) then v = gsub(v, esc, ESC) end
    n = n + 1
    buf[n] = '"' .. v .. '"'
  elseif tv == "number" then
    n = n + 1
    buf[n] = number_text(v, cfg)
  elseif tv == "boolean" then
    n = n + 1
    buf[n] = v and "true" or "false"
  elseif tv == "nil" or rawequal(v, null) then
    n = n + 1
    buf[n] = "null"
  elseif rawequal(v, empty_array) then
    n = n + 1
    buf[n] = "[]"
  elseif not cfg.encode_skip_unsupported_value_types then
    throw("Cannot serialise " .. tv .. ": type not supported")
  end
  return n
end

local function encode(v, cfg)
  local tv = type(v)
  if tv == "string" then
    local esc = cfg.escape_pattern
    if find(v, esc) then v = gsub(v, esc, ESC) end
    return '"' .. v .. '"'
  elseif tv == "number" then
    return number_text(v, cfg)
  end
  -- Reuse the instance's buffer unless it is in use (an encode running inside another one,
  -- e.g. from a __gc metamethod). Only a small one is kept, so that it holds no big string.
  local buf = cfg.buffer
  if buf then
    cfg.buffer = false
  else
    buf = {}
  end
  local n = encode_value(v, cfg, 0, buf, 0)
  local text = concat(buf, "", 1, n)
  if n <= 256 and #text <= 8192 then
    cfg.buffer = buf
  end
  return text
end

---------------------------------------------------------------------------------------------------
-- Decoding
---------------------------------------------------------------------------------------------------

local UNESCAPE = {
  [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r",
  [116] = "\t",
}

local SINGLE_TOKEN = {
  [123] = "T_OBJ_BEGIN", [125] = "T_OBJ_END", [91] = "T_ARR_BEGIN", [93] = "T_ARR_END",
  [44] = "T_COMMA", [58] = "T_COLON",
}

local function hex4(s, p)
  local h = sub(s, p, p + 3)
  if #h == 4 and not find(h, "[^%x]") then
    return tonumber(h, 16)
  end
  return nil
end

local function utf8_bytes(cp)
  if cp < 0x80 then
    return char(cp)
  elseif cp < 0x800 then
    return char(0xC0 | (cp >> 6), 0x80 | (cp & 0x3F))
  elseif cp < 0x10000 then
    return char(0xE0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3F), 0x80 | (cp & 0x3F))
  end
  return char(0xF0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3F), 0x80 | ((cp >> 6) & 0x3F),
    0x80 | (cp & 0x3F))
end

-- String starting with the quote at `pos`. Returns the string and the position after the closing
-- quote, or nil, the error name and the position of the error (as lua-cjson reports them).
local function scan_string(s, pos)
  local parts, np = {}, 0
  local i = pos + 1
  while true do
    local e = find(s, '["\\]', i)
    if not e then
      return nil, "unexpected end of string", #s + 1
    end
    if e > i then
      np = np + 1
      parts[np] = sub(s, i, e - 1)
    end
    if byte(s, e) == 34 then
      return concat(parts, "", 1, np), e + 1
    end
    local c = byte(s, e + 1)
    local r = UNESCAPE[c]
    if r then
      np = np + 1
      parts[np] = r
      i = e + 2
    elseif c == 117 then -- \uXXXX
      local cp = hex4(s, e + 2)
      if not cp then
        return nil, "invalid unicode escape code", e
      end
      local len = 6
      if (cp & 0xF800) == 0xD800 then
        -- A surrogate: must be a high one followed by an escaped low one.
        if cp & 0x400 ~= 0 or byte(s, e + 6) ~= 92 or byte(s, e + 7) ~= 117 then
          return nil, "invalid unicode escape code", e
        end
        local low = hex4(s, e + 8)
        if not low or (low & 0xFC00) ~= 0xDC00 then
          return nil, "invalid unicode escape code", e
        end
        cp = (((cp & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000
        len = 12
      end
      np = np + 1
      parts[np] = utf8_bytes(cp)
      i = e + len
    else
      return nil, "invalid escape code", e
    end
  end
end

-- True for what lua-cjson calls an invalid number (accepted unless decode_invalid_numbers is
-- off): a leading '+', hexadecimal, leading zeros, inf, nan.
local function is_invalid_number(s, p)
  local c = byte(s, p)
  if c == 43 then return true end
  if c == 45 then
    p = p + 1
    c = byte(s, p)
  end
  if c == 48 then
    local c2 = byte(s, p + 1)
    return c2 ~= nil and (c2 == 120 or c2 == 88 or (c2 >= 48 and c2 <= 57))
  end
  if c == nil or c <= 57 then return false end
  local w = lower(sub(s, p, p + 2))
  return w == "inf" or w == "nan"
end

-- Reads the longest number at `pos` as C's strtod does (decimal, hexadecimal, inf, infinity,
-- nan, optional sign). Returns the value and the position after it, or nil when there is no
-- number. Digits only (no point, no exponent) give an integer when it fits in 64 bits.
local function scan_number(s, pos)
  local p = pos
  local c = byte(s, p)
  local negative = false
  if c == 43 or c == 45 then
    negative = c == 45
    p = p + 1
    c = byte(s, p)
  end
  if c == 48 then
    local x = byte(s, p + 1)
    if x == 120 or x == 88 then
      local _, e = find(s, "^%x*", p + 2)
      local digits = e - (p + 1)
      if byte(s, e + 1) == 46 then
        local _, e2 = find(s, "^%x*", e + 2)
        if digits + (e2 - e - 1) > 0 then
          digits = digits + (e2 - e - 1)
          e = e2
        end
      end
      if digits > 0 then
        local pc = byte(s, e + 1)
        local exp = false
        if pc == 112 or pc == 80 then
          local _, e3 = find(s, "^[-+]?%d+", e + 2)
          if e3 then
            e = e3
            exp = true
          end
        end
        local text = sub(s, pos, e)
        -- With a binary exponent Lua converts through strtod (a float, no wrap-around).
        local v = tonumber(exp and text or text .. "p0")
        return v, e + 1
      end
      -- "0x" without digits: strtod reads the "0" alone.
    end
  end
  local _, e = find(s, "^%d*", p)
  local digits = e - p + 1
  local float = false
  if byte(s, e + 1) == 46 then
    local _, e2 = find(s, "^%d*", e + 2)
    if digits + (e2 - e - 1) > 0 then
      digits = digits + (e2 - e - 1)
      e = e2
      float = true
    end
  end
  if digits == 0 then
    local w = lower(sub(s, p, p + 7))
    local v, len
    if w == "infinity" then
      v, len = huge, 8
    elseif sub(w, 1, 3) == "inf" then
      v, len = huge, 3
    elseif sub(w, 1, 3) == "nan" then
      v, len = 0.0 / 0.0, 3
      if byte(s, p + 3) == 40 then
        local _, e4 = find(s, "^[%w_]*%)", p + 4)
        if e4 then len = e4 - p + 1 end
      end
    else
      return nil
    end
    if negative then v = -v end
    return v, p + len
  end
  local ec = byte(s, e + 1)
  if ec == 101 or ec == 69 then
    local _, e3 = find(s, "^[-+]?%d+", e + 2)
    if e3 then
      e = e3
      float = true
    end
  end
  local v = tonumber(sub(s, pos, e))
  if float then v = v + 0.0 end
  return v, e + 1
end

-- Name and position (1-based) of the token at `pos`, as lua-cjson reports it in parse errors.
local function describe_token(s, pos, cfg)
  local c = byte(s, pos)
  if c == 32 or c == 9 or c == 10 or c == 13 then
    pos = find(s, "[^ \t\n\r]", pos) or #s + 1
    c = byte(s, pos)
  end
  if c == nil then
    return "T_END", pos
  end
  local single = SINGLE_TOKEN[c]
  if single then
    return single, pos
  end
  if c == 34 then
    local v, err, epos = scan_string(s, pos)
    if v then return "T_STRING", pos end
    return err, epos
  end
  if c == 45 or (c >= 48 and c <= 57) then
    if not cfg.decode_invalid_numbers and is_invalid_number(s, pos) then
      return "invalid number", pos
    end
    if scan_number(s, pos) then return "T_NUMBER", pos end
    return "invalid number", pos
  end
  if c == 116 or c == 102 or c == 110 or c == 105 or c == 73 or c == 78 or c == 43 then
    if sub(s, pos, pos + 3) == "true" or sub(s, pos, pos + 4) == "false" then
      return "T_BOOLEAN", pos
    elseif sub(s, pos, pos + 3) == "null" then
      return "T_NULL", pos
    elseif cfg.decode_invalid_numbers and is_invalid_number(s, pos) then
      if scan_number(s, pos) then return "T_NUMBER", pos end
      return "invalid number", pos
    end
  end
  return "invalid token", pos
end

local function fail(s, cfg, expected, pos)
  local found, at = describe_token(s, pos, cfg)
  throw("Expected " .. expected .. " but found " .. found .. " at character " .. at)
end

local parse_value

local function parse_array(s, pos, depth, cfg)
  depth = depth + 1
  if depth > cfg.decode_max_depth then
    throw("Found too many nested data structures (" .. depth .. ") at character " .. (pos - 1))
  end
  local t = {}
  if cfg.decode_array_with_array_mt then
    setmetatable(t, array_mt)
  end
  local c = byte(s, pos)
  if c == 32 or c == 10 or c == 13 or c == 9 then
    pos = find(s, "[^ \t\n\r]", pos) or #s + 1
    c = byte(s, pos)
  end
  if c == 93 then
    return t, pos + 1
  end
  local n = 0
  while true do
    local _, e, v = find(s, '^"([^"\\]*)"', pos)
    if v then
      pos = e + 1
    else
      v, pos = parse_value(s, pos, depth, cfg)
    end
    n = n + 1
    t[n] = v
    c = byte(s, pos)
    if c == 32 or c == 10 or c == 13 or c == 9 then
      pos = find(s, "[^ \t\n\r]", pos) or #s + 1
      c = byte(s, pos)
    end
    if c == 93 then
      return t, pos + 1
    end
    if c ~= 44 then
      fail(s, cfg, "comma or array end", pos)
    end
    pos = pos + 1
    c = byte(s, pos)
    if c == 32 or c == 10 or c == 13 or c == 9 then
      pos = find(s, "[^ \t\n\r]", pos) or #s + 1
      c = byte(s, pos)
    end
  end
end

local function parse_object(s, pos, depth, cfg)
  depth = depth + 1
  if depth > cfg.decode_max_depth then
    throw("Found too many nested data structures (" .. depth .. ") at character " .. (pos - 1))
  end
  local t = {}
  local c = byte(s, pos)
  if c == 32 or c == 10 or c == 13 or c == 9 then
    pos = find(s, "[^ \t\n\r]", pos) or #s + 1
    c = byte(s, pos)
  end
  if c == 125 then
    return t, pos + 1
  end
  while true do
    -- Fast path: a key without escapes, then the colon.
    local _, e, key = find(s, '^"([^"\\]*)"[ \t\n\r]*:[ \t\n\r]*', pos)
    if key then
      pos = e + 1
    else
      if c ~= 34 then
        fail(s, cfg, "object key string", pos)
      end
      local after
      key, after = scan_string(s, pos)
      if key == nil then
        fail(s, cfg, "object key string", pos)
      end
      pos = after
      c = byte(s, pos)
      if c == 32 or c == 10 or c == 13 or c == 9 then
        pos = find(s, "[^ \t\n\r]", pos) or #s + 1
        c = byte(s, pos)
      end
      if c ~= 58 then
        fail(s, cfg, "colon", pos)
      end
      pos = pos + 1
      c = byte(s, pos)
      if c == 32 or c == 10 or c == 13 or c == 9 then
        pos = find(s, "[^ \t\n\r]", pos) or #s + 1
      end
    end
    local v
    _, e, v = find(s, '^"([^"\\]*)"', pos)
    if v then
      pos = e + 1
    else
      v, pos = parse_value(s, pos, depth, cfg)
    end
    t[key] = v
    c = byte(s, pos)
    if c == 32 or c == 10 or c == 13 or c == 9 then
      pos = find(s, "[^ \t\n\r]", pos) or #s + 1
      c = byte(s, pos)
    end
    if c == 125 then
      return t, pos + 1
    end
    if c ~= 44 then
      fail(s, cfg, "comma or object end", pos)
    end
    pos = pos + 1
    c = byte(s, pos)
    if c == 32 or c == 10 or c == 13 or c == 9 then
      pos = find(s, "[^ \t\n\r]", pos) or #s + 1
      c = byte(s, pos)
    end
  end
end

-- Value whose first character is at `pos` (whitespace already skipped).
parse_value = function(s, pos, depth, cfg)
  local c = byte(s, pos)
  if c == 34 then
    local e = find(s, '["\\]', pos + 1)
    if e and byte(s, e) == 34 then
      return sub(s, pos + 1, e - 1), e + 1
    end
    local v, next_pos = scan_string(s, pos)
    if v == nil then
      fail(s, cfg, "value", pos)
    end
    return v, next_pos
  elseif c == 123 then
    return parse_object(s, pos + 1, depth, cfg)
  elseif c == 91 then
    return parse_array(s, pos + 1, depth, cfg)
  elseif c == 45 or (c and c >= 48 and c <= 57) then
    if cfg.decode_invalid_numbers or not is_invalid_number(s, pos) then
      -- Fast path: digits only, followed by something that cannot continue a number.
      local _, e, digits = find(s, "^(-?%d+)[^.eExX%d]", pos)
      if digits then
        return tonumber(digits), e
      end
      local v, next_pos = scan_number(s, pos)
      if v ~= nil then
        return v, next_pos
      end
    end
  elseif c == 116 then
    if sub(s, pos, pos + 3) == "true" then return true, pos + 4 end
  elseif c == 102 then
    if sub(s, pos, pos + 4) == "false" then return false, pos + 5 end
  elseif c == 110 then
    if sub(s, pos, pos + 3) == "null" then return null, pos + 4 end
  end
  if (c == 43 or c == 105 or c == 73 or c == 110 or c == 78) and cfg.decode_invalid_numbers
    and is_invalid_number(s, pos) then
    local v, next_pos = scan_number(s, pos)
    if v ~= nil then
      return v, next_pos
    end
  end
  fail(s, cfg, "value", pos)
end

local function decode(s, cfg)
  local len = #s
  -- lua-cjson reads the text as a C string: it ends at the first NUL byte. A NUL among the first
  -- two bytes means UTF-16 or UTF-32.
  local z = find(s, "\0", 1, true)
  if z then
    if z <= 2 and len >= 2 then
      throw("JSON parser does not support UTF-16 or UTF-32")
    end
    s = sub(s, 1, z - 1)
    len = z - 1
  end
  local pos = 1
  local c = byte(s, 1)
  if c == 32 or c == 10 or c == 13 or c == 9 then
    pos = find(s, "[^ \t\n\r]", 1) or len + 1
  end
  local v
  v, pos = parse_value(s, pos, 0, cfg)
  c = byte(s, pos)
  if c == 32 or c == 10 or c == 13 or c == 9 then
    pos = find(s, "[^ \t\n\r]", pos) or len + 1
  end
  if pos <= len then
    fail(s, cfg, "the end", pos)
  end
  return v
end

---------------------------------------------------------------------------------------------------
-- Configuration functions (argument checks as lua-cjson's, which uses the Lua auxiliary library)
---------------------------------------------------------------------------------------------------

-- `level` 1 is the caller of the function that calls arg_error.
local function arg_error(i, fname, msg, level)
  error("bad argument #" .. i .. " to '" .. fname .. "' (" .. msg .. ")", (level or 1) + 2)
end

local function check_arg_count(count, max, fname)
  if count > max then
    arg_error(max + 1, fname, "found too many arguments", 2)
  end
end

-- Integer option: nil keeps the value; otherwise an integer (or numeric string) in [min, max].
local function integer_option(v, i, fname, current, min, max)
  if v == nil then return current end
  local n = v
  if type(v) == "string" then n = tonumber(v) end
  if type(n) ~= "number" then
    arg_error(i, fname, "number expected, got " .. typename(v), 2)
  end
  local int = tointeger(n)
  if not int then
    arg_error(i, fname, "number has no integer representation", 2)
  end
  if int < min or int > max then
    -- lua-cjson reports a range error as argument #1 whatever the argument.
    arg_error(1, fname, "expected integer between " .. min .. " and " .. max, 2)
  end
  return int
end

local BOOL_OPTIONS = { off = 0, on = 1 }
local INVALID_NUMBER_OPTIONS = { off = 0, on = 1, null = 2 }

-- Enumerated option: nil keeps the value; a boolean; or one of the option names. Returns 0/1/2.
local function enum_option(v, i, fname, current, options)
  if v == nil then return current end
  if type(v) == "boolean" then return v and 1 or 0 end
  local name = v
  if type(v) == "number" then
    name = tostring(v)
  elseif type(v) ~= "string" then
    arg_error(i, fname, "string expected, got " .. typename(v), 2)
  end
  local value = (options or BOOL_OPTIONS)[name]
  if value == nil then
    arg_error(i, fname, "invalid option '" .. name .. "'", 2)
  end
  return value
end

local function new_config()
  return {
    encode_sparse_convert = false,
    encode_sparse_ratio = 2,
    encode_sparse_safe = 10,
    encode_max_depth = 1000,
    decode_max_depth = 1000,
    encode_invalid_numbers = 0, -- 0 off, 1 on, 2 "null"
    decode_invalid_numbers = true,
    encode_keep_buffer = true,
    encode_number_precision = 14,
    number_format = "%.14g",
    encode_empty_table_as_object = true,
    decode_array_with_array_mt = false,
    encode_escape_forward_slash = true,
    escape_pattern = ESC_SLASH,
    encode_skip_unsupported_value_types = false,
    indent = "",
    buffer = false,
  }
end

local new_instance

new_instance = function(safe)
  local cfg = new_config()
  local M = {
    _NAME = "cjson",
    _VERSION = VERSION,
    null = null,
    empty_array = empty_array,
    array_mt = array_mt,
    empty_array_mt = empty_array_mt,
  }

  local function bool_setting(name)
    return function(...)
      local count, v = select("#", ...), ...
      check_arg_count(count, 1, name)
      cfg[name] = enum_option(v, 1, name, cfg[name] and 1 or 0) == 1
      return cfg[name]
    end
  end

  if safe then
    function M.encode(...)
      if select("#", ...) ~= 1 then
        arg_error(1, "encode", "expected 1 argument")
      end
      local ok, res = pcall(encode, (...), cfg)
      if ok then return res end
      if type(res) == "table" and res[1] == ERR then
        return nil, res[2]
      end
      error(res, 0)
    end

    function M.decode(...)
      if select("#", ...) ~= 1 then
        arg_error(1, "decode", "expected 1 argument")
      end
      local s = ...
      local ts = type(s)
      if ts ~= "string" then
        if ts ~= "number" then
          -- lua-cjson's inner decode runs under pcall and cannot name itself.
          return nil, "bad argument #1 to '?' (string expected, got " .. typename(s) .. ")"
        end
        s = tostring(s)
      end
      local ok, res = pcall(decode, s, cfg)
      if ok then return res end
      if type(res) == "table" and res[1] == ERR then
        return nil, res[2]
      end
      error(res, 0)
    end
  else
    function M.encode(...)
      if select("#", ...) ~= 1 then
        arg_error(1, "encode", "expected 1 argument")
      end
      local ok, res = pcall(encode, (...), cfg)
      if ok then return res end
      if type(res) == "table" and res[1] == ERR then
        error(res[2], 2)
      end
      error(res, 0)
    end

    function M.decode(...)
      if select("#", ...) ~= 1 then
        arg_error(1, "decode", "expected 1 argument")
      end
      local s = ...
      local ts = type(s)
      if ts ~= "string" then
        if ts ~= "number" then
          arg_error(1, "decode", "string expected, got " .. typename(s))
        end
        s = tostring(s)
      end
      local ok, res = pcall(decode, s, cfg)
      if ok then return res end
      if type(res) == "table" and res[1] == ERR then
        error(res[2], 2)
      end
      error(res, 0)
    end
  end

  function M.new()
    return new_instance(safe)
  end

  if not safe then
    -- Not in lua-cjson: how the host builds the `cjson.safe` module.
    function M.safe()
      return new_instance(true)
    end
  end

  M.encode_empty_table_as_object = bool_setting("encode_empty_table_as_object")
  M.decode_array_with_array_mt = bool_setting("decode_array_with_array_mt")
  M.encode_keep_buffer = bool_setting("encode_keep_buffer")
  M.decode_invalid_numbers = bool_setting("decode_invalid_numbers")
  M.encode_skip_unsupported_value_types = bool_setting("encode_skip_unsupported_value_types")

  function M.encode_escape_forward_slash(...)
    local count, v = select("#", ...), ...
    check_arg_count(count, 1, "encode_escape_forward_slash")
    local on = enum_option(v, 1, "encode_escape_forward_slash",
      cfg.encode_escape_forward_slash and 1 or 0) == 1
    cfg.encode_escape_forward_slash = on
    cfg.escape_pattern = on and ESC_SLASH or ESC_NO_SLASH
    return on
  end

  function M.encode_invalid_numbers(...)
    local count, v = select("#", ...), ...
    check_arg_count(count, 1, "encode_invalid_numbers")
    local mode = enum_option(v, 1, "encode_invalid_numbers", cfg.encode_invalid_numbers,
      INVALID_NUMBER_OPTIONS)
    cfg.encode_invalid_numbers = mode
    if mode == 2 then return "null" end
    return mode == 1
  end

  function M.encode_sparse_array(...)
    local count, convert, ratio, safe_len = select("#", ...), ...
    check_arg_count(count, 3, "encode_sparse_array")
    cfg.encode_sparse_convert = enum_option(convert, 1, "encode_sparse_array",
      cfg.encode_sparse_convert and 1 or 0) == 1
    cfg.encode_sparse_ratio = integer_option(ratio, 2, "encode_sparse_array",
      cfg.encode_sparse_ratio, 0, INT_MAX)
    cfg.encode_sparse_safe = integer_option(safe_len, 3, "encode_sparse_array",
      cfg.encode_sparse_safe, 0, INT_MAX)
    return cfg.encode_sparse_convert, cfg.encode_sparse_ratio, cfg.encode_sparse_safe
  end

  function M.encode_max_depth(...)
    local count, v = select("#", ...), ...
    check_arg_count(count, 1, "encode_max_depth")
    cfg.encode_max_depth = integer_option(v, 1, "encode_max_depth", cfg.encode_max_depth, 1,
      INT_MAX)
    return cfg.encode_max_depth
  end

  function M.decode_max_depth(...)
    local count, v = select("#", ...), ...
    check_arg_count(count, 1, "decode_max_depth")
    cfg.decode_max_depth = integer_option(v, 1, "decode_max_depth", cfg.decode_max_depth, 1,
      INT_MAX)
    return cfg.decode_max_depth
  end

  function M.encode_number_precision(...)
    local count, v = select("#", ...), ...
    check_arg_count(count, 1, "encode_number_precision")
    local p = integer_option(v, 1, "encode_number_precision", cfg.encode_number_precision, 1, 16)
    cfg.encode_number_precision = p
    cfg.number_format = "%." .. p .. "g"
    return p
  end

  function M.encode_indent(...)
    local count, v = select("#", ...), ...
    check_arg_count(count, 1, "encode_indent")
    if v ~= nil then
      if type(v) == "number" then
        v = tostring(v)
      elseif type(v) ~= "string" then
        arg_error(1, "encode_indent", "string expected, got " .. typename(v))
      end
      cfg.indent = v
    end
    return cfg.indent
  end

  return M
end

return new_instance(MODNAME == "cjson.safe")
