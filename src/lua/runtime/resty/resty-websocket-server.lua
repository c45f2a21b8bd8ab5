--[[
resty-websocket-server.lua: `resty.websocket.server` for OpenResty-style scripts, with
lua-resty-websocket's names, defaults (max_payload_len 65535), return values and error strings.

`websocket:new(opts)` (also `websocket.new(opts)`) completes the WebSocket handshake of the
request the running thread serves (its scheduler context) and returns its `wb`. Options:
timeout (ms, read timeout of recv_frame; default 60000 as lua_socket_read_timeout),
max_payload_len (default 65535), max_recv_len and max_send_len (default max_payload_len),
send_masked (accepted and ignored: moonsocket's server never masks, as RFC 6455 §5.1 requires).

Frames are seen as they arrive and nothing is answered automatically: pongs and the close reply
are the script's job, as in OpenResty. Unlike OpenResty, any handler may use any connection's
`wb` (every connection lives in the same process), e.g. to broadcast.

Loaded by ngx.lua with the private API (`internal`).
]]

local internal = ...
local wbproto = require("resty.websocket.protocol")

local new_tab = wbproto.new_tab
local _recv_frame = wbproto.recv_frame
local _send_frame = wbproto.send_frame
local new_sock = internal.new_sock
local prim = internal.prim
local type, setmetatable, char, tointeger = type, setmetatable, string.char, math.tointeger

local _M = new_tab(0, 10)
_M._VERSION = "0.10"

local mt = { __index = _M }

--- websocket:new(opts) / websocket.new(opts): wb, or nil and an error (the handshake could not
--- be done: OpenResty's "bad \"upgrade\" request header: ...", "bad \"connection\" request
--- header", "bad \"sec-websocket-key\" request header", "bad \"sec-websocket-version\" request
--- header", "bad http version"; "response header already sent" on a second call).
function _M.new(self, opts)
  if self ~= _M then opts = self end
  local conn, ctx = internal.current()
  if conn == nil then
    return nil, ctx ~= nil and "API disabled in the context of ngx.timer" or "no request found"
  end
  if conn.accepted then return nil, "response header already sent" end
  local ok, err = prim.accept(conn.h)
  if not ok then return nil, err end
  conn.accepted = true

  local sock = new_sock(conn.h, false)
  local max_payload_len, send_masked, timeout, max_recv_len, max_send_len
  if opts then
    max_payload_len = opts.max_payload_len
    send_masked = opts.send_masked
    timeout = opts.timeout
    if timeout then sock:settimeout(timeout) end
    max_recv_len = opts.max_recv_len
    max_send_len = opts.max_send_len
  end

  local wb = setmetatable({
    sock = sock,
    max_payload_len = max_payload_len or 65535,
    max_recv_len = max_recv_len,
    max_send_len = max_send_len,
    send_masked = send_masked,
  }, mt)
  conn.wb = wb
  return wb
end

--- wb:set_timeout(ms): the read timeout of recv_frame.
function _M.set_timeout(self, time)
  local sock = self.sock
  if not sock then return nil, nil, "not initialized yet" end
  return sock:settimeout(time)
end

--- wb:recv_frame(): data, typ, err (see resty.websocket.protocol). Any error but a timeout is
--- fatal: wb.fatal is set and later calls return nil, nil, "fatal error already happened".
function _M.recv_frame(self)
  if self.fatal then return nil, nil, "fatal error already happened" end
  local sock = self.sock
  if not sock then return nil, nil, "not initialized yet" end
  local data, typ, err = _recv_frame(sock, self.max_recv_len or self.max_payload_len, true)
  if not data and not err:find(": timeout", 1, true) then self.fatal = true end
  return data, typ, err
end

local function send_frame(self, fin, opcode, payload)
  if self.fatal then return nil, "fatal error already happened" end
  local sock = self.sock
  if not sock then return nil, "not initialized yet" end
  local bytes, err, refused = _send_frame(sock, fin, opcode, payload,
    self.max_send_len or self.max_payload_len, self.send_masked)
  if not bytes and not refused then self.fatal = true end
  return bytes, err
end
_M.send_frame = send_frame

--- wb:send_text(data), wb:send_binary(data): bytes sent (the frame's length), or nil, err.
function _M.send_text(self, data)
  return send_frame(self, true, 0x1, data)
end

function _M.send_binary(self, data)
  return send_frame(self, true, 0x2, data)
end

--- wb:send_close([code [, msg]]): an empty close frame, or one with a status code and message;
--- nil, "bad status code" for a code that is not a number or above 0x7fff (or one RFC 6455
--- forbids on the wire).
function _M.send_close(self, code, msg)
  local payload
  if code then
    local c = tointeger(code)
    if type(code) ~= "number" or c == nil or code > 0x7fff or c < 0 then
      return nil, "bad status code"
    end
    payload = char((c >> 8) & 0xff, c & 0xff) .. (msg or "")
  end
  return send_frame(self, true, 0x8, payload)
end

function _M.send_ping(self, data)
  return send_frame(self, true, 0x9, data)
end

function _M.send_pong(self, data)
  return send_frame(self, true, 0xa, data)
end

return _M
