#!/usr/bin/env node
/**
 * The runtime's limit for the echo benchmarks: Node's bare `net` echo (every chunk written back
 * as read). Drive it with `wsload echo --raw`, which sends masked frames and accepts them back.
 *
 *   node bench/net-echo-server.mjs [--port 8087] [--host 127.0.0.1]
 */
import { createServer } from "node:net";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8087" },
    host: { type: "string", default: "127.0.0.1" },
  },
});
const server = createServer({ noDelay: true }, (socket) => {
  socket.on("data", (chunk) => socket.write(chunk));
  socket.on("error", () => socket.destroy());
});
server.listen(Number(values.port), values.host, () => {
  const { address, port } = server.address();
  process.stdout.write(`net echo on ws://${address}:${port}/ (raw TCP)\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
