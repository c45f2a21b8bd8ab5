-- The coroutine style's network modules: `silly.net.http` (a server whose handler runs per
-- request in its own task) and `silly.net.websocket` (upgrade a request, or connect to a
-- ws:// or wss:// server; read and write whole messages). The sockets themselves live in the
-- host (coroutine-style.ts), and so do their events (messages, close, the result of a listen
-- or connect), in the inboxes every coroutine style shares (host/socket-inboxes.ts): a task
-- takes them one at a time with next_event, and is parked when there is none; the host then
-- resumes it with the next event as the resume values.
--
-- Called as a chunk with the host primitives, after silly.lua. Returns on_request, the
-- function the host calls for each request.
local H = ...

local R = require "moonsocket.silly"
local sched = require "moonsocket.scheduler"

local type, tostring, pairs, ipairs, error = type, tostring, pairs, ipairs, error
local setmetatable, getmetatable = setmetatable, getmetatable
local sub, concat, tointeger = string.sub, table.concat, math.tointeger
local co_running, co_yield, co_yieldable, co_status =
  coroutine.running, coroutine.yield, coroutine.isyieldable, coroutine.status
local task_status = R.status
local spawn, task_context = sched.spawn, sched.context

-- Event kinds the host delivers besides the frame opcodes (1 text, 2 binary, 8 close,
-- 9 ping, 10 pong) and -1 (the connection is gone).
local K_OK <const> = 100
local K_FAIL <const> = 101

local frame_type = { [0] = "continuation", [1] = "text", [2] = "binary", [8] = "close", [9] = "ping", [10] = "pong" }
local frame_op = { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }

local CONTROL_TOO_LONG <const> = "all control frames MUST have a payload length of 125 bytes or less"
local SOCKET_CLOSED <const> = "socket closed"
local END_OF_FILE <const> = "end of file"

-- The task parked reading each handle (the scheduler's; cleared by the wake that resumes it).
local readers = sched.readers
local inbox_take, inbox_close, ws_send = sched.inbox_take, H.inbox_close, H.ws_send

-- The next event of handle h: kind, data (kind -1 once the handle is gone). Blocks the task
-- while the host has none; the host then resumes it with the event.
-- Keep the frames below the yield thin: a coroutine starts with 40 stack slots, a C function
-- such as coroutine.yield needs 20 free ones above it, and once a call needs more Lua doubles
-- the stack for good (+0.7 KB for every idle connection). Hence few registers here, a tail
-- call from sock:read to read_next, and run_handler's thin frame.
local function next_event(h)
  local kind, data = inbox_take(h)
  if kind ~= nil then return kind, data end
  if not co_yieldable() then error("this call blocks: run it inside a task (task.fork)", 3) end
  local co = co_running()
  do
    -- One reader at a time, as silly asserts: a second one would leave the first asleep.
    local reader = readers[h]
    if reader ~= nil and reader ~= co and co_status(reader) ~= "dead" then
      error("socket is already being read by another task", 3)
    end
  end
  repeat
    readers[h] = co
    task_status[co] = "WAIT"
    kind, data = co_yield()
    task_status[co] = "RUN"
    -- Woken by anything but the host's wake (which clears readers[h]): ask again.
    if readers[h] == co then kind, data = inbox_take(h) end
  until kind ~= nil
  return kind, data
end

-- An upgrade request's `stream.header` stays in the host until the script reads it (a table
-- per idle WebSocket would be most of its Lua memory): made here on first use, or when the
-- connection ends while the stream may still be referenced.
local function settle_header(stream)
  if type(stream) ~= "table" then return nil end
  local header = rawget(stream, "header")
  if header ~= nil then return header end
  local conn = rawget(stream, "conn")
  if type(conn) ~= "table" then return nil end
  header = H.http_header(conn.fd)
  if header ~= nil then rawset(stream, "header", header) end
  return header
end

---------------------------------------------------------------------------------------------
-- Connection objects (`stream.conn`, `sock.conn`): the transport under a stream or socket.

local conn_methods = {}
local conn_mt = { __index = conn_methods }

local function newconn(h, remoteaddr)
  return setmetatable({ fd = h, remoteaddr = remoteaddr }, conn_mt)
end

--- True while the connection is open.
function conn_methods.isalive(conn)
  return H.conn_alive(conn.fd)
end

--- Bytes queued and not yet sent.
function conn_methods.unsentbytes(conn)
  return H.conn_unsent(conn.fd)
end

---------------------------------------------------------------------------------------------
-- WebSocket sockets.

local sock_methods = {}
local sock_mt = {
  __index = sock_methods,
  __close = function(sock) sock_methods.close(sock) end,
}

-- Sockets the script may still use, and weak references to their objects: a socket whose
-- object was collected while open can never be read or written again, so it is closed (the
-- sandbox has no __gc; a periodic look at the weak table does the job).
local open_socks = {}
local sock_refs = setmetatable({}, { __mode = "v" })
local since_collect = 0

local function collect_garbage()
  since_collect = since_collect + 1
  if since_collect < 32 then return end
  since_collect = 0
  for h in pairs(open_socks) do
    if sock_refs[h] == nil then
      open_socks[h] = nil
      H.ws_collected(h)
    end
  end
end

local function newsocket(h, stream, conn)
  -- Three fields (four slots, with room for _err): closed is `conn == nil`.
  local sock = setmetatable({ conn = conn, stream = stream, _h = h }, sock_mt)
  open_socks[h] = true
  sock_refs[h] = sock
  return sock
end

-- What a read returns for event (kind, data) of socket sock.
local function read_result(sock, kind, data)
  if kind == 1 or kind == 2 then return data, frame_type[kind] end
  if kind == -1 or kind == K_FAIL then
    local h = sock._h
    local err = kind == K_FAIL and tostring(data) or END_OF_FILE
    sock._err = err
    open_socks[h] = nil
    settle_header(sock.stream)
    inbox_close(h)
    return nil, err, ""
  end
  return data, frame_type[kind]
end

-- A read: the next event from the host, waiting for one. Reached by a tail call from read,
-- and with one register below the call, so that a task parked here fits in its coroutine's
-- initial stack (see next_event).
local function read_next(sock)
  do
    local err = sock._err
    if err then return nil, err, "" end
  end
  local kind, data = next_event(sock._h)
  if sock.conn == nil then return nil, SOCKET_CLOSED, "" end
  return read_result(sock, kind, data)
end

--- Next whole message: data, type ("text", "binary", "ping", "pong", "close"), or
--- nil, err, "" once the connection is closed or failed.
function sock_methods.read(sock)
  if sock.conn == nil then return nil, SOCKET_CLOSED, "" end
  return read_next(sock)
end

--- Sends one message (type "text", "binary" (default), "ping", "pong" or "close"):
--- true, or false, err.
function sock_methods.write(sock, data, typ)
  local op = frame_op[typ or "binary"]
  if op == nil then
    error("bad argument #2 to 'write' (frame type expected, got " .. tostring(typ) .. ")", 2)
  end
  local t = type(data)
  if t ~= "string" then
    if data == nil then
      data = ""
    elseif t == "number" then
      data = tostring(data)
    else
      error("bad argument #1 to 'write' (string expected, got " .. t .. ")", 2)
    end
  end
  if op >= 8 and #data > 125 then return false, CONTROL_TOO_LONG end
  if sock.conn == nil then return false, SOCKET_CLOSED end
  return ws_send(sock._h, op, data)
end

--- Starts the close handshake (code 1000). The socket cannot be used afterwards.
function sock_methods.close(sock)
  if sock.conn == nil then return false, SOCKET_CLOSED end
  sock.conn = nil
  local h = sock._h
  -- The host wakes a task still blocked reading this socket (it reads "socket closed").
  local ok, err = H.ws_close(h)
  open_socks[h] = nil
  settle_header(sock.stream)
  return ok, err
end

---------------------------------------------------------------------------------------------
-- HTTP streams.

local stream_methods = {}

-- What a stream reads that is not in its table: the fields most requests share (GET, the HTTP
-- version, the scheme), kept once per combination in its metatable, so that a WebSocket's
-- stream is a table of four slots; the lazy header and query; the methods.
local function stream_index(shared)
  return function(stream, key)
    local value = shared[key]
    if value ~= nil then return value end
    if key == "header" then return settle_header(stream) end
    if key == "query" then
      -- A request without a query string gets its (empty) table when the script looks.
      local query = {}
      rawset(stream, "query", query)
      return query
    end
    return stream_methods[key]
  end
end

-- Stream metatables by shared fields (a handful: the method is shared only when it is GET, the
-- version and scheme come from the host), and the set of them for upgrade's check.
local stream_mts, is_stream_mt = {}, {}

local function stream_mt_for(method, version, scheme)
  local get = method == "GET"
  local key = (get and "GET " or "") .. tostring(version) .. " " .. tostring(scheme)
  local mt = stream_mts[key]
  if mt == nil then
    mt = { __index = stream_index({ method = get and method or nil, version = version, scheme = scheme }) }
    stream_mts[key] = mt
    is_stream_mt[mt] = true
  end
  return mt
end

--- Sets the status and headers of the response (sent with the first write or close).
--- With `close` true the response ends at once, without a body.
function stream_methods.respond(stream, status, header, close)
  if type(status) ~= "number" then
    error("bad argument #1 to 'respond' (number expected, got " .. type(status) .. ")", 2)
  end
  local code = tointeger(status)
  if code == nil or code < 100 or code > 999 then
    error("bad argument #1 to 'respond' (HTTP status expected (100..999))", 2)
  end
  if header ~= nil and type(header) ~= "table" then
    error("bad argument #2 to 'respond' (table expected, got " .. type(header) .. ")", 2)
  end
  local h = stream.conn.fd
  local ok, err = H.http_respond(h, status, header)
  if ok and close then H.http_close(h) end
  return ok, err
end

--- Writes part of the response body: true, or false, err.
function stream_methods.write(stream, data)
  if type(data) == "number" then data = tostring(data) end
  if type(data) ~= "string" then
    error("bad argument #1 to 'write' (string expected, got " .. type(data) .. ")", 2)
  end
  return H.http_write(stream.conn.fd, data)
end

--- Ends the response, after writing `body` if given.
function stream_methods.closewrite(stream, body)
  if body ~= nil and type(body) ~= "string" then body = tostring(body) end
  H.http_close(stream.conn.fd, body)
end
-- The reference document's spelling.
stream_methods.close = stream_methods.closewrite

--- Nothing to do: the host writes as soon as it can.
function stream_methods.flush(stream)
  return true
end

--- The whole request body: data (with "end of file" as second value when it is empty).
function stream_methods.readall(stream)
  local body = stream._body or ""
  local rest = sub(body, stream._pos or 1)
  stream._pos = #body + 1
  if #rest == 0 then return "", END_OF_FILE end
  return rest, nil
end

--- The next `size` bytes of the request body (fewer at its end); "", "end of file" after it.
function stream_methods.read(stream, size)
  local body = stream._body or ""
  local pos = stream._pos or 1
  if pos > #body then return "", END_OF_FILE end
  size = size or (#body - pos + 1)
  local data = sub(body, pos, pos + size - 1)
  stream._pos = pos + #data
  return data, nil
end

---------------------------------------------------------------------------------------------
-- silly.net.http

local handlers = {}
local listener_methods = {}
local listener_mt = { __index = listener_methods }

--- Stops accepting connections on this listener.
function listener_methods.close(listener)
  if handlers[listener.fd] == nil then return false, SOCKET_CLOSED end
  handlers[listener.fd] = nil
  H.http_close_listener(listener.fd)
  return true
end

local http = {}

--- Starts an HTTP (or, with certs, HTTPS) server: listener, or nil, err.
--- conf: addr (":8080" or "IP:PORT"), handler(stream), tls, certs = {{cert = PEM, key = PEM}}.
function http.listen(conf)
  if type(conf) ~= "table" then
    error("bad argument #1 to 'listen' (table expected, got " .. type(conf) .. ")", 2)
  end
  if type(conf.addr) ~= "string" then error("http.listen missing addr", 2) end
  if type(conf.handler) ~= "function" then error("http.listen missing handler", 2) end
  local certs
  if conf.certs ~= nil then
    if type(conf.certs) ~= "table" then error("http.listen certs must be a list of {cert, key}", 2) end
    certs = {}
    for i, c in ipairs(conf.certs) do
      certs[i] = { cert = c.cert, key = c.key or c.cert_key }
    end
  end
  local id, pending, addr = H.http_listen({ addr = conf.addr, tls = conf.tls and true or false, certs = certs })
  if not id then return nil, pending end
  handlers[id] = conf.handler
  local listener = setmetatable({ fd = id, addr = addr or conf.addr }, listener_mt)
  if pending then
    -- Opened after startup: wait until the port is bound (or refused).
    local kind, data = next_event(id)
    inbox_close(id)
    if kind ~= K_OK then
      handlers[id] = nil
      return nil, data
    end
    listener.addr = data
  end
  return listener
end

-- A request's task. Its handle is the task's context. No local below the call to the
-- handler and no vararg frame: a WebSocket handler parked in sock:read() then keeps its
-- coroutine's initial stack (see next_event).
local function run_handler(handler, stream)
  task_status[co_running()] = "RUN"
  handler(stream)
  local co = co_running()
  task_status[co] = nil
  local h = task_context(co)
  -- No open WebSocket keeps the request's headers in the host past this point.
  if not open_socks[h] then settle_header(stream) end
  H.http_done(h)
end

--- Host entry: a request arrived on listener `id`; runs its handler in a new task whose
--- context is the request's handle, so an error there closes that connection only. The
--- request comes as arguments, not as a table: nothing to collect afterwards.
local function on_request(id, h, method, path, query, header, version, remoteaddr, scheme, body)
  collect_garbage()
  local handler = handlers[id]
  if handler == nil then return false end
  -- Three fields (four slots) for a WebSocket's request, which lives as long as the connection:
  -- the handle is stream.conn.fd, the shared fields are in the metatable, and the method (when
  -- not GET), query, header and body (_body, read from _pos) only when the request has them.
  local stream = setmetatable({
    path = path,
    remoteaddr = remoteaddr,
    conn = newconn(h, remoteaddr),
  }, stream_mt_for(method, version, scheme))
  if method ~= "GET" then stream.method = method end
  if query then stream.query = query end
  if header then stream.header = header end
  if body then stream._body = body end
  task_status[spawn(run_handler, h, handler, stream)] = "READY"
  return true
end

---------------------------------------------------------------------------------------------
-- silly.net.websocket

local websocket = {}

local function header_value(header, name)
  local v = header[name]
  if type(v) == "table" then v = concat(v, ", ") end
  return v
end

-- Answers a request that cannot be upgraded with 400: nil, err.
local function refuse(stream, err)
  stream:respond(400, {})
  stream:closewrite()
  return nil, err
end

--- Upgrades a request stream to a WebSocket: sock, or nil, err (the request is answered
--- with an HTTP error then). The header checks run in the host: the sandbox's string
--- functions are Lua code, and a call chain that deep would double the stack the handler's
--- task keeps for the whole connection (see next_event).
function websocket.upgrade(stream)
  if type(stream) ~= "table" or not is_stream_mt[getmetatable(stream)] then
    error("bad argument #1 to 'upgrade' (http stream expected)", 2)
  end
  if stream.method ~= "GET" then return refuse(stream, "method not GET") end
  local h = stream.conn.fd
  local header = rawget(stream, "header")
  if header == nil then
    -- Still in the host (see settle_header): checked there, without making the table.
    local problem = H.upgrade_request_problem(h)
    if problem then return refuse(stream, problem) end
  else
    if type(header) ~= "table" then return refuse(stream, "header not found") end
    local problem = H.upgrade_problem(header_value(header, "upgrade"), header_value(header, "connection"))
    if problem then return refuse(stream, problem) end
    if not header["sec-websocket-key"] then return refuse(stream, "sec-websocket-key not found") end
  end
  local ok, err = H.ws_accept(h)
  if not ok then return nil, err end
  return newsocket(h, stream, stream.conn)
end

--- Connects to a ws:// or wss:// URL (blocks the task until done): sock, or nil, err.
function websocket.connect(url, header)
  if type(url) ~= "string" then
    error("bad argument #1 to 'connect' (string expected, got " .. type(url) .. ")", 2)
  end
  if header ~= nil and type(header) ~= "table" then
    error("bad argument #2 to 'connect' (table expected, got " .. type(header) .. ")", 2)
  end
  collect_garbage()
  local fields = {}
  for k, v in pairs(header or {}) do
    if type(v) == "table" then v = concat(v, ", ") end
    fields[tostring(k)] = tostring(v)
  end
  local h, err = H.ws_connect(url, fields)
  if not h then return nil, err end
  local kind, data = next_event(h)
  if kind ~= K_OK then
    inbox_close(h)
    return nil, kind == K_FAIL and tostring(data) or "connection closed"
  end
  local path = url:match("^%a+://[^/?#]*([^#]*)") or "/"
  if path == "" then path = "/" end
  local stream = {
    status = 101,
    method = "GET",
    path = path,
    version = "HTTP/1.1",
    scheme = url:match("^(%a+)://"),
    header = { ["sec-websocket-protocol"] = data ~= "" and data or nil },
  }
  return newsocket(h, stream, newconn(h, url:match("^%a+://([^/?#]*)")))
end

package.preload["silly.net.http"] = function() return http end
package.preload["silly.net.websocket"] = function() return websocket end

return on_request
