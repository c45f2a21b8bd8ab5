/**
 * Hostile and broken input over raw sockets. Each case checks the close code the attacker
 * gets and that the server goes on serving another client normally.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import zlib from "node:zlib";
import type { ServerOptions } from "../../src/server/server-options.js";
import {
  buildFrame,
  closePayload,
  fetchMetrics,
  metricValue,
  OP,
  RawClient,
  Resources,
  startEchoServer,
  type TestServer,
} from "../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

async function openRaw(port: number, headers: Record<string, string> = {}): Promise<RawClient> {
  return resources.add(await RawClient.connect(port, { headers }), (r) => r.destroy());
}

/** Another client gets a text and a binary message echoed: the server is fine. */
async function assertStillServing(server: TestServer): Promise<void> {
  const raw = await openRaw(server.port);
  await raw.send({ opcode: OP.text, payload: "still serving ✓" });
  const text = await raw.nextFrame();
  assert.equal(text.opcode, OP.text);
  assert.equal(text.payload.toString(), "still serving ✓");
  await raw.send({ opcode: OP.binary, payload: Buffer.from([1, 2, 3]) });
  assert.deepEqual([...(await raw.nextFrame()).payload], [1, 2, 3]);
  await raw.send({ opcode: OP.close, payload: closePayload(1000) });
  assert.equal((await raw.readUntilClose()).code, 1000);
}

/** Sends `bytes` on a fresh raw connection and expects the server's close frame with `code`. */
async function expectClose(
  server: TestServer,
  bytes: Buffer,
  code: number,
  reason?: RegExp,
  headers: Record<string, string> = {},
): Promise<void> {
  const raw = await openRaw(server.port, headers);
  await raw.write(bytes);
  const result = await raw.readUntilClose();
  assert.equal(result.code, code, `close code (reason: ${result.reason})`);
  if (reason) assert.match(result.reason, reason);
  // The server closes TCP after a failed connection (§7.1.7), without waiting for our close.
  await raw.waitForSocketClose();
  await assertStillServing(server);
}

function echoServer(options: ServerOptions = {}): Promise<TestServer> {
  return startEchoServer(resources, options);
}

describe("framing violations → 1002", () => {
  const cases: Array<[string, () => Buffer, RegExp]> = [
    [
      "an unmasked client frame",
      () => buildFrame({ opcode: OP.text, payload: "hi", mask: false }),
      /must be masked/,
    ],
    [
      "RSV1 without a negotiated extension",
      () => buildFrame({ opcode: OP.text, payload: "hi", rsv1: true }),
      /RSV1/,
    ],
    ["RSV2", () => buildFrame({ opcode: OP.text, payload: "hi", rsv2: true }), /RSV2/],
    ["RSV3", () => buildFrame({ opcode: OP.binary, payload: "hi", rsv3: true }), /RSV3/],
    ["reserved data opcode 3", () => buildFrame({ opcode: 0x3 }), /invalid opcode 3/],
    ["reserved data opcode 7", () => buildFrame({ opcode: 0x7, payload: "x" }), /invalid opcode 7/],
    ["reserved control opcode 0xB", () => buildFrame({ opcode: 0xb }), /invalid opcode 11/],
    [
      "reserved control opcode 0xF",
      () => buildFrame({ opcode: 0xf, payload: "x" }),
      /invalid opcode 15/,
    ],
    ["a fragmented ping", () => buildFrame({ opcode: OP.ping, fin: false }), /fragmented/],
    [
      "a ping with 126 bytes",
      () => buildFrame({ opcode: OP.ping, payload: Buffer.alloc(126) }),
      /125 bytes/,
    ],
    [
      "a continuation with no message",
      () => buildFrame({ opcode: OP.cont, payload: "x" }),
      /continuation/,
    ],
    [
      "a new message inside a fragmented one",
      () =>
        Buffer.concat([
          buildFrame({ opcode: OP.text, payload: "a", fin: false }),
          buildFrame({ opcode: OP.text, payload: "b" }),
        ]),
      /new message/,
    ],
    [
      "a 64-bit length with its top bit set",
      () => {
        const frame = buildFrame({ opcode: OP.binary, declaredLength: 0x10000 });
        frame[2] = 0x80;
        return frame;
      },
      /top bit/,
    ],
    [
      "a close frame with a 1-byte payload",
      () => buildFrame({ opcode: OP.close, payload: Buffer.from([3]) }),
      /1-byte/,
    ],
    [
      "close code 1005 on the wire",
      () => buildFrame({ opcode: OP.close, payload: closePayload(1005) }),
      /invalid close code 1005/,
    ],
    [
      "close code 1006 on the wire",
      () => buildFrame({ opcode: OP.close, payload: closePayload(1006) }),
      /invalid close code 1006/,
    ],
    [
      "close code 999",
      () => buildFrame({ opcode: OP.close, payload: closePayload(999) }),
      /invalid close code 999/,
    ],
    [
      "close code 2000",
      () => buildFrame({ opcode: OP.close, payload: closePayload(2000) }),
      /invalid close code 2000/,
    ],
    [
      "close code 5000",
      () => buildFrame({ opcode: OP.close, payload: closePayload(5000) }),
      /invalid close code 5000/,
    ],
  ];
  for (const [name, bytes, reason] of cases) {
    it(`${name} → 1002`, async () => {
      const server = await echoServer();
      await expectClose(server, bytes(), 1002, reason);
      await server.log.waitForLine(/INFO {2}protocol error, closing id=0 code=1002/);
      assert.equal(
        metricValue(await fetchMetrics(server.port), "moonsocket_protocol_errors_total", {
          code: "1002",
        }),
        1,
      );
    });
  }
});

