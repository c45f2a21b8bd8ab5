#!/usr/bin/env node
/**
 * The JavaScript cost of one echoed message at depth 1, without the kernel: a server client
 * whose socket is a stand-in that swallows writes, fed one masked 64-byte text frame per
 * "read", its `onMessage` hook sending the message back. Reports ns per message (CPU time),
 * median of several rounds. For A/B work on the read → parse → deliver → frame → write path.
 *
 *   node bench/echo-path-micro.mjs [--dist dist] [--messages 2000000] [--size 64] [--rounds 5]
 *                                  [--per-read 1]
 *
 * `--per-read 16` puts 16 frames in each read, as pipelining (wsload `-p 16`) does.
 */
import { EventEmitter } from "node:events";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    dist: { type: "string", default: "dist" },
    messages: { type: "string", default: "2000000" },
    size: { type: "string", default: "64" },
    rounds: { type: "string", default: "5" },
    "per-read": { type: "string", default: "1" },
  },
});
const lib = await import(pathToFileURL(resolve(values.dist, "src/index.js")).href);

/** Enough of net.Socket for the transport: writes are counted and dropped. */
class FakeSocket extends EventEmitter {
  writableLength = 0;
  destroyed = false;
  bytes = 0;
  remoteAddress = "127.0.0.1";
  remotePort = 1;
  writable = true;
  setNoDelay() {}
  cork() {}
  uncork() {}
  pause() {}
  resume() {}
  isPaused() {
    return false;
  }
  end() {}
  destroy() {}
  write(chunk, cb) {
    this.bytes += chunk.length;
    if (typeof cb === "function") cb();
    return true;
  }
}

const size = Number(values.size);
const mask = Buffer.from([1, 2, 3, 4]);
const frame = Buffer.alloc(2 + (size < 126 ? 0 : 2) + 4 + size);
frame[0] = 0x81;
let p = 2;
if (size < 126) frame[1] = 0x80 | size;
else {
  frame[1] = 0x80 | 126;
  frame.writeUInt16BE(size, 2);
  p = 4;
}
mask.copy(frame, p);
for (let i = 0; i < size; i++) frame[p + 4 + i] = 0x61 ^ mask[i % 4];

const server = new lib.WebSocketServer({
  noServer: true,
  logger: lib.createLogger({ level: "error" }),
});
server.addHooks({ onMessage: (client, data, isBinary) => client.send(data, isBinary) });
const socket = new FakeSocket();
const head = "GET / HTTP/1.1\r\n";
const req = Object.assign(new EventEmitter(), {
  method: "GET",
  httpVersion: "1.1",
  url: "/",
  headers: {
    host: "x",
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": "13",
  },
  rawHeaders: [],
  socket,
});
void head;
const client = server.handleUpgrade(req, socket, Buffer.alloc(0));
if (client === null) throw new Error("upgrade refused");

const perRead = Number(values["per-read"]);
const read = Buffer.concat(new Array(perRead).fill(frame));
const n = Math.floor(Number(values.messages) / perRead) * perRead;
const results = [];
for (let round = 0; round < Number(values.rounds); round++) {
  const start = process.cpuUsage();
  for (let i = 0; i < n; i += perRead) socket.emit("data", Buffer.from(read));
  const used = process.cpuUsage(start);
  results.push(((used.user + used.system) * 1000) / n);
}
results.sort((a, b) => a - b);
console.log(
  `${values.dist}: ${results[Math.floor(results.length / 2)].toFixed(0)} ns per message (rounds: ${results.map((r) => r.toFixed(0)).join(" ")})`,
);
process.exit(0);
