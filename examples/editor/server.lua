-- moonsocket collaborative editor (callback style, as in WebSocketServer).
--
--   moonsocket serve examples/editor/server.lua --static examples/editor/public
--
-- One shared text that every open page edits. Concurrent edits are merged with operational
-- transformation (OT) on insert/delete operations, Jupiter-style, as Google Wave and ShareJS
-- did: the server holds the authoritative text and a version number; a client sends an
-- operation together with the version it was made on; the server transforms it over every
-- operation applied since that version, applies it, and broadcasts the result with the new
-- version. The sender takes its own operation coming back as the acknowledgement; the others
-- transform it over their own unacknowledged edits (see index.html), so nobody's keystrokes
-- are lost and every page ends with the same text. Ties (two inserts at the same place) put
-- the text the server applied first before the other.
--
-- An operation is a list of components applied one after the other, positions counted in
-- Unicode code points (the same in Lua and in the browser's JavaScript):
--   {i=pos, s="text"}   insert "text" before code point pos (0-based)
--   {d=pos, n=count}    delete count code points from pos
--
-- Protocol (JSON text messages):
--   client → server  {type="op", v=version, ops={...}}   an edit made on version v
--                    {type="name", name="..."}           the name shown to the others
--   server → client  {type="welcome", id, version, text, editors}   on connect
--                    {type="op", v=new version, ops, id=author}      every applied edit (to all)
--                    {type="reset", version, text, reason}          resync (edit too old or invalid)
--                    {type="editors", editors={{id, name}, ...}}    who is here
local cjson = require "cjson.safe"
local log = require "moonsocket"

local MAX_BYTES = 100000  -- longest text, in bytes
local KEEP_OPS = 1000     -- applied operations kept to transform late edits over

local text = "Welcome to the moonsocket collaborative editor!\n\nOpen this page in another tab and type in both.\n"
local version = 0
local applied = {}       -- applied[v] = the operation that made version v (only the last KEEP_OPS)
local oldest = 1         -- the oldest version still in `applied`
local names = {}         -- client id -> display name

local function send(id, message) _send(id, cjson.encode(message)) end
local function clip(s, n)  -- at most n code points, never cutting one in half
  local cut = utf8.offset(s, n + 1)
  return cut and s:sub(1, cut - 1) or s
end
local function send_all(message) _sendAll(cjson.encode(message)) end

local function editors()
  local list = {}
  for id, name in pairs(names) do list[#list + 1] = { id = id, name = name } end
  table.sort(list, function(a, b) return a.id < b.id end)
  if #list == 0 then return cjson.empty_array end
  return list
end

-- ---- operational transformation (mirrored in index.html) -----------------------------------

local function ulen(s) return utf8.len(s) end

-- Component `a` transformed over component `b` (both made on the same text): a list of 0, 1
-- or 2 components that do a's work on the text b produced. `left`: a wins insert ties.
local function transform_component(a, b, left)
  if a.i then
    local p = a.i
    if b.i then
      if b.i < p or (b.i == p and not left) then p = p + ulen(b.s) end
    elseif p > b.d then
      p = p - math.min(b.n, p - b.d)
    end
    return { { i = p, s = a.s } }
  end
  local p, n = a.d, a.n
  if b.i then
    if b.i >= p + n then return { { d = p, n = n } } end
    if b.i <= p then return { { d = p + ulen(b.s), n = n } } end
    -- b inserted inside the range a deletes: delete around the inserted text.
    return { { d = p, n = b.i - p }, { d = p + ulen(b.s), n = n - (b.i - p) } }
  end
  local overlap = math.max(0, math.min(p + n, b.d + b.n) - math.max(p, b.d))
  if b.d < p then p = p - math.min(b.n, p - b.d) end
  if n - overlap == 0 then return {} end
  return { { d = p, n = n - overlap } }
end

local function concat(x, y)
  local out = {}
  for _, c in ipairs(x) do out[#out + 1] = c end
  for _, c in ipairs(y) do out[#out + 1] = c end
  return out
end

local function slice(list, from)
  return { table.unpack(list, from) }
end

-- Operations `a` and `b` made on the same text: returns a' (a after b) and b' (b after a).
local function transform(a, b, left)
  if #a == 0 or #b == 0 then return a, b end
  if #a == 1 and #b == 1 then
    return transform_component(a[1], b[1], left), transform_component(b[1], a[1], not left)
  end
  if #a > 1 then
    local a1, b1 = transform({ a[1] }, b, left)
    local rest, b2 = transform(slice(a, 2), b1, left)
    return concat(a1, rest), b2
  end
  local a1, b1 = transform(a, { b[1] }, left)
  local a2, rest = transform(a1, slice(b, 2), left)
  return a2, concat(b1, rest)
end

-- The byte offset of code point `pos` (0-based) in s, or nil when out of range.
local function offset(s, pos)
  if pos < 0 then return nil end
  return utf8.offset(s, pos + 1)
end

-- Applies an operation; returns the new text, or nil and why.
local function apply(s, ops)
  for _, c in ipairs(ops) do
    if c.i then
      local at = offset(s, c.i)
      if not at then return nil, "insert position out of range" end
      s = s:sub(1, at - 1) .. c.s .. s:sub(at)
    else
      local from, to = offset(s, c.d), offset(s, c.d + c.n)
      if not from or not to then return nil, "delete range out of range" end
      s = s:sub(1, from - 1) .. s:sub(to)
    end
  end
  if #s > MAX_BYTES then return nil, "the text would exceed " .. MAX_BYTES .. " bytes" end
  return s
end

-- A well-formed operation from a client, or nil.
local function valid_ops(ops)
  if type(ops) ~= "table" or #ops > 1000 then return nil end
  local out = {}
  for _, c in ipairs(ops) do
    if type(c) ~= "table" then return nil end
    if math.type(c.i) == "integer" and type(c.s) == "string" and utf8.len(c.s) and c.s ~= "" then
      out[#out + 1] = { i = c.i, s = c.s }
    elseif math.type(c.d) == "integer" and math.type(c.n) == "integer" and c.n > 0 then
      out[#out + 1] = { d = c.d, n = c.n }
    else
      return nil
    end
  end
  return out
end

-- ---- the server ---------------------------------------------------------------------------

local function reset(id, reason)
  send(id, { type = "reset", version = version, text = text, reason = reason })
end

local function edit(id, request)
  local base = math.tointeger(request.v)
  local ops = valid_ops(request.ops)
  if not base or base > version or not ops then return reset(id, "malformed edit") end
  if base < oldest - 1 then return reset(id, "edit made on a version too old to merge") end
  -- Transform over everything applied since the client's version; what is already applied
  -- wins ties, as the clients assume when they transform the other way.
  for v = base + 1, version do
    ops = transform(ops, applied[v], false)
  end
  local new_text, err = apply(text, ops)
  if not new_text then return reset(id, err) end
  text, version = new_text, version + 1
  applied[version] = ops
  if version - oldest >= KEEP_OPS then
    applied[oldest] = nil
    oldest = oldest + 1
  end
  send_all({ type = "op", v = version, ops = #ops > 0 and ops or cjson.empty_array, id = id })
end

function on_connect(id)
  names[id] = "Editor " .. (id + 1)
  send(id, { type = "welcome", id = id, version = version, text = text, editors = editors() })
  send_all({ type = "editors", editors = editors() })
  log.info("editor: client ", id, " joined at version ", version)
end

function main(id, message)
  local request = cjson.decode(message)
  if type(request) ~= "table" then return end
  if request.type == "op" then
    edit(id, request)
  elseif request.type == "name" and type(request.name) == "string" and utf8.len(request.name) then
    local name = clip(request.name:gsub("[%c<>]", ""), 24)
    if name ~= "" then
      names[id] = name
      send_all({ type = "editors", editors = editors() })
    end
  end
end

function on_disconnect(id)
  names[id] = nil
  send_all({ type = "editors", editors = editors() })
end