describe("message size attacks → 1009", () => {
  it("a giant declared 64-bit length is refused at once, before any payload", async () => {
    const server = await echoServer({ maxPayload: 1024 * 1024 });
    const header = buildFrame({ opcode: OP.binary, declaredLength: 2 ** 40 });
    // No payload follows: a server that waited for it would never close.
    await expectClose(server, header, 1009, /1048576-byte limit/);
    assert.equal(
      metricValue(await fetchMetrics(server.port), "moonsocket_limit_closes_total", {
        limit: "max_payload",
      }),
      1,
    );
  });

  it("endless 0-byte continuation fragments cost nothing and the message still completes", async () => {
    const server = await echoServer({ maxPayload: 64 * 1024 });
    const raw = await openRaw(server.port);
    const empty = buildFrame({ opcode: OP.cont, fin: false });
    const before = process.memoryUsage().arrayBuffers;
    await raw.send({ opcode: OP.text, payload: "a", fin: false });
    for (let batch = 0; batch < 10; batch++)
      await raw.write(Buffer.concat(Array.from({ length: 10_000 }, () => empty)));
    await raw.send({ opcode: OP.cont, payload: "b" });
    const reply = await raw.nextFrame();
    assert.equal(reply.payload.toString(), "ab");
    assert.ok(process.memoryUsage().arrayBuffers - before < 32 * 1024 * 1024);
    await assertStillServing(server);
  });

  it("endless 1-byte fragments are closed with 1009 once they pass maxPayload", async () => {
    const server = await echoServer({ maxPayload: 64 * 1024 });
    const frames = [buildFrame({ opcode: OP.binary, payload: "x", fin: false })];
    const one = buildFrame({ opcode: OP.cont, payload: "y", fin: false });
    for (let i = 0; i < 70_000; i++) frames.push(one);
    await expectClose(server, Buffer.concat(frames), 1009, /65536-byte limit/);
  });

  it("a 4 MiB message in 65,536 fragments of 64 bytes (with pings between) is echoed intact", async () => {
    const server = await echoServer();
    const raw = await openRaw(server.port);
    const message = Buffer.allocUnsafe(4 * 1024 * 1024);
    for (let i = 0; i < message.length; i++) message[i] = (i * 31 + (i >> 8)) & 0xff;
    const frames: Buffer[] = [];
    for (let i = 0; i < 65_536; i++) {
      const piece = message.subarray(i * 64, (i + 1) * 64);
      frames.push(
        buildFrame({ opcode: i === 0 ? OP.binary : OP.cont, payload: piece, fin: i === 65_535 }),
      );
      if (i % 16_384 === 100) frames.push(buildFrame({ opcode: OP.ping, payload: `p${i}` }));
    }
    await raw.write(Buffer.concat(frames));
    const received: Buffer[] = [];
    let pongs = 0;
    for (;;) {
      const frame = await raw.nextFrame();
      if (frame.opcode === OP.pong) {
        pongs++;
        continue;
      }
      received.push(frame.payload);
      if (frame.fin) break;
    }
    assert.equal(pongs, 4, "pings between fragments are answered");
    assert.ok(Buffer.concat(received).equals(message));
    await assertStillServing(server);
  });
});

