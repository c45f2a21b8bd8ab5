/**
 * The client keeps cause and effect in order: a message that arrives together with a frame
 * breaking the protocol (even in the same TCP segment as the 101) reaches the application,
 * and the application's reply goes out before the client fails the connection. This is what
 * the Autobahn|Testsuite checks in client mode (cases 3.2–3.4, 4.1.3–4.1.5, 4.2.3–4.2.5…):
 * its fuzzing server sends a message, then a bad frame, then a ping, and expects the echo of
 * the message before the close frame.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { afterEach, describe, it } from "node:test";
import { type ClientOptions, connect, type WebSocketClient } from "../../src/client/client.js";
import { ProtocolError } from "../../src/protocol/errors.js";
import { computeAcceptKey } from "../../src/protocol/handshake.js";
import { buildFrame, closePayload, OP, Resources, withTimeout } from "../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

/** A frame the client sent, unmasked. */
interface ClientFrame {
  opcode: number;
  fin: boolean;
  payload: Buffer;
}

/** How the raw server writes its bytes; "then FIN" half-closes right after them. */
type Delivery = "one segment" | "byte by byte" | "one segment, then FIN";

/**
 * A raw server that answers the upgrade with a 101 followed by `frames`, all in one
 * `socket.write` or one byte per write. `clientFrames` resolves with every frame the client
 * sent, once its close frame arrived (or the connection ended).
 */
async function startScriptedServer(
  frames: Buffer,
  delivery: Delivery,
): Promise<{ url: string; clientFrames: Promise<ClientFrame[]> }> {
  let reportFrames!: (frames: ClientFrame[]) => void;
  const clientFrames = new Promise<ClientFrame[]>((resolve) => {
    reportFrames = resolve;
  });
  const sockets = new Set<net.Socket>();
  // allowHalfOpen: after its FIN the server still reads the client's frames.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    let received = Buffer.alloc(0);
    let answered = false;
    const report = () => reportFrames(parseClientFrames(received).frames);
    socket.on("close", report);
    socket.on("data", async (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (!answered) {
        const end = received.indexOf("\r\n\r\n");
        if (end < 0) return;
        answered = true;
        const request = received.toString("latin1", 0, end);
        received = received.subarray(end + 4);
        const key = /^sec-websocket-key: *(.+)$/im.exec(request)?.[1]?.trim() ?? "";
        const bytes = Buffer.concat([
          Buffer.from(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
              `Sec-WebSocket-Accept: ${computeAcceptKey(key)}\r\n\r\n`,
          ),
          frames,
        ]);
        if (delivery === "one segment") socket.write(bytes);
        else if (delivery === "one segment, then FIN") socket.end(bytes);
        else await writeByteByByte(socket, bytes);
      }
      const parsed = parseClientFrames(received);
      if (parsed.frames.some((frame) => frame.opcode === OP.close)) {
        report();
        // §7.1.1: the server closes TCP first.
        socket.end();
      }
    });
  });
  resources.add(server, (s) => {
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => s.close(resolve));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  return { url: `ws://127.0.0.1:${port}/`, clientFrames };
}

async function writeByteByByte(socket: net.Socket, bytes: Buffer): Promise<void> {
  socket.setNoDelay(true);
  for (let i = 0; i < bytes.length && !socket.destroyed; i++) {
    await new Promise<void>((resolve) => socket.write(bytes.subarray(i, i + 1), () => resolve()));
  }
}

/** Parses the complete (masked) frames at the start of `bytes`. */
function parseClientFrames(bytes: Buffer): { frames: ClientFrame[] } {
  const frames: ClientFrame[] = [];
  let at = 0;
  while (bytes.length - at >= 2) {
    const b0 = bytes[at]!;
    const b1 = bytes[at + 1]!;
    assert.ok(b1 & 0x80, "client frames are masked");
    let length = b1 & 0x7f;
    let p = at + 2;
    if (length === 126) {
      if (bytes.length < p + 2) break;
      length = bytes.readUInt16BE(p);
      p += 2;
    } else if (length === 127) {
      if (bytes.length < p + 8) break;
      length = Number(bytes.readBigUInt64BE(p));
      p += 8;
    }
    if (bytes.length < p + 4 + length) break;
    const key = bytes.subarray(p, p + 4);
    const payload = Buffer.from(bytes.subarray(p + 4, p + 4 + length));
    for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!;
    frames.push({ opcode: b0 & 0x0f, fin: (b0 & 0x80) !== 0, payload });
    at = p + 4 + length;
  }
  return { frames };
}

