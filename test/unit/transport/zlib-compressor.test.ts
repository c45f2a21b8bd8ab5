import assert from "node:assert/strict";
import { describe, it } from "node:test";
import zlib from "node:zlib";
import type { DeflateParams } from "../../../src/protocol/permessage-deflate.js";
import { ZlibCompressor } from "../../../src/transport/zlib-compressor.js";
import { processCpuMs } from "../../helpers/cpu-time.js";
import { deflatedZeros, inflatedSize } from "../../helpers/deflate-bomb.js";
import { createRandom, randomBytes } from "../../helpers/protocol-harness.js";

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

function params(overrides: Partial<DeflateParams> = {}): DeflateParams {
  return {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
    ...overrides,
  };
}

/** Everything done synchronously, so each call's result can be checked at once. */
const INLINE = { inlineBytes: Number.POSITIVE_INFINITY };

/** A server-side and a client-side compressor for the same negotiated parameters. */
function pair(negotiated = params()): { server: Inline; client: Inline } {
  return {
    server: new Inline(negotiated, "server"),
    client: new Inline(negotiated, "client"),
  };
}

/** A compressor whose sync methods always answer (inlineBytes: Infinity). */
class Inline extends ZlibCompressor {
  constructor(
    negotiated: DeflateParams,
    role: "server" | "client",
    options: ConstructorParameters<typeof ZlibCompressor>[2] = {},
  ) {
    super(negotiated, role, { ...INLINE, ...options });
  }
  override compress(data: Buffer): Buffer {
    return super.compress(data)!;
  }
  override decompress(frame: Buffer, final: boolean, limit: number): Buffer | null {
    const result = super.decompress(frame, final, limit);
    assert.notEqual(result, undefined, "inline");
    return result!;
  }
}

/** Inflates through whichever path the compressor picks, as the transport does. */
function inflateAny(
  compressor: ZlibCompressor,
  frame: Buffer,
  final: boolean,
  limit: number,
): Promise<Buffer | null> {
  const inline = compressor.decompress(frame, final, limit);
  if (inline !== undefined) return Promise.resolve(inline);
  return new Promise((resolve, reject) =>
    compressor.decompressAsync(frame, final, limit, (result) =>
      result instanceof Error ? reject(result) : resolve(result),
    ),
  );
}

/** Deflates through whichever path the compressor picks. */
function deflateAny(compressor: ZlibCompressor, data: Buffer): Promise<Buffer> {
  const inline = compressor.compress(data);
  if (inline !== undefined) return Promise.resolve(inline);
  return new Promise((resolve, reject) =>
    compressor.compressAsync(data, (result) =>
      result instanceof Error ? reject(result) : resolve(result),
    ),
  );
}

