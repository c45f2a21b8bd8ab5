--[[
resty-websocket-protocol.lua: `resty.websocket.protocol` for OpenResty-style scripts, the frame
layer shared by resty.websocket.server and resty.websocket.client, with lua-resty-websocket's
names, return values and error strings.

In OpenResty these functions parse and build frames on a raw cosocket. Here the connection's
bytes are handled by moonsocket's protocol core (which validates masking, reserved bits and
opcodes, control-frame rules, UTF-8 and close codes, and fails the connection with the RFC's close
code on a violation). So `sock` is not a cosocket but the connection's socket object (`wb.sock`):
`recv_frame` reads the next frame from its inbox (kept by the scheduler), `send_frame` hands one to
the host, and both apply lua-resty-websocket's own checks (max_payload_len, control frames) with
its error strings. A connection the core failed reads as closed:
"failed to receive the first 2 bytes: closed".

Loaded by ngx.lua with the private API (`internal`); it adds `internal.new_sock`.
]]

local internal = ...
local sched, prim = internal.sched, internal.prim

local type, tostring, setmetatable, getmetatable, error = type, tostring, setmetatable, getmetatable, error
local tointeger = math.tointeger
local spack, char, rep, byte = string.pack, string.char, string.rep, string.byte
local random = math.random

local ok, new_tab = pcall(require, "table.new")
if not ok then
  new_tab = function() return {} end
end

local _M = new_tab(0, 5)
_M.new_tab = new_tab
_M._VERSION = "0.10"

local types = {
  [0x0] = "continuation",
  [0x1] = "text",
  [0x2] = "binary",
  [0x8] = "close",
  [0x9] = "ping",
  [0xa] = "pong",
}

--- Default read timeout: lua_socket_read_timeout's, 60 s.
local DEFAULT_TIMEOUT = 60000

---------------------------------------------------------------------------------------------------
-- The socket of a connection
---------------------------------------------------------------------------------------------------

local sock_methods = {}
local sock_mt = { __index = sock_methods }

--- sock:settimeout(ms): the read timeout of recv_frame; 0 or nil restores the default (60 s).
function sock_methods.settimeout(self, ms)
  local t = tointeger(ms) or (type(ms) == "number" and ms) or nil
  if t ~= nil and t < 0 then error("bad timeout value", 2) end
  self.timeout = (t ~= nil and t > 0) and t or nil
end

--- A socket for connection handle h (`outgoing` for resty.websocket.client connections).
function internal.new_sock(h, outgoing)
  return setmetatable({ h = h, outgoing = outgoing or false }, sock_mt)
end

local function check_sock(sock)
  if getmetatable(sock) ~= sock_mt then error("bad argument #1 (a WebSocket socket, wb.sock, expected)", 3) end
end

---------------------------------------------------------------------------------------------------
-- Frames
---------------------------------------------------------------------------------------------------

--- recv_frame(sock, max_payload_len, force_masking): data, typ, err.
--- Data frames: data, "text"|"binary"|"continuation", nil -- or "again" when fin is not set.
--- Ping/pong: data, "ping"|"pong". Close: reason, "close", code (an empty close: "", "close", nil).
--- Errors: nil, nil, err ("failed to receive the first 2 bytes: timeout" / ": closed",
--- "exceeding max payload len", "failed to receive the first 2 bytes: socket busy reading").
function _M.recv_frame(sock, max_payload_len, force_masking)
  check_sock(sock)
  if sock.reading then
    return nil, nil, "failed to receive the first 2 bytes: socket busy reading"
  end
  sock.reading = true
  local kind, data, extra = sched.read(sock.h, sock.timeout or DEFAULT_TIMEOUT)
  sock.reading = false
  if kind == nil then
    if data == "closed" and sock.outgoing then sched.forget_socket(sock.h) end
    return nil, nil, "failed to receive the first 2 bytes: " .. data
  end
  if kind == 0x8 then
    if extra == nil then return "", "close", nil end
    if #data + 2 > max_payload_len then return nil, nil, "exceeding max payload len" end
    return data, "close", extra
  end
  if #data > max_payload_len then return nil, nil, "exceeding max payload len" end
  if kind <= 0x2 and not extra then return data, types[kind], "again" end
  return data, types[kind], nil
end

--- Length of a frame on the wire with a payload of n bytes.
local function frame_length(n, masking)
  local header = n <= 125 and 2 or n <= 65535 and 4 or 10
  return header + (masking and 4 or 0) + n
end

--- build_frame(fin, opcode, payload_len, payload, masking): the frame's bytes.
function _M.build_frame(fin, opcode, payload_len, payload, masking)
  local fst = fin and (0x80 | opcode) or opcode
  local snd, extra
  if payload_len <= 125 then
    snd, extra = payload_len, ""
  elseif payload_len <= 65535 then
    snd, extra = 126, spack(">I2", payload_len)
  else
    if payload_len & 0x7fffffff < payload_len then return nil, "payload too big" end
    snd, extra = 127, spack(">I8", payload_len)
  end
  if not masking then return char(fst, snd) .. extra .. payload end
  local key = { random(0, 255), random(0, 255), random(0, 255), random(0, 255) }
  local out = new_tab(payload_len, 0)
  for i = 1, payload_len do
    out[i] = char(byte(payload, i) ~ key[(i - 1) % 4 + 1])
  end
  return char(fst, snd | 0x80) .. extra .. char(key[1], key[2], key[3], key[4]) .. table.concat(out)
end

--- send_frame(sock, fin, opcode, payload, max_payload_len, masking): bytes (the frame's length
--- on the wire), or nil and "payload too big", "too much payload for control frame",
--- "fragmented control frame", "failed to send frame: closed". Frames moonsocket's protocol core
--- refuses to put on the wire come back as nil, the reason and true (nothing was sent), e.g. "bad
--- status code" for a close code RFC 6455 §7.4 does not allow (1005, 1006, 1015, unassigned ones).
function _M.send_frame(sock, fin, opcode, payload, max_payload_len, masking)
  check_sock(sock)
  if not payload then
    payload = ""
  elseif type(payload) ~= "string" then
    payload = tostring(payload)
  end
  local payload_len = #payload
  if payload_len > max_payload_len then return nil, "payload too big" end
  if opcode & 0x8 ~= 0 then
    if payload_len > 125 then return nil, "too much payload for control frame" end
    if not fin then return nil, "fragmented control frame" end
  end
  if payload_len & 0x7fffffff < payload_len then return nil, "failed to build frame: payload too big" end
  local sent, err = prim.send(sock.h, opcode, payload, fin and true or false)
  if sent == nil then return nil, "failed to send frame: " .. err end
  -- Refused before reaching the wire: the connection is unharmed (third value for the wrappers).
  if sent == false then return nil, err, true end
  -- moonsocket's client always masks and its server never does, whatever `masking` says.
  return frame_length(payload_len, sock.outgoing)
end

return _M
