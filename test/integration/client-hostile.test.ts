/**
 * Our `connect()` client against a raw TCP server that answers the handshake and then
 * writes whatever the test wants: handshake checks, protocol violations, limits, timeouts.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { afterEach, describe, it } from "node:test";
import { type ClientOptions, connect } from "../../src/client/client.js";
import { HandshakeError, ProtocolError } from "../../src/protocol/errors.js";
import { computeAcceptKey } from "../../src/protocol/handshake.js";
import {
  buildFrame,
  closePayload,
  OP,
  PATIENCE_MS,
  Resources,
  withTimeout,
} from "../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

/** What the raw server saw: the request head and the (unmasked) frames the client sent. */
interface RawPeer {
  socket: net.Socket;
  request: string;
  /** Bytes received after the request head. */
  received: () => Buffer;
}

/**
 * A raw server: reads the request, answers with `respond(key)` (a 101 by default), then hands
 * the socket to `then`.
 */
async function startRawServer(
  then: (peer: RawPeer) => void,
  respond: (key: string) => string | Buffer | null = (key) =>
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${computeAcceptKey(key)}\r\n\r\n`,
): Promise<string> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    let head = Buffer.alloc(0);
    let rest = Buffer.alloc(0);
    let request = "";
    socket.on("data", (chunk: Buffer) => {
      if (request !== "") {
        rest = Buffer.concat([rest, chunk]);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      request = head.toString("latin1", 0, end);
      rest = head.subarray(end + 4);
      const key = /^sec-websocket-key: *(.+)$/im.exec(request)?.[1]?.trim() ?? "";
      const response = respond(key);
      if (response === null) return;
      socket.write(response);
      then({ socket, request, received: () => rest });
    });
  });
  resources.add(server, (s) => {
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => s.close(resolve));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/`;
}

async function open(url: string, options: ClientOptions = {}) {
  const client = await connect(url, options);
  resources.add(client, (c) => c.terminate());
  return client;
}

/** Unmasks the first frame the client sent (clients always mask). */
function firstClientFrame(bytes: Buffer): { opcode: number; payload: Buffer } | null {
  if (bytes.length < 6) return null;
  const length = bytes[1]! & 0x7f;
  if (length > 125 || bytes.length < 6 + length) return null;
  const key = bytes.subarray(2, 6);
  const payload = Buffer.from(bytes.subarray(6, 6 + length));
  for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!;
  return { opcode: bytes[0]! & 0x0f, payload };
}

