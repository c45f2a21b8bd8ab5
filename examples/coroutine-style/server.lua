-- A broadcast room in the coroutine style of the silly framework: blocking calls in
-- coroutines (tasks). Like silly's broadcast example: one task per connection reads its
-- socket, and a broadcast task takes messages from a channel and writes them to every socket.
--
--   moonsocket serve examples/coroutine-style/server.lua --static examples/coroutine-style/public
--
-- A silly script opens its own listener with http.listen, so the port is the one in `addr`
-- below (":8085": port 8085 on --host, 127.0.0.1 by default); an explicit `--port N` on the
-- command line replaces it. Every HTTP request runs `handler(stream)` in its own task: this
-- one upgrades requests to /ws and returns without answering the others, which then get the
-- static files of --static (or 404).
local silly = require "silly"
local task = require "silly.task"
local http = require "silly.net.http"
local websocket = require "silly.net.websocket"
local channel = require "silly.sync.channel"
local logger = require "silly.logger"

local clients = {}               -- the open sockets
local broadcast_chan = channel.new()
local joined = 0                 -- a number for each visitor

-- The broadcast task: blocks in recv() until a message arrives, then writes its text to
-- everyone (except the socket in `except`, if any).
task.fork(function()
  while true do
    local message = broadcast_chan:recv()
    for _, sock in ipairs(clients) do
      if sock ~= message.except then sock:write(message.text, "text") end
    end
  end
end)

-- One task per connection: blocks in sock:read() until the next message.
local function serve(sock)
  joined = joined + 1
  local name = "guest" .. joined
  table.insert(clients, sock)
  logger.info(name, "connected;", #clients, "online")
  sock:write("you are " .. name, "text")
  broadcast_chan:send({ text = name .. " joined", except = sock })  -- the newcomer knows
  while true do
    local data, typ = sock:read()
    if not data or typ == "close" then break end
    if typ == "text" then
      broadcast_chan:send({ text = name .. ": " .. data })
    elseif typ == "ping" then
      sock:write(data, "pong")
    end
  end
  for i, v in ipairs(clients) do
    if v == sock then
      table.remove(clients, i)
      break
    end
  end
  sock:close()
  logger.info(name, "left;", #clients, "online")
  broadcast_chan:send({ text = name .. " left" })
end

task.fork(function()
  local server, err = http.listen {
    addr = ":8085",
    handler = function(stream)
      if stream.path == "/ws" and (stream.header["upgrade"] or ""):lower() == "websocket" then
        local sock, uerr = websocket.upgrade(stream)
        if not sock then
          logger.warn("upgrade failed:", uerr)
          return
        end
        serve(sock)
      end
      -- Anything else: return without answering; the static files answer it.
    end,
  }
  if not server then
    logger.error("listen failed:", err)
    return
  end
  logger.info("broadcast room listening on", server.addr or ":8085")
end)
