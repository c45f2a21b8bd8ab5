-- moonsocket chat room (callback style, as in WebSocketServer).
--
-- Protocol: JSON messages.
--   client → server  {type="hello", name=...}                first message: pick a nickname
--                    {type="say", text=...}                  to everyone
--                    {type="whisper", to=name, text=...}     private message
--   server → client  {type="welcome", id, name, users, history}   your hello was accepted
--                    {type="join"|"leave", name}                  someone else came or went
--                    {type="say", from, text, time}, {type="whisper", from, to, text, time},
--                    {type="users", users}, {type="error", message}
-- A client must present the room token in the URL (?token=...) or it is closed with 4001.
-- Room messages go to the clients that have joined (said a hello that was accepted) only:
-- those subscribed to the topic ROOM.
-- What was said is published on its own topic SAID, whose last messages the server keeps
-- (`moonsocket serve --history 50`, the default of the built-in demo): a newcomer is given them
-- with _history, right with --workers and across --redis nodes, where a list in this script
-- would only know what was said on its own process.
-- A nickname is 1 to 24 ASCII letters, digits, "_" or "-": no spaces, so that "/w name text"
-- can always reach it. A refused hello gets an error and leaves the client connected, free to
-- send another.
local cjson = require "cjson.safe"
local log = require "moonsocket"

local TOKEN = "moon"          -- the room's token; clients connect with ?token=moon
local HISTORY_SIZE = 50       -- messages replayed to a newcomer, at most (and --history N)
local MAX_TEXT = 2000         -- longest message, in bytes
local MAX_NAME = 24           -- longest nickname, in characters (all ASCII)
local ROOM = "room"           -- the topic of the clients that have joined
local SAID = "room:said"      -- what they said (the topic whose history is replayed)

local names = {}      -- client id -> nickname
local ids = {}        -- nickname -> client id

local function send(id, message) _send(id, cjson.encode(message)) end
-- To everyone who has joined (a publish is framed once for all of them).
local function publish(message) _publish(ROOM, cjson.encode(message)) end
-- At most `n` bytes of s, never cutting a UTF-8 character in half (a text frame must be UTF-8).
local function clip(s, n)
  if #s <= n then return s end
  local cut = n + 1
  while cut > 1 and s:byte(cut) >= 0x80 and s:byte(cut) < 0xC0 do cut = cut - 1 end
  return s:sub(1, cut - 1)
end

local function user_list()
  local list = {}
  for _, name in pairs(names) do list[#list + 1] = name end
  table.sort(list)
  return list
end

-- The last HISTORY_SIZE messages said in the room, oldest first (kept by the server).
local function recent()
  local said = _history(SAID)
  local list = {}
  for i = math.max(1, #said - HISTORY_SIZE + 1), #said do
    list[#list + 1] = cjson.decode(said[i])
  end
  return #list > 0 and list or cjson.empty_array
end

local function query_param(query, key)
  for k, v in query:gmatch("([^&=]+)=([^&]*)") do
    if k == key then return (v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
  end
end

function on_connect(id)
  local info = _getClientInfo(id)
  if query_param(info.query, "token") ~= TOKEN then
    log.warn("chat: client ", id, " rejected: bad token")
    _close(id, 4001, "invalid room token")
  end
end

-- Why `name` cannot be a nickname, or nil when it can.
local function refuse_name(name)
  if type(name) ~= "string" or name == "" then return "pick a nickname" end
  if #name > MAX_NAME or not name:match("^[%w_%-]+$") then
    local shown = utf8.len(name) and "'" .. clip(name:gsub("%c", ""), 40) .. "' " or ""
    return "nickname " .. shown .. "is not allowed: use 1 to " .. MAX_NAME .. " letters, digits, _ or - (no spaces)"
  end
end

local function hello(id, request)
  local name = request.name
  local refusal = refuse_name(name)
  if refusal then return send(id, { type = "error", message = refusal }) end
  if ids[name] and ids[name] ~= id then return send(id, { type = "error", message = "nickname '" .. name .. "' is taken" }) end
  if names[id] then  -- a new nickname: the old one leaves
    ids[names[id]] = nil
    _unsubscribe(id, ROOM)
    _unsubscribe(id, SAID)
    publish({ type = "leave", name = names[id] })
  end
  names[id], ids[name] = name, id
  send(id, { type = "welcome", id = id, name = name, users = user_list(), history = recent() })
  publish({ type = "join", name = name })  -- before subscribing: the joiner has its welcome
  _subscribe(id, ROOM)
  _subscribe(id, SAID)
  publish({ type = "users", users = user_list() })
end

function main(id, message)
  local request = cjson.decode(message)
  if type(request) ~= "table" then return send(id, { type = "error", message = "messages are JSON objects" }) end
  if request.type == "hello" then return hello(id, request) end
  local name = names[id]
  if not name then return send(id, { type = "error", message = "say hello first" }) end
  local text = type(request.text) == "string" and utf8.len(request.text) and clip(request.text, MAX_TEXT) or ""
  if text == "" then return end
  if request.type == "say" then
    local said = { type = "say", from = name, text = text, time = os.time() }
    _publish(SAID, cjson.encode(said))
  elseif request.type == "whisper" then
    local target = ids[request.to]
    if not target then return send(id, { type = "error", message = "no user named '" .. tostring(request.to) .. "'" }) end
    local whisper = { type = "whisper", from = name, to = request.to, text = text, time = os.time() }
    send(target, whisper)
    if target ~= id then send(id, whisper) end
  else
    send(id, { type = "error", message = "unknown message type" })
  end
end

function on_disconnect(id)
  local name = names[id]
  if not name then return end
  names[id], ids[name] = nil, nil
  publish({ type = "leave", name = name })
  publish({ type = "users", users = user_list() })
end
