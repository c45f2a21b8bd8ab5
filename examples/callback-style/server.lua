-- A small chat room in the callback style of WebSocketServer (the C++ server that runs Lua
-- scripts): the server calls the script's global functions on each event, and the script
-- answers with _send / _sendAll.
--
--   moonsocket serve examples/callback-style/server.lua --static examples/callback-style/public
--
-- WebSocketServer's hooks:        on_connect(clientId), main(clientId, message), on_disconnect(clientId)
-- and its two functions:          _send(clientId, message), _sendAll(message)
-- moonsocket adds (among others): _getClientInfo(clientId), _clients(), _close(clientId, code, reason)
-- Client ids are integers, the lowest free one from 0, reused after a client leaves.
-- Messages are plain text both ways.

-- Gets called when a client connects
function on_connect(clientId)
  _sendAll("ClientID " .. clientId .. " just joined the server")
  _send(clientId, "Welcome, you are ClientID " .. clientId .. "; " .. #_clients() .. " client(s) online")
end

-- Gets called when a message is received
function main(clientId, message)
  if message == "/who" then
    -- Only to the one who asked.
    local ids = _clients()
    table.sort(ids)
    return _send(clientId, "Online: ClientID " .. table.concat(ids, ", ClientID "))
  end
  _sendAll("ClientID " .. clientId .. ": " .. message)
end

-- Gets called when a client disconnects
function on_disconnect(clientId)
  _sendAll("ClientID " .. clientId .. " left")
end