/** Inflates one whole message with plain zlib, as an independent peer would. */
function inflate(data: Buffer, windowBits = 15): Buffer {
  return zlib.inflateRawSync(Buffer.concat([data, TAIL]), {
    windowBits,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
}

describe("ZlibCompressor", () => {
  it("has a threshold of 1024 bytes by default, and takes one from options", () => {
    assert.equal(new ZlibCompressor(params(), "server").threshold, 1024);
    assert.equal(new ZlibCompressor(params(), "server", { threshold: 0 }).threshold, 0);
  });

  it("compresses to raw DEFLATE without the 00 00 FF FF tail, which plain zlib inflates", () => {
    const { server } = pair();
    const data = Buffer.from("permessage-deflate ".repeat(100));
    const compressed = server.compress(data);
    assert.ok(compressed.length < data.length / 5);
    assert.notDeepEqual(compressed.subarray(-4), TAIL);
    assert.deepEqual(inflate(compressed), data);
  });

  it("compresses an empty message to a payload that inflates to nothing, also after another message", () => {
    const { server, client } = pair();
    const first = server.compress(Buffer.alloc(0));
    assert.deepEqual(client.decompress(first, true, 100), Buffer.alloc(0));
    assert.deepEqual(
      client.decompress(server.compress(Buffer.from("between")), true, 100),
      Buffer.from("between"),
    );
    for (let i = 0; i < 3; i++) {
      const empty = server.compress(Buffer.alloc(0));
      assert.ok(empty.length > 0, "never an empty payload (RFC 7692 §7.2.3.6: 00 instead)");
      assert.deepEqual(client.decompress(empty, true, 100), Buffer.alloc(0));
    }
    assert.deepEqual(
      client.decompress(server.compress(Buffer.from("after")), true, 100),
      Buffer.from("after"),
    );
  });

  it("round-trips server → client and client → server", () => {
    const { server, client } = pair();
    const random = createRandom(1);
    for (let i = 0; i < 20; i++) {
      const data =
        i % 2 ? randomBytes(random, 50 + i * 100) : Buffer.from(`message ${i} `.repeat(i * 10));
      assert.deepEqual(
        client.decompress(server.compress(data), true, Number.POSITIVE_INFINITY),
        data,
      );
      assert.deepEqual(
        server.decompress(client.compress(data), true, Number.POSITIVE_INFINITY),
        data,
      );
    }
  });

  it("handles messages whose compressed or inflated size exceeds its 64 KiB scratch buffer", () => {
    const { server, client } = pair();
    const incompressible = randomBytes(createRandom(2), 300_000);
    const compressed = server.compress(incompressible);
    assert.ok(compressed.length > 65_536);
    assert.deepEqual(client.decompress(compressed, true, Number.POSITIVE_INFINITY), incompressible);
    const compressible = Buffer.alloc(1_000_000, 0x61);
    assert.deepEqual(
      client.decompress(server.compress(compressible), true, Number.POSITIVE_INFINITY),
      compressible,
    );
  });

  it("inflates a message delivered in pieces (fragments) whole, with its last piece", () => {
    const { server, client } = pair();
    const data = Buffer.from("fragmented message ".repeat(300));
    const compressed = server.compress(data);
    const pieces: Buffer[] = [];
    for (let at = 0; at < compressed.length; at += 7) {
      const end = Math.min(compressed.length, at + 7);
      pieces.push(
        client.decompress(
          compressed.subarray(at, end),
          end === compressed.length,
          Number.POSITIVE_INFINITY,
        )!,
      );
    }
    assert.ok(pieces.slice(0, -1).every((piece) => piece.length === 0));
    assert.deepEqual(pieces.at(-1), data);
  });

  it("fails fragments whose compressed size alone is past the limit", () => {
    const { client } = pair();
    // Honest deflate output is at most limit + limit/16 + 1024 bytes (2086 here).
    assert.deepEqual(client.decompress(Buffer.alloc(900), false, 1000), Buffer.alloc(0));
    assert.deepEqual(client.decompress(Buffer.alloc(900), false, 1000), Buffer.alloc(0));
    assert.equal(client.decompress(Buffer.alloc(900), false, 1000), null);
  });

  it("keeps the context between messages: a repeated message compresses to a few bytes", () => {
    const { server, client } = pair();
    const data = Buffer.from(randomBytes(createRandom(3), 500).toString("hex"));
    const first = server.compress(data);
    const second = server.compress(data);
    assert.ok(second.length < 20, `second copy is ${second.length} bytes`);
    assert.deepEqual(client.decompress(first, true, Number.POSITIVE_INFINITY), data);
    assert.deepEqual(client.decompress(second, true, Number.POSITIVE_INFINITY), data);
  });

  it("server_no_context_takeover: the server compresses each message afresh and the client forgets", () => {
    const { server, client } = pair(params({ serverNoContextTakeover: true }));
    const data = Buffer.from(randomBytes(createRandom(4), 500).toString("hex"));
    const first = server.compress(data);
    assert.deepEqual(server.compress(data), first);
    assert.deepEqual(client.decompress(first, true, Number.POSITIVE_INFINITY), data);
    assert.deepEqual(client.decompress(first, true, Number.POSITIVE_INFINITY), data);
    // The client side still keeps its own context (client_no_context_takeover is off).
    const once = client.compress(data);
    const twice = client.compress(data);
    assert.ok(twice.length < once.length);
  });

  it("client_no_context_takeover: the server's inflater forgets each message", () => {
    // A peer that (wrongly) keeps its context: its second message refers to the first, which
    // a server that resets after every message no longer has.
    const keeper = new Inline(params(), "client");
    const server = new Inline(params({ clientNoContextTakeover: true }), "server");
    const data = Buffer.from(randomBytes(createRandom(5), 500).toString("hex"));
    assert.deepEqual(
      server.decompress(keeper.compress(data), true, Number.POSITIVE_INFINITY),
      data,
    );
    const second = keeper.compress(data);
    assert.throws(() => server.decompress(second, true, Number.POSITIVE_INFINITY));
  });

  for (let bits = 8; bits <= 15; bits++) {
    it(`round-trips with ${bits}-bit windows, readable by plain zlib with that window`, () => {
      const negotiated = params({ serverMaxWindowBits: bits, clientMaxWindowBits: bits });
      const { server, client } = pair(negotiated);
      const random = createRandom(bits);
      const block = randomBytes(random, 200);
      for (let i = 0; i < 5; i++) {
        const data = Buffer.concat([
          block,
          randomBytes(random, 1000),
          block,
          Buffer.alloc(3000, i),
        ]);
        const fromServer = server.compress(data);
        const fromClient = client.compress(data);
        assert.deepEqual(client.decompress(fromServer, true, Number.POSITIVE_INFINITY), data);
        assert.deepEqual(server.decompress(fromClient, true, Number.POSITIVE_INFINITY), data);
        if (i === 0) assert.deepEqual(inflate(fromServer, bits), data);
      }
    });
  }

  it("returns null as soon as the output exceeds the limit, and accepts exactly the limit", () => {
    const { server, client } = pair();
    const data = Buffer.alloc(10_000, 0x62);
    const compressed = server.compress(data);
    assert.deepEqual(client.decompress(compressed, true, 10_000), data);
    const other = pair();
    assert.equal(other.client.decompress(other.server.compress(data), true, 9_999), null);
  });

  it("stops a 100 MiB decompression bomb at the limit without inflating it all", async () => {
    const bomb = await deflatedZeros(100);
    assert.equal(await inflatedSize(bomb), 100 * 1024 * 1024, "the bomb is real");
    const client = new Inline(params(), "client");
    const before = process.memoryUsage().arrayBuffers;
    const started = processCpuMs();
    assert.equal(client.decompress(bomb, true, 1 << 20), null);
    const elapsed = processCpuMs() - started;
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < 8 * 1024 * 1024, `arrayBuffers grew by ${grown} bytes`);
    assert.ok(elapsed < 1000, `stopped early (${elapsed.toFixed(0)} CPU ms)`);
  });

  it("throws on corrupt data and then refuses to go on", () => {
    const client = new ZlibCompressor(params(), "client");
    assert.throws(
      () => client.decompress(Buffer.from([0xff, 0xff, 0xff]), true, 1000),
      /^Error: invalid deflate data \(.+\)$/,
    );
    assert.throws(() => client.decompress(Buffer.from([0x00]), true, 1000), /broken/);
  });

  it("inflates consecutive messages that end their DEFLATE stream with BFINAL (§7.2.3.4)", () => {
    const client = new Inline(params(), "client");
    for (const text of ["one", "two two", "three three three"]) {
      assert.equal(client.decompress(zlib.deflateRawSync(text), true, 1000)?.toString(), text);
    }
  });

  it("accepts zlib level and memLevel options", () => {
    const data = Buffer.from("level and memory ".repeat(200));
    for (const options of [{ level: 0 }, { level: 9, memLevel: 9 }, { memLevel: 1 }]) {
      const server = new Inline(params(), "server", options);
      assert.deepEqual(inflate(server.compress(data)), data);
    }
    assert.ok(new Inline(params(), "server", { level: 0 }).compress(data).length > data.length);
  });

  it("can be closed before use, twice, and starts fresh engines if used again", () => {
    const { server, client } = pair();
    server.close();
    client.compress(Buffer.from("warm up"));
    client.close();
    client.close();
    const data = Buffer.from("after close");
    assert.deepEqual(server.decompress(client.compress(data), true, 100), data);
    server.close(); // now with a live inflater; what comes next is a new stream
    const fresh = new Inline(params(), "client");
    assert.deepEqual(server.decompress(fresh.compress(data), true, 100), data);
  });
});

describe("ZlibCompressor with large messages (thread pool)", () => {
  it("hands messages over inlineBytes to the async methods and keeps the context across both paths", async () => {
    const negotiated = params();
    const server = new ZlibCompressor(negotiated, "server", { inlineBytes: 4096 });
    const client = new ZlibCompressor(negotiated, "client", { inlineBytes: 4096 });
    const random = createRandom(9);
    const block = Buffer.from(randomBytes(random, 1500).toString("hex")); // 3000 bytes
    const big = Buffer.concat([block, randomBytes(random, 20_000), block]);
    assert.equal(server.compress(big), undefined, "too large to deflate inline");
    for (const data of [block, big, block, big, block]) {
      const compressed = await deflateAny(server, data);
      assert.deepEqual(await inflateAny(client, compressed, true, 1 << 20), data);
    }
    // The second copy of `block` refers back into the messages before it.
    const again = await deflateAny(server, block);
    assert.ok(again.length < 100, `repeated block is ${again.length} bytes`);
  });

  it("returns async results in the order the messages were given", async () => {
    const server = new ZlibCompressor(params(), "server", { inlineBytes: 1024 });
    const client = new Inline(params(), "client");
    const messages = [
      Buffer.alloc(3 * 1024 * 1024, 1),
      Buffer.alloc(2000, 2),
      Buffer.alloc(5000, 3),
    ];
    const results: Buffer[] = [];
    await new Promise<void>((resolve) => {
      for (const data of messages) {
        server.compressAsync(data, (result) => {
          assert.ok(!(result instanceof Error));
          results.push(result);
          if (results.length === messages.length) resolve();
        });
      }
    });
    assert.deepEqual(
      results.map((result) => client.decompress(result, true, Number.POSITIVE_INFINITY)),
      messages,
    );
  });

  it("stops a 100 MiB bomb at the limit in the thread pool too, and reports corrupt data", async () => {
    const bomb = await deflatedZeros(100);
    const client = new ZlibCompressor(params(), "client");
    assert.equal(client.decompress(bomb, true, 1 << 20), undefined, "too large to inflate inline");
    assert.equal(await inflateAny(client, bomb, true, 1 << 20), null);
    const corrupt = Buffer.alloc(200_000, 0xff);
    await assert.rejects(inflateAny(client, corrupt, true, 1 << 20), /invalid deflate data/);
  });
});