/** The client's frames as readable strings: "text Hello", "close 1002". */
function describeFrames(frames: ClientFrame[]): string[] {
  return frames.map((frame) => {
    if (frame.opcode === OP.close)
      return `close ${frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : "(empty)"}`;
    const names: Record<number, string> = {
      0: "cont",
      1: "text",
      2: "binary",
      9: "ping",
      10: "pong",
    };
    return `${names[frame.opcode] ?? frame.opcode} ${frame.payload.toString()}`;
  });
}

async function open(url: string, options: ClientOptions = {}): Promise<WebSocketClient> {
  const client = await connect(url, options);
  resources.add(client, (c) => c.terminate());
  return client;
}

const HELLO = buildFrame({ opcode: OP.text, payload: "Hello", mask: false });
/** Autobahn follows its bad frame with a ping, which a failed connection must not answer. */
const PING = buildFrame({ opcode: OP.ping, payload: "after", mask: false });

/** A message, then a frame that fails the connection with `code`. */
const VIOLATIONS = [
  {
    name: "a frame with RSV1 set (no extension negotiated)",
    frame: buildFrame({ opcode: OP.text, payload: "rsv", rsv1: true, mask: false }),
    code: 1002,
  },
  {
    name: "a frame with the reserved opcode 3",
    frame: buildFrame({ opcode: 3, payload: "reserved", mask: false }),
    code: 1002,
  },
  {
    name: "a continuation frame with nothing to continue",
    frame: buildFrame({ opcode: OP.cont, payload: "orphan", mask: false }),
    code: 1002,
  },
  {
    name: "a text frame with invalid UTF-8",
    frame: buildFrame({
      opcode: OP.text,
      payload: Buffer.from([0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xed, 0xa0, 0x80, 0x65]),
      mask: false,
    }),
    code: 1007,
  },
] as const;

/** The Autobahn echo client, written with the async iterator. */
async function echoWithIterator(client: WebSocketClient): Promise<{
  received: string[];
  failure: unknown;
}> {
  const received: string[] = [];
  try {
    for await (const message of client) {
      received.push(message.text());
      client.send(message.data, message.isBinary);
    }
    return { received, failure: null };
  } catch (error) {
    return { received, failure: error };
  }
}

/** The Autobahn echo client, written with frame-mode callbacks. */
async function echoWithCallbacks(url: string): Promise<{ received: string[] }> {
  const received: string[] = [];
  let client: WebSocketClient | undefined;
  client = await open(url, {
    frameMode: true,
    onFrame: (opcode, payload, fin) => {
      if (client === undefined) {
        received.push("(a frame before connect() resolved)");
        return;
      }
      if (opcode === OP.text || opcode === OP.binary || opcode === OP.cont) {
        received.push(payload.toString());
        client.sendFrame(opcode, payload, fin);
      } else if (opcode === OP.ping) {
        client.pong(payload);
      } else if (opcode === OP.close) {
        if (client.isOpen) void client.close(payload.length >= 2 ? payload.readUInt16BE(0) : 1000);
      }
    },
  });
  return { received };
}

for (const delivery of ["one segment", "byte by byte"] as const) {
  describe(`client: a message, then a protocol violation, ${delivery} with the 101`, () => {
    for (const violation of VIOLATIONS) {
      const bytes = Buffer.concat([HELLO, violation.frame, PING]);

      it(`${violation.name}: the iterator echoes "Hello", then the client closes with ${violation.code}`, async () => {
        const server = await startScriptedServer(bytes, delivery);
        const client = await open(server.url);
        const { received, failure } = await withTimeout(
          echoWithIterator(client),
          5000,
          "the echo loop to end",
        );
        assert.deepEqual(received, ["Hello"]);
        assert.ok(failure instanceof ProtocolError, `expected a ProtocolError, got ${failure}`);
        assert.equal(failure.closeCode, violation.code);
        const frames = await withTimeout(server.clientFrames, 5000, "the client's frames");
        assert.deepEqual(describeFrames(frames), ["text Hello", `close ${violation.code}`]);
        const info = await withTimeout(client.closed, 5000, "the client to close");
        assert.equal(info.code, violation.code);
        assert.equal(info.wasClean, false);
      });

      it(`${violation.name}: the onFrame callback echoes "Hello", then the client closes with ${violation.code}`, async () => {
        const server = await startScriptedServer(bytes, delivery);
        const { received } = await echoWithCallbacks(server.url);
        const frames = await withTimeout(server.clientFrames, 5000, "the client's frames");
        assert.deepEqual(received, ["Hello"]);
        assert.deepEqual(describeFrames(frames), ["text Hello", `close ${violation.code}`]);
      });
    }
  });
}