describe("client handshake checks", () => {
  it("refuses request headers that would break the request, before it opens any connection", async () => {
    let connections = 0;
    const server = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      for (const [headers, message] of [
        [{ "x-a": "v\r\nx-injected: 1" }, "header x-a contains a line break"],
        [{ "bad name": "v" }, 'header name "bad name" is not an HTTP token'],
        [{ "x-b": "v\u0000" }, "header x-b contains a control character"],
      ] as const) {
        await assert.rejects(connect(`ws://127.0.0.1:${port}/`, { headers }), {
          code: "ERR_WS_HEADER",
          message,
        });
      }
      await assert.rejects(
        connect(`ws://127.0.0.1:${port}/`, { protocols: ["chat\r\nx-injected: 1"] }),
        { code: "ERR_WS_HEADER", message: /is not an HTTP token/ },
      );
      // Nothing was left connecting (a refused connection with no listener crashed the process).
      await assert.rejects(connect("ws://127.0.0.1:9/", { headers: { "x-a": "\n" } }), {
        code: "ERR_WS_HEADER",
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(connections, 0);
    } finally {
      server.close();
    }
  });

  it("rejects a wrong Sec-WebSocket-Accept", async () => {
    const url = await startRawServer(
      () => {},
      () =>
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
    );
    await assert.rejects(
      connect(url),
      (error: unknown) => error instanceof HandshakeError && /Accept/.test(error.message),
    );
  });

  it("rejects a subprotocol it did not offer", async () => {
    const url = await startRawServer(
      () => {},
      (key) =>
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${computeAcceptKey(key)}\r\nSec-WebSocket-Protocol: evil\r\n\r\n`,
    );
    await assert.rejects(connect(url, { protocols: ["good"] }), /not offered/);
  });

  it("rejects an extension it did not offer", async () => {
    const url = await startRawServer(
      () => {},
      (key) =>
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${computeAcceptKey(key)}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n`,
    );
    await assert.rejects(connect(url), /not offered/);
  });

  it("rejects a plain 200 answer with its status", async () => {
    const url = await startRawServer(
      () => {},
      () => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    await assert.rejects(
      connect(url),
      (error: unknown) => error instanceof HandshakeError && error.status === 200,
    );
  });

  it("gives up on a server that never answers after handshakeTimeout", async () => {
    const url = await startRawServer(
      () => {},
      () => null,
    );
    await assert.rejects(connect(url, { handshakeTimeout: 300 }), /timed out after 300 ms/);
  });

  it("rejects a response head larger than maxHeaderBytes", async () => {
    const url = await startRawServer(
      () => {},
      () => `HTTP/1.1 101 Switching Protocols\r\nX-Junk: ${"j".repeat(40_000)}`,
    );
    await assert.rejects(connect(url, { maxHeaderBytes: 16_384 }), /larger than 16384 bytes/);
  });

  it("receives a frame sent in the same TCP segment as the 101", async () => {
    const url = await startRawServer(
      () => {},
      (key) =>
        Buffer.concat([
          Buffer.from(
            `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${computeAcceptKey(key)}\r\n\r\n`,
          ),
          buildFrame({ opcode: OP.text, payload: "early bird", mask: false }),
        ]),
    );
    const client = await open(url);
    assert.equal((await client.receive()).text(), "early bird");
  });
});

describe("client protocol violations from the server", () => {
  async function expectFailure(
    bytes: Buffer,
    code: number,
    options: ClientOptions = {},
  ): Promise<Buffer> {
    let peer: RawPeer | undefined;
    const url = await startRawServer((p) => {
      peer = p;
      p.socket.write(bytes);
    });
    const client = await open(url, options);
    await assert.rejects(
      client.receive(),
      (error: unknown) => error instanceof ProtocolError && error.closeCode === code,
    );
    const info = await withTimeout(client.closed, PATIENCE_MS, "the client to close");
    assert.equal(info.code, code);
    assert.equal(info.wasClean, false);
    return peer!.received();
  }

  it("a masked server frame → 1002, and the client tells the server", async () => {
    const sent = await expectFailure(
      buildFrame({ opcode: OP.text, payload: "masked", mask: true }),
      1002,
    );
    const frame = firstClientFrame(sent);
    assert.equal(frame?.opcode, OP.close);
    assert.equal(frame?.payload.readUInt16BE(0), 1002);
  });

  it("invalid UTF-8 from the server → 1007", async () => {
    await expectFailure(
      buildFrame({ opcode: OP.text, payload: Buffer.from([0xed, 0xa0, 0x80]), mask: false }),
      1007,
    );
  });

  it("a message over the client's maxPayload → 1009", async () => {
    await expectFailure(
      buildFrame({ opcode: OP.binary, payload: Buffer.alloc(2000), mask: false }),
      1009,
      { maxPayload: 1000 },
    );
  });

  it("a reserved opcode → 1002", async () => {
    await expectFailure(buildFrame({ opcode: 0xc, mask: false }), 1002);
  });
});

describe("client control frames and closing", () => {
  it("answers a server ping with a masked pong carrying the same payload", async () => {
    let peer: RawPeer | undefined;
    const url = await startRawServer((p) => {
      peer = p;
      p.socket.write(buildFrame({ opcode: OP.ping, payload: "are you there", mask: false }));
    });
    const client = await open(url);
    const pings: string[] = [];
    client.pingListener = (payload) => pings.push(payload.toString());
    await withTimeout(
      new Promise<void>((resolve) => {
        const check = () =>
          firstClientFrame(peer?.received() ?? Buffer.alloc(0)) !== null
            ? resolve()
            : setTimeout(check, 10);
        check();
      }),
      2000,
      "the pong",
    );
    const pong = firstClientFrame(peer!.received())!;
    assert.equal(pong.opcode, OP.pong);
    assert.equal(pong.payload.toString(), "are you there");
  });

  it("reports 1006 when the server drops TCP without a close frame", async () => {
    const url = await startRawServer((p) => setTimeout(() => p.socket.destroy(), 20));
    const client = await open(url);
    const info = await withTimeout(client.closed, PATIENCE_MS, "the client to close");
    assert.deepEqual(info, { code: 1006, reason: "", wasClean: false });
    await assert.rejects(client.receive(), /closed \(1006\)/);
  });

  it("cuts a server that sends its close but never closes TCP, after closeTimeout", async () => {
    const url = await startRawServer((p) =>
      p.socket.write(
        buildFrame({ opcode: OP.close, payload: closePayload(1001, "away"), mask: false }),
      ),
    );
    const client = await open(url, { closeTimeout: 300 });
    // Without closeTimeout the client would wait for the TCP close for ever.
    const info = await withTimeout(client.closed, PATIENCE_MS, "the client to give up");
    assert.equal(info.code, 1001);
    assert.equal(info.reason, "away");
  });

  it("cuts a server that never answers the client's close, after closeTimeout", async () => {
    const url = await startRawServer(() => {});
    const client = await open(url, { closeTimeout: 300 });
    const started = Date.now();
    const info = await withTimeout(client.close(1000, "bye"), PATIENCE_MS, "the client to give up");
    assert.equal(info.code, 1006);
    assert.equal(info.wasClean, false);
    assert.ok(Date.now() - started >= 250);
  });
});
