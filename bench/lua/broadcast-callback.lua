-- Benchmark: the callback-style broadcast (WebSocketServer's main/_sendAll): every message goes
-- to every connected client, the sender too.
function main(clientId, message, is_binary)
  if is_binary then _sendAllBinary(message) else _sendAll(message) end
end
