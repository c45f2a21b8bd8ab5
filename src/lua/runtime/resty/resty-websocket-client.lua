--[[
resty-websocket-client.lua: `resty.websocket.client` for OpenResty-style scripts, with
lua-resty-websocket's names, defaults, return values and error strings, on moonsocket's own client
(ws:// and wss://).

  local client = require "resty.websocket.client"
  local wb = client:new{ timeout = 5000, max_payload_len = 65535 }
  local ok, err = wb:connect("ws://127.0.0.1:8085/s", { protocols = "chat", origin = "...",
                                                        headers = { "X-Token: abc" } })
  -- then recv_frame, send_text, send_binary, send_ping, send_pong, send_close, send_frame,
  -- set_timeout as on the server side; wb:close(), wb:set_keepalive().

Differences from OpenResty: frames are always masked (send_unmasked is ignored, as RFC 6455 §5.1
requires); there is no connection pool (set_keepalive closes like close, pool options are
ignored); `close` sends the close frame and lets moonsocket finish the close handshake in the
background instead of cutting TCP at once; TLS certificates are verified only with
`ssl_verify = true` (OpenResty's default is not to verify). Connections opened by a request's
handler are closed when that handler finishes, as cosockets are.

Loaded by ngx.lua with the private API (`internal`).
]]

local internal = ...
local wbproto = require("resty.websocket.protocol")

local new_tab = wbproto.new_tab
local _recv_frame = wbproto.recv_frame
local _send_frame = wbproto.send_frame
local new_sock = internal.new_sock
local prim, sched = internal.prim, internal.sched
local type, setmetatable, char, tointeger, tostring, ipairs, pairs =
  type, setmetatable, string.char, math.tointeger, tostring, ipairs, pairs
local match, co_running = string.match, coroutine.running

local _M = new_tab(0, 13)
_M._VERSION = "0.10"

local mt = { __index = _M }

--- client:new(opts) / client.new(opts): a client object (not connected yet). Options: timeout
--- (ms, connect and read timeout; default 60000), max_payload_len (default 65535),
--- max_recv_len, max_send_len, send_unmasked (ignored).
function _M.new(self, opts)
  if self ~= _M then opts = self end
  local max_payload_len, send_unmasked, timeout, max_recv_len, max_send_len
  if opts then
    max_payload_len = opts.max_payload_len
    send_unmasked = opts.send_unmasked
    timeout = opts.timeout
    max_recv_len = opts.max_recv_len
    max_send_len = opts.max_send_len
  end
  return setmetatable({
    timeout = timeout,
    max_payload_len = max_payload_len or 65535,
    max_recv_len = max_recv_len,
    max_send_len = max_send_len,
    send_unmasked = send_unmasked,
  }, mt)
end

--- wb:connect(uri [, opts]): 1, or nil and an error ("bad websocket uri", "failed to connect:
--- connection refused", "custom headers must be a table", ...). Yields until the opening
--- handshake is done. opts: protocols (a string or a list), origin, headers (a list of
--- "Name: value" strings, or a table of names to values), ssl_verify, server_name (ignored),
--- pool (ignored).
function _M.connect(self, uri, opts)
  if type(uri) ~= "string" or not match(uri, "^wss?://[^:/]+") then
    return nil, "bad websocket uri"
  end
  local options = { timeout = self.timeout or 60000 }
  if opts then
    local protos = opts.protocols
    if type(protos) == "table" then
      local list = {}
      for i, p in ipairs(protos) do list[i] = tostring(p) end
      options.protocols = list
    elseif protos then
      options.protocols = { tostring(protos) }
    end
    if opts.origin then options.origin = tostring(opts.origin) end
    if opts.headers then
      local headers = opts.headers
      if type(headers) ~= "table" then return nil, "custom headers must be a table" end
      local map = {}
      for k, v in pairs(headers) do
        if type(k) == "number" then
          local name, value = match(tostring(v), "^%s*([^:%s]+)%s*:%s*(.-)%s*$")
          if name then map[name] = value end
        else
          map[tostring(k)] = tostring(v)
        end
      end
      options.headers = map
    end
    if opts.ssl_verify then options.ssl_verify = true end
  end

  local co, main = co_running()
  if main then error("no request found", 2) end
  if self.sock then prim.close_client(self.sock.h) end
  self.sock, self.fatal, self.closed = nil, nil, nil

  local conn = internal.current()
  local h, err = prim.connect(uri, options, conn and conn.h or nil, function(ok, reason)
    sched.wakeup(co, ok, reason)
  end)
  if not h then return nil, err end
  sched.open_socket(h)
  if conn then
    local clients = conn.clients
    if clients == nil then
      clients = {}
      conn.clients = clients
    end
    clients[#clients + 1] = h
  end
  local ok, reason = sched.wait()
  if not ok then
    sched.forget_socket(h)
    return nil, reason
  end
  local sock = new_sock(h, true)
  if self.timeout then sock:settimeout(self.timeout) end
  self.sock = sock
  return 1
end

--- wb:set_timeout(ms): the read timeout of recv_frame.
function _M.set_timeout(self, time)
  self.timeout = time
  local sock = self.sock
  if not sock then return nil, nil, "not initialized yet" end
  return sock:settimeout(time)
end

--- wb:recv_frame(): data, typ, err, as on the server side.
function _M.recv_frame(self)
  if self.fatal then return nil, nil, "fatal error already happened" end
  local sock = self.sock
  if not sock then return nil, nil, "not initialized yet" end
  local data, typ, err = _recv_frame(sock, self.max_recv_len or self.max_payload_len, false)
  if not data and not err:find(": timeout", 1, true) then self.fatal = true end
  return data, typ, err
end

local function send_frame(self, fin, opcode, payload)
  if self.fatal then return nil, "fatal error already happened" end
  if self.closed then return nil, "already closed" end
  local sock = self.sock
  if not sock then return nil, "not initialized yet" end
  local bytes, err, refused = _send_frame(sock, fin, opcode, payload,
    self.max_send_len or self.max_payload_len, true)
  if not bytes and not refused then self.fatal = true end
  return bytes, err
end
_M.send_frame = send_frame

function _M.send_text(self, data)
  return send_frame(self, true, 0x1, data)
end

function _M.send_binary(self, data)
  return send_frame(self, true, 0x2, data)
end

local function send_close(self, code, msg)
  local payload
  if code then
    local c = tointeger(code)
    if type(code) ~= "number" or c == nil or code > 0x7fff or c < 0 then
      return nil, "bad status code"
    end
    payload = char((c >> 8) & 0xff, c & 0xff) .. (msg or "")
  end
  local bytes, err, refused = nil, nil, nil
  if self.fatal then
    return nil, "fatal error already happened"
  end
  if self.closed then return nil, "already closed" end
  local sock = self.sock
  if not sock then return nil, "not initialized yet" end
  bytes, err, refused = _send_frame(sock, true, 0x8, payload, self.max_send_len or self.max_payload_len, true)
  if refused then return nil, err end
  if not bytes then self.fatal = true end
  self.closed = true
  return bytes, err
end
_M.send_close = send_close

function _M.send_ping(self, data)
  return send_frame(self, true, 0x9, data)
end

function _M.send_pong(self, data)
  return send_frame(self, true, 0xa, data)
end

--- wb:close(): sends a close frame if none was sent yet; 1, or nil and an error.
function _M.close(self)
  if self.fatal then return nil, "fatal error already happened" end
  local sock = self.sock
  if not sock then return nil, "not initialized" end
  if not self.closed then
    local bytes, err = send_close(self)
    if not bytes then return nil, "failed to send close frame: " .. err end
  end
  prim.close_client(sock.h)
  return 1
end

--- wb:set_keepalive(): there is no connection pool; closes like close().
function _M.set_keepalive(self)
  local sock = self.sock
  if not sock then return nil, "not initialized" end
  return _M.close(self)
end

return _M
