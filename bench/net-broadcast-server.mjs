#!/usr/bin/env node
/**
 * The limit for broadcast benchmarks: the least a Node.js WebSocket broadcast can do. A plain
 * `net` server that answers the HTTP upgrade, then, for each message a client sends, builds one
 * unmasked frame and writes it to every open socket (the sender too), one `write` per socket.
 * No validation beyond what the loop needs (no UTF-8 check, no limits, no timers), no
 * coalescing of several messages into one write: a WebSocket server cannot do less work per
 * delivery than this without batching.
 *
 *   node bench/net-broadcast-server.mjs [--port 8087] [--host 127.0.0.1]
 *
 * Pings are answered and a close frame is echoed, so wsload's checks pass. Not a server for
 * anything but benchmarks: it trusts its peers. SIGTERM and SIGINT close it and exit.
 */
import { createHash } from "node:crypto";
import { createServer } from "node:net";
import { parseArgs } from "node:util";

const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const HEAD_END = Buffer.from("\r\n\r\n");
/** A request head larger than this is refused (the socket is destroyed). */
const MAX_HEAD_BYTES = 16 * 1024;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8087" },
    host: { type: "string", default: "127.0.0.1" },
  },
});

const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(
    `net-broadcast-server: --port must be an integer from 0 to 65535, got '${values.port}'\n`,
  );
  process.exit(2);
}

/** Sockets past the handshake: every one of them gets every message. */
const open = new Set();

/** An unmasked frame (server to client) with FIN set. */
function buildFrame(opcode, payload) {
  const length = payload.length;
  const headerBytes = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerBytes + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = length;
  } else if (length < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  payload.copy(frame, headerBytes);
  return frame;
}

function broadcast(frame) {
  for (const socket of open) socket.write(frame);
}

/** The 101 response for a request head, or null when it has no Sec-WebSocket-Key. */
function upgradeResponse(head) {
  const key = /^sec-websocket-key:\s*(\S+)\s*$/im.exec(head)?.[1];
  if (key === undefined) return null;
  const accept = createHash("sha1")
    .update(key + WEBSOCKET_GUID)
    .digest("base64");
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`;
}

/**
 * Parses the client frames in `buffer` (masked, as RFC 6455 requires of clients), acts on each
 * complete one, and returns the bytes of an incomplete frame left at the end.
 */
function handleFrames(socket, buffer) {
  let offset = 0;
  while (buffer.length - offset >= 2) {
    const opcode = buffer[offset] & 0x0f;
    const masked = (buffer[offset + 1] & 0x80) !== 0;
    let length = buffer[offset + 1] & 0x7f;
    let headerBytes = 2;
    if (length === 126) {
      if (buffer.length - offset < 4) break;
      length = buffer.readUInt16BE(offset + 2);
      headerBytes = 4;
    } else if (length === 127) {
      if (buffer.length - offset < 10) break;
      length = Number(buffer.readBigUInt64BE(offset + 2));
      headerBytes = 10;
    }
    const maskOffset = offset + headerBytes;
    const payloadOffset = maskOffset + (masked ? 4 : 0);
    if (buffer.length < payloadOffset + length) break;
    const payload = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) {
      const byte = buffer[payloadOffset + i];
      payload[i] = masked ? byte ^ buffer[maskOffset + (i & 3)] : byte;
    }
    offset = payloadOffset + length;
    if (opcode === OPCODE_PING) {
      socket.write(buildFrame(OPCODE_PONG, payload));
    } else if (opcode === OPCODE_CLOSE) {
      open.delete(socket);
      socket.end(buildFrame(OPCODE_CLOSE, payload.subarray(0, 2)));
      return Buffer.alloc(0);
    } else if (opcode !== OPCODE_PONG) {
      // Text, binary or a continuation: relayed as it came (wsload sends unfragmented messages).
      broadcast(buildFrame(opcode, payload));
    }
  }
  return buffer.subarray(offset);
}

const server = createServer((socket) => {
  socket.setNoDelay(true);
  let pending = Buffer.alloc(0);
  let upgraded = false;
  socket.on("data", (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    if (!upgraded) {
      const end = pending.indexOf(HEAD_END);
      if (end < 0) {
        if (pending.length > MAX_HEAD_BYTES) socket.destroy();
        return;
      }
      const response = upgradeResponse(pending.toString("latin1", 0, end));
      if (response === null) {
        socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
        return;
      }
      socket.write(response);
      upgraded = true;
      open.add(socket);
      pending = pending.subarray(end + HEAD_END.length);
    }
    pending = handleFrames(socket, pending);
  });
  socket.on("close", () => open.delete(socket));
  // A peer that resets the connection must not take the benchmark server down.
  socket.on("error", () => {});
});

server.listen(port, values.host, () => {
  const address = server.address();
  process.stdout.write(
    `net broadcast loop listening on ws://${address.address}:${address.port}/\n`,
  );
});

server.on("error", (error) => {
  process.stderr.write(`net-broadcast-server: ${error.message}\n`);
  process.exit(1);
});

function stop() {
  for (const socket of open) socket.destroy();
  server.close(() => process.exit(0));
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