describe("floods", () => {
  it("answers a flood of 10,000 pings with 10,000 matching pongs and stays up", async () => {
    const server = await echoServer();
    const raw = await openRaw(server.port);
    const pings: Buffer[] = [];
    for (let i = 0; i < 10_000; i++)
      pings.push(buildFrame({ opcode: OP.ping, payload: String(i) }));
    await raw.write(Buffer.concat(pings));
    for (let i = 0; i < 10_000; i++) {
      const frame = await raw.nextFrame();
      assert.equal(frame.opcode, OP.pong);
      if (frame.payload.toString() !== String(i)) assert.equal(frame.payload.toString(), String(i));
    }
    await raw.send({ opcode: OP.text, payload: "after the flood" });
    assert.equal((await raw.nextFrame()).payload.toString(), "after the flood");
    await assertStillServing(server);
  });
});

describe("invalid UTF-8 → 1007", () => {
  it("in a single text frame", async () => {
    const server = await echoServer();
    await expectClose(
      server,
      buildFrame({ opcode: OP.text, payload: Buffer.from([0x68, 0xc0, 0x80]) }),
      1007,
      /UTF-8/,
    );
    assert.equal(
      metricValue(await fetchMetrics(server.port), "moonsocket_protocol_errors_total", {
        code: "1007",
      }),
      1,
    );
  });

  it("split across fragments (a 3-byte sequence broken in the second fragment)", async () => {
    const server = await echoServer();
    const bytes = Buffer.concat([
      buildFrame({ opcode: OP.text, payload: Buffer.from([0x61, 0xe2, 0x82]), fin: false }),
      buildFrame({ opcode: OP.cont, payload: Buffer.from([0x28, 0x62]) }),
    ]);
    await expectClose(server, bytes, 1007, /UTF-8/);
  });

  it("detected in the first fragment, before the message is complete", async () => {
    const server = await echoServer();
    await expectClose(
      server,
      buildFrame({ opcode: OP.text, payload: Buffer.from([0x61, 0xff]), fin: false }),
      1007,
      /UTF-8/,
    );
  });

  it("a message ending in the middle of a code point", async () => {
    const server = await echoServer();
    const bytes = Buffer.concat([
      buildFrame({ opcode: OP.text, payload: Buffer.from([0x61]), fin: false }),
      buildFrame({ opcode: OP.cont, payload: Buffer.from([0xf0, 0x9f, 0x8c]) }),
    ]);
    await expectClose(server, bytes, 1007, /UTF-8/);
  });

  it("an invalid close reason", async () => {
    const server = await echoServer();
    const payload = Buffer.concat([closePayload(1000), Buffer.from([0xff, 0xfe])]);
    await expectClose(server, buildFrame({ opcode: OP.close, payload }), 1007, /UTF-8/);
  });

  it("valid multi-byte characters split across fragments are accepted", async () => {
    const server = await echoServer();
    const raw = await openRaw(server.port);
    const text = Buffer.from("✓🌍é", "utf8");
    await raw.write(
      Buffer.concat([
        buildFrame({ opcode: OP.text, payload: text.subarray(0, 2), fin: false }),
        buildFrame({ opcode: OP.cont, payload: text.subarray(2, 5), fin: false }),
        buildFrame({ opcode: OP.cont, payload: text.subarray(5) }),
      ]),
    );
    assert.equal((await raw.nextFrame()).payload.toString(), "✓🌍é");
  });
});

