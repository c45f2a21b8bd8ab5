-- Benchmark: the coroutine-style (silly) echo; the port comes from serve's --port.
local task = require "silly.task"
local http = require "silly.net.http"
local websocket = require "silly.net.websocket"

task.fork(function()
  http.listen {
    addr = ":8085",
    handler = function(stream)
      local sock = websocket.upgrade(stream)
      if not sock then return end
      while true do
        local data, typ = sock:read()
        if not data or typ == "close" then break end
        if typ == "text" or typ == "binary" then sock:write(data, typ) end
      end
      sock:close()
    end,
  }
end)
