#!/usr/bin/env node
/**
 * The reference echo server for the benchmarks: plain `ws`, no compression, every message sent
 * back as received (text stays text, binary stays binary). With --broadcast, every message goes
 * to every open client instead (the sender too), by the loop over `wss.clients` that ws's own
 * README shows for broadcasting.
 *
 *   node bench/ws-echo-server.mjs [--port 8086] [--host 127.0.0.1] [--broadcast]
 *
 * `ws` loads the native `bufferutil` (masking) when it is installed; set WS_NO_BUFFER_UTIL=1 to
 * measure the pure-JavaScript path. The banner says which one is in use, so a run records it.
 * SIGTERM and SIGINT close the server and exit.
 */
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { WebSocket, WebSocketServer } from "ws";

const MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8086" },
    host: { type: "string", default: "127.0.0.1" },
    broadcast: { type: "boolean", default: false },
  },
});

const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(
    `ws-echo-server: --port must be an integer from 0 to 65535, got '${values.port}'\n`,
  );
  process.exit(2);
}

/** Which masking code `ws` uses: mirrors the test in ws/lib/buffer-util.js. */
function describeBufferUtil() {
  if (process.env.WS_NO_BUFFER_UTIL) return "off (WS_NO_BUFFER_UTIL)";
  try {
    const require = createRequire(import.meta.url);
    const bufferUtil = require("bufferutil");
    return String(bufferUtil.mask).includes("[native code]") ? "native" : "fallback (JavaScript)";
  } catch {
    return "not installed";
  }
}

const wss = new WebSocketServer({
  port,
  host: values.host,
  perMessageDeflate: false,
  maxPayload: MAX_PAYLOAD_BYTES,
});

function broadcast(data, isBinary) {
  for (const client of wss.clients) {
    if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
  }
}

wss.on("connection", (ws) => {
  if (values.broadcast) ws.on("message", broadcast);
  else ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  // A peer that resets the connection must not take the benchmark server down.
  ws.on("error", () => {});
});

wss.on("listening", () => {
  const address = wss.address();
  process.stdout.write(
    `ws ${values.broadcast ? "broadcast" : "echo"} listening on ws://${address.address}:${address.port}/ (bufferutil: ${describeBufferUtil()})\n`,
  );
});

wss.on("error", (error) => {
  process.stderr.write(`ws-echo-server: ${error.message}\n`);
  process.exit(1);
});

function stop() {
  for (const client of wss.clients) client.terminate();
  wss.close(() => process.exit(0));
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