describe("permessage-deflate attacks", () => {
  const DEFLATE = { "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits" };

  /** Compresses like a permessage-deflate sender: raw deflate, sync flush, tail removed (RFC 7692 §7.2.1). */
  function compress(data: Buffer): Buffer {
    const out = zlib.deflateRawSync(data, { level: 9, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    return out.subarray(0, out.length - 4);
  }

  /**
   * `mebibytes` MiB of zeros as one permessage-deflate payload, built quickly: a sync-flushed
   * raw deflate block sequence inflating to 1 MiB, repeated (sync-flushed output ends on a
   * byte boundary with no final block, so copies concatenate into one valid stream).
   */
  function zeroBomb(mebibytes: number): Buffer {
    const piece = zlib.deflateRawSync(Buffer.alloc(1024 * 1024), {
      level: 9,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    });
    const bomb = Buffer.concat(Array.from({ length: mebibytes }, () => piece));
    return bomb.subarray(0, bomb.length - 4);
  }

  it("the bomb builder really inflates to its size", () => {
    assert.equal(
      zlib.inflateRawSync(Buffer.concat([zeroBomb(3), Buffer.from([0, 0, 0xff, 0xff])]), {
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      }).length,
      3 * 1024 * 1024,
    );
  });

  it("a raw client negotiates compression and a compressed message is echoed", async () => {
    const server = await echoServer({ perMessageDeflate: true });
    const raw = await openRaw(server.port, DEFLATE);
    assert.match(raw.response, /Sec-WebSocket-Extensions: permessage-deflate/i);
    await raw.send({ opcode: OP.text, payload: compress(Buffer.from("squeezed ✓")), rsv1: true });
    const reply = await raw.nextFrame();
    assert.equal(reply.payload.toString(), "squeezed ✓", "short replies go uncompressed");
  });

  it("a decompression bomb (100 MiB from a ~100 KiB frame) → 1009 with bounded memory", async () => {
    const server = await echoServer({ perMessageDeflate: true, maxPayload: 1024 * 1024 });
    const bomb = zeroBomb(100);
    assert.ok(bomb.length < 200 * 1024, `bomb is ${bomb.length} bytes`);
    const before = process.memoryUsage().arrayBuffers;
    await expectClose(
      server,
      buildFrame({ opcode: OP.binary, payload: bomb, rsv1: true }),
      1009,
      /1048576-byte limit/,
      DEFLATE,
    );
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < 32 * 1024 * 1024, `memory grew by ${grown} bytes`);
    assert.equal(
      metricValue(await fetchMetrics(server.port), "moonsocket_limit_closes_total", {
        limit: "max_payload",
      }),
      1,
    );
  });

  it("a bomb spread over many compressed fragments → 1009", async () => {
    const server = await echoServer({ perMessageDeflate: true, maxPayload: 1024 * 1024 });
    const bomb = zeroBomb(20);
    const frames: Buffer[] = [];
    const size = Math.ceil(bomb.length / 10);
    for (let i = 0; i < 10; i++) {
      const piece = bomb.subarray(i * size, (i + 1) * size);
      frames.push(
        buildFrame({
          opcode: i === 0 ? OP.binary : OP.cont,
          payload: piece,
          rsv1: i === 0,
          fin: i === 9,
        }),
      );
    }
    await expectClose(server, Buffer.concat(frames), 1009, undefined, DEFLATE);
  });

  it("corrupt compressed data → 1007", async () => {
    const server = await echoServer({ perMessageDeflate: true });
    await expectClose(
      server,
      buildFrame({ opcode: OP.binary, payload: Buffer.from([0xff, 0xff, 0xff, 0xff]), rsv1: true }),
      1007,
      /compressed/,
      DEFLATE,
    );
  });

  it("RSV1 on a continuation frame → 1002", async () => {
    const server = await echoServer({ perMessageDeflate: true });
    const bytes = Buffer.concat([
      buildFrame({ opcode: OP.text, payload: compress(Buffer.from("a")), rsv1: true, fin: false }),
      buildFrame({ opcode: OP.cont, payload: compress(Buffer.from("b")), rsv1: true }),
    ]);
    await expectClose(server, bytes, 1002, /continuation/, DEFLATE);
  });
});

describe("handshake edge cases", () => {
  it("frames sent in the same TCP write as the upgrade request are processed", async () => {
    const server = await echoServer();
    const early = Buffer.concat([
      buildFrame({ opcode: OP.text, payload: "early" }),
      buildFrame({ opcode: OP.binary, payload: Buffer.from([9]) }),
    ]);
    const raw = resources.add(await RawClient.connect(server.port, { early }), (r) => r.destroy());
    assert.equal((await raw.nextFrame()).payload.toString(), "early");
    assert.deepEqual([...(await raw.nextFrame()).payload], [9]);
  });

  it("a hostile frame in the same TCP write as the upgrade request → 1002", async () => {
    const server = await echoServer();
    const early = buildFrame({ opcode: OP.text, payload: "x", mask: false });
    const raw = resources.add(await RawClient.connect(server.port, { early }), (r) => r.destroy());
    assert.equal((await raw.readUntilClose()).code, 1002);
    await assertStillServing(server);
  });
});

describe("many hostile connections at once", () => {
  it("50 clients breaking different rules at once are all closed and the server keeps serving", async () => {
    const server = await echoServer({ maxPayload: 4096 });
    const attacks = [
      buildFrame({ opcode: OP.text, payload: "x", mask: false }),
      buildFrame({ opcode: 0x5 }),
      buildFrame({ opcode: OP.binary, declaredLength: 1e9 }),
      buildFrame({ opcode: OP.text, payload: Buffer.from([0xff]) }),
      Buffer.from("garbage garbage garbage"),
    ];
    const clients = await Promise.all(Array.from({ length: 50 }, () => openRaw(server.port)));
    await Promise.all(clients.map((c, i) => c.write(attacks[i % attacks.length]!)));
    const results = await Promise.all(clients.map((c) => c.readUntilClose()));
    for (const [i, result] of results.entries())
      assert.ok(result.code !== null && result.code >= 1002, `client ${i}: ${result.code}`);
    await Promise.all(clients.map((c) => c.waitForSocketClose()));
    await assertStillServing(server);
  });
});
