-- An echo and broadcast room in the OpenResty style: lua-resty-websocket's
-- resty.websocket.server, as in a `content_by_lua_file` handler.
--
--   moonsocket serve examples/openresty-style/server.lua --static examples/openresty-style/public
--
-- As under nginx, this file runs once per WebSocket connection (in its own coroutine), so
-- `wb` below is this connection's. Plain HTTP requests never reach it: moonsocket serves
-- them from --static. Shared state lives in modules or ngx.shared; as a convenience for the
-- tutorials' scripts, a top-level line `local NAME = {}` at column 0 is one table shared by
-- every connection: `clients` below holds every connection's `wb`.
--
-- Each text frame is echoed to its sender ("echo: ...") and broadcast to the others
-- ("#N: ..."). Pings, pongs, timeouts and the close handshake are the script's job, as in
-- OpenResty.
local websocket = require("resty.websocket.server")
local clients = {}

local counter = ngx.shared.room   -- a shared dictionary: connection numbers
local n = counter:incr("connections", 1, 0)

local wb, err = websocket:new{
    timeout = 30000,          -- recv_frame gives up after 30 s of silence (not fatal)
    max_payload_len = 65535,
}
if not wb then
    ngx.log(ngx.ERR, "failed to create websocket: ", err)
    return ngx.exit(444)
end

clients[n] = wb
ngx.log(ngx.INFO, "connection #", n, " from ", ngx.var.remote_addr, " opened")

local function broadcast(message)
    for id, client in pairs(clients) do
        if id ~= n then
            local bytes, send_err = client:send_text(message)
            if not bytes then
                ngx.log(ngx.WARN, "failed to send to #", id, ": ", send_err)
            end
        end
    end
end

wb:send_text("welcome, you are #" .. n)
broadcast("#" .. n .. " joined")

while true do
    local data, typ, recv_err = wb:recv_frame()
    if not data then
        if recv_err and recv_err:find("timeout", 1, true) and not wb.fatal then
            wb:send_ping("still there?")  -- idle: check the peer is alive, then read on
        else
            ngx.log(ngx.INFO, "connection #", n, ": failed to receive frame: ", recv_err)
            break
        end
    elseif typ == "close" then
        -- Answer the client's close frame (recv_err holds its status code, if any).
        if recv_err then wb:send_close(recv_err, "bye") else wb:send_close() end
        break
    elseif typ == "ping" then
        wb:send_pong(data)
    elseif typ == "text" then
        ngx.log(ngx.INFO, "connection #", n, " says: ", data)
        wb:send_text("echo: " .. data)
        broadcast("#" .. n .. ": " .. data)
    end
end

clients[n] = nil
broadcast("#" .. n .. " left")
ngx.log(ngx.INFO, "connection #", n, " closed")
