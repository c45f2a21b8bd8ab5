-- moonsocket echo: the WebSocketServer document's echo script, unchanged in spirit.
--
--   moonsocket serve examples/echo/server.lua --static examples/echo/public
--
-- Every message a client sends comes back to it prefixed with "You said: ". Any path works
-- for the WebSocket (the page connects to /echo); plain HTTP requests get the page.

-- Called when a message is received
function main(clientId, message)
  -- echo back the message
  _send(clientId, "You said: " .. message)
end
