-- Benchmark: the OpenResty-style echo, the tutorial's loop (recv_frame's default read timeout,
-- 60 s, outlasts every scenario); the port comes from serve's --port.
local server = require "resty.websocket.server"

local wb, err = server:new { max_payload_len = 16 * 1024 * 1024 }
if not wb then
  ngx.log(ngx.ERR, "failed to create websocket: ", err)
  return ngx.exit(444)
end

while true do
  local data, typ = wb:recv_frame()
  if not data then return ngx.exit(444) end
  if typ == "close" then break end
  if typ == "ping" then
    wb:send_pong(data)
  elseif typ == "text" then
    wb:send_text(data)
  elseif typ == "binary" then
    wb:send_binary(data)
  end
end
wb:send_close()
