-- Benchmark: the callback-style echo (WebSocketServer's main/_send).
function main(clientId, message, is_binary)
  if is_binary then _sendBinary(clientId, message) else _send(clientId, message) end
end