describe("client: a fragmented message, then an orphan continuation (Autobahn 5.15)", () => {
  const bytes = Buffer.concat([
    buildFrame({ opcode: OP.text, payload: "fragment1", fin: false, mask: false }),
    buildFrame({ opcode: OP.cont, payload: "fragment2", mask: false }),
    buildFrame({ opcode: OP.cont, payload: "fragment3", fin: false, mask: false }),
    buildFrame({ opcode: OP.text, payload: "fragment4", mask: false }),
  ]);

  it("the iterator echoes the whole message, then the client closes with 1002", async () => {
    const server = await startScriptedServer(bytes, "one segment");
    const client = await open(server.url);
    const { received, failure } = await withTimeout(echoWithIterator(client), 5000, "the loop");
    assert.deepEqual(received, ["fragment1fragment2"]);
    assert.ok(failure instanceof ProtocolError && failure.closeCode === 1002, String(failure));
    const frames = await withTimeout(server.clientFrames, 5000, "the client's frames");
    assert.deepEqual(describeFrames(frames), ["text fragment1fragment2", "close 1002"]);
  });

  it("the onFrame callback echoes both fragments, then the client closes with 1002", async () => {
    const server = await startScriptedServer(bytes, "one segment");
    const { received } = await echoWithCallbacks(server.url);
    const frames = await withTimeout(server.clientFrames, 5000, "the client's frames");
    assert.deepEqual(received, ["fragment1", "fragment2"]);
    assert.deepEqual(describeFrames(frames), ["text fragment1", "cont fragment2", "close 1002"]);
  });
});

describe("client: ordering of replies around the server's close", () => {
  for (const delivery of ["one segment", "byte by byte"] as const) {
    it(`echoes a message that came with the close frame, then replies to the close (${delivery})`, async () => {
      const server = await startScriptedServer(
        Buffer.concat([
          HELLO,
          buildFrame({ opcode: OP.close, payload: closePayload(1000, "done"), mask: false }),
        ]),
        delivery,
      );
      const client = await open(server.url);
      const { received, failure } = await withTimeout(
        echoWithIterator(client),
        5000,
        "the echo loop to end",
      );
      assert.deepEqual(received, ["Hello"]);
      assert.equal(failure, null);
      const frames = await withTimeout(server.clientFrames, 5000, "the client's frames");
      assert.deepEqual(describeFrames(frames), ["text Hello", "close 1000"]);
      assert.deepEqual(await withTimeout(client.closed, 5000, "the client to close"), {
        code: 1000,
        reason: "done",
        wasClean: true,
      });
    });
  }

  it("a client that does not read still answers pings and the close, and keeps the message", async () => {
    const server = await startScriptedServer(
      Buffer.concat([
        HELLO,
        PING,
        buildFrame({ opcode: OP.close, payload: closePayload(1001, "bye"), mask: false }),
      ]),
      "one segment",
    );
    const client = await open(server.url);
    const info = await withTimeout(client.closed, 5000, "the client to close");
    assert.deepEqual(info, { code: 1001, reason: "bye", wasClean: true });
    const frames = await withTimeout(server.clientFrames, 5000, "the client's frames");
    assert.deepEqual(describeFrames(frames), ["pong after", "close 1001"]);
    assert.equal((await client.receive()).text(), "Hello");
  });

  it("a reader that keeps a message still replies to the close and FIN that came with it", async () => {
    const server = await startScriptedServer(
      Buffer.concat([
        HELLO,
        buildFrame({ opcode: OP.close, payload: closePayload(1000, "done"), mask: false }),
      ]),
      "one segment, then FIN",
    );
    const client = await open(server.url);
    assert.equal((await client.receive()).text(), "Hello");
    const frames = await withTimeout(server.clientFrames, 5000, "the client's frames");
    assert.deepEqual(describeFrames(frames), ["close 1000"]);
    const info = await withTimeout(client.closed, 5000, "the client to close");
    assert.deepEqual(info, { code: 1000, reason: "done", wasClean: true });
  });

  it("a reader that takes one message and stops reading still answers what follows it", async () => {
    const server = await startScriptedServer(
      Buffer.concat([
        HELLO,
        PING,
        buildFrame({ opcode: OP.text, payload: "unread", mask: false }),
        buildFrame({ opcode: OP.close, payload: closePayload(1001, "bye"), mask: false }),
      ]),
      "one segment",
    );
    const client = await open(server.url);
    assert.equal((await client.receive()).text(), "Hello");
    const info = await withTimeout(client.closed, 5000, "the client to close");
    assert.deepEqual(info, { code: 1001, reason: "bye", wasClean: true });
    const frames = await withTimeout(server.clientFrames, 5000, "the client's frames");
    assert.deepEqual(describeFrames(frames), ["pong after", "close 1001"]);
    assert.equal((await client.receive()).text(), "unread");
  });
});
