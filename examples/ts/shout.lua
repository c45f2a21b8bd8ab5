-- The Lua half of lua-and-hooks.ts: WebSocketServer's callback style.
function main(clientId, message)
  _send(clientId, string.upper(message))
end
