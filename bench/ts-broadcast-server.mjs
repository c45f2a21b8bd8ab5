#!/usr/bin/env node
/**
 * moonsocket's TypeScript API as a broadcast server: every message goes to every connected
 * client (the sender too) through `server.broadcast`, which frames it once for all receivers.
 * Runs the built library (`npx tsc -b` first).
 *
 *   node bench/ts-broadcast-server.mjs [--port 8088] [--host 127.0.0.1] [--max-connections 20000]
 *
 * SIGTERM and SIGINT close the server (clients get 1001) and exit.
 */
import { parseArgs } from "node:util";
import { createLogger, WebSocketServer } from "../dist/src/index.js";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8088" },
    host: { type: "string", default: "127.0.0.1" },
    "max-connections": { type: "string", default: "20000" },
  },
});

function integerOption(name, min, max) {
  const value = Number(values[name]);
  if (!Number.isInteger(value) || value < min || value > max) {
    process.stderr.write(
      `ts-broadcast-server: --${name} must be an integer from ${min} to ${max}, got '${values[name]}'\n`,
    );
    process.exit(2);
  }
  return value;
}

const server = new WebSocketServer({
  port: integerOption("port", 0, 65535),
  host: values.host,
  maxConnections: integerOption("max-connections", 1, 1_000_000),
  logger: createLogger({ level: "warn" }),
});
server.addHooks({
  onMessage: (_client, data, isBinary) => {
    server.broadcast(data, isBinary);
  },
});

try {
  await server.listen();
} catch (error) {
  process.stderr.write(`ts-broadcast-server: ${error.message}\n`);
  process.exit(1);
}
process.stdout.write(`moonsocket TS broadcast listening on ${server.url}\n`);

function stop() {
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
