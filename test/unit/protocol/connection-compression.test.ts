import assert from "node:assert/strict";
import { describe, it } from "node:test";
import zlib from "node:zlib";
import type { MessageCompressor } from "../../../src/protocol/compression.js";
import { ConnectionState } from "../../../src/protocol/connection.js";
import {
  acceptDeflateOffer,
  acceptDeflateResponse,
  buildDeflateOffer,
  type DeflateOptions,
  type DeflateParams,
  parseExtensions,
} from "../../../src/protocol/permessage-deflate.js";
import { ZlibCompressor } from "../../../src/transport/zlib-compressor.js";
import { deflatedZeros } from "../../helpers/deflate-bomb.js";
import {
  assertFails,
  assertSent,
  createRandom,
  type DecodedFrame,
  decodeFrames,
  feed,
  inbound,
  OP,
  Recorder,
  type RecorderOptions,
  ROLES,
  type Role,
  randomBytes,
  randomPieces,
  replay,
} from "../../helpers/protocol-harness.js";

const DEFAULT_PARAMS: DeflateParams = {
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
};

/**
 * Every message compressed and everything done inline, so these vectors replay synchronously
 * (the hand-out of large messages has its own tests in connection-compression-async).
 */
const INLINE = { threshold: 0, inlineBytes: Number.POSITIVE_INFINITY };

/** What a peer's deflater sends for `data`: raw DEFLATE, sync-flushed, without the tail (§7.2.1). */
function deflate(data: Buffer | string): Buffer {
  const out = deflateFragment(data);
  return out.subarray(0, out.length - 4);
}

/**
 * Raw DEFLATE for a non-final fragment compressed on its own: sync-flushed and keeping the
 * empty stored block (only the message's end drops it), so the next fragment starts on a
 * block boundary.
 */
function deflateFragment(data: Buffer | string): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  return zlib.deflateRawSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
}

/** Options for a `role` connection with a fresh compressor of its own. */
function compressed(
  role: Role,
  extra: Omit<RecorderOptions, "role"> = {},
  params = DEFAULT_PARAMS,
): () => RecorderOptions {
  return () => ({ role, compressor: new ZlibCompressor(params, role, INLINE), ...extra });
}

/** A server and a client that negotiated permessage-deflate through the real handshake functions. */
function connectPair(
  clientOptions: DeflateOptions,
  serverOptions: DeflateOptions,
  extra: Omit<RecorderOptions, "role" | "compressor"> = {},
): {
  server: Recorder;
  client: Recorder;
  serverParams: DeflateParams;
  clientParams: DeflateParams;
} {
  const accepted = acceptDeflateOffer(
    parseExtensions(buildDeflateOffer(clientOptions)),
    serverOptions,
  );
  assert.ok(accepted !== null, "the server accepts the offer");
  const clientParams = acceptDeflateResponse(accepted.response, clientOptions);
  assert.ok(clientParams !== null, "the client accepts the response");
  const server = new Recorder({
    role: "server",
    compressor: new ZlibCompressor(accepted.params, "server", INLINE),
    ...extra,
  });
  const client = new Recorder({
    role: "client",
    compressor: new ZlibCompressor(clientParams, "client", INLINE),
    ...extra,
  });
  return { server, client, serverParams: accepted.params, clientParams };
}

let transferSeed = 1;
/** Moves everything `from` sent into `to`, at random split points; returns the frames that went over. */
function transfer(from: Recorder, to: Recorder): DecodedFrame[] {
  const bytes = from.output();
  from.clearOutput();
  feed(to, bytes, randomPieces(bytes.length, transferSeed++));
  return decodeFrames(bytes);
}

function messages(): Array<[Buffer, boolean]> {
  const random = createRandom(42);
  const block = randomBytes(random, 300);
  return [
    [Buffer.from("hello"), false],
    [Buffer.alloc(0), false],
    [Buffer.from("The quick brown fox jumps over the lazy dog. ".repeat(250)), false],
    [Buffer.from("日本語のテキスト 🌍 ".repeat(300)), false],
    [randomBytes(random, 3000), true],
    [Buffer.concat(new Array<Buffer>(50).fill(block)), true], // matches 300 bytes back
    [randomBytes(random, 70_000), true], // inflates and deflates to more than 64 KiB
  ];
}

function assertReceived(recorder: Recorder, expected: Array<[Buffer, boolean]>): void {
  assert.equal(
    recorder.events.length,
    expected.length,
    JSON.stringify(recorder.events.map((e) => e.type)),
  );
  expected.forEach(([data, binary], i) => {
    const event = recorder.events[i]!;
    assert.ok(event.type === "message", `event ${i} is a message`);
    assert.equal(event.binary, binary, `message ${i} type`);
    assert.ok(event.data.equals(data), `message ${i} content`);
  });
  recorder.events.length = 0;
}

/** Sends `data` twice from `from` to `to`; returns the compressed payload lengths and whether they were equal. */
function sendTwice(from: Recorder, to: Recorder, data: Buffer): { first: Buffer; second: Buffer } {
  from.connection.send(data, false);
  from.connection.send(data, false);
  const frames = transfer(from, to);
  assertReceived(to, [
    [data, false],
    [data, false],
  ]);
  return { first: frames[0]!.payload, second: frames[1]!.payload };
}

describe("Connection with permessage-deflate, end to end (server ↔ client over ZlibCompressor)", () => {
  for (let bits = 8; bits <= 15; bits++) {
    for (const serverNoContextTakeover of [false, true]) {
      for (const clientNoContextTakeover of [false, true]) {
        const name = `window bits ${bits}, server_no_context_takeover ${serverNoContextTakeover}, client_no_context_takeover ${clientNoContextTakeover}`;
        it(`round-trips messages both ways with ${name}`, () => {
          const options = {
            serverMaxWindowBits: bits,
            clientMaxWindowBits: bits,
            serverNoContextTakeover,
            clientNoContextTakeover,
          };
          const { server, client, serverParams, clientParams } = connectPair(options, {});
          assert.deepEqual(serverParams, {
            serverNoContextTakeover,
            clientNoContextTakeover,
            serverMaxWindowBits: bits,
            clientMaxWindowBits: bits,
          });
          assert.deepEqual(clientParams, serverParams);

          const sample = messages();
          for (const [data, binary] of sample) client.connection.send(data, binary);
          const up = transfer(client, server);
          assert.ok(
            up.every((frame) => frame.rsv1 && frame.masked),
            "client frames are compressed and masked",
          );
          assertReceived(server, sample);

          for (const [data, binary] of sample) server.connection.send(data, binary);
          const down = transfer(server, client);
          assert.ok(
            down.every((frame) => frame.rsv1 && !frame.masked),
            "server frames are compressed, unmasked",
          );
          assertReceived(client, sample);

          // Context takeover: a repeated message refers back to the first copy, unless forbidden.
          // 200 random hex digits: no repeats within, and short enough for a 256-byte window.
          const text = Buffer.from(randomBytes(createRandom(bits), 100).toString("hex"));
          for (const [from, to, noContext] of [
            [server, client, serverNoContextTakeover],
            [client, server, clientNoContextTakeover],
          ] as const) {
            const { first, second } = sendTwice(from, to, text);
            if (noContext)
              assert.ok(first.equals(second), "no context takeover: the same bytes each time");
            else
              assert.ok(
                second.length < first.length,
                "context takeover: the second copy is smaller",
              );
          }
          assert.equal(server.connection.failure, null);
          assert.equal(client.connection.failure, null);
        });
      }
    }
  }

  it("round-trips with different window sizes on each side", () => {
    for (const [clientOptions, serverOptions] of [
      [{ serverMaxWindowBits: 9 }, { clientMaxWindowBits: 12 }],
      [{ clientMaxWindowBits: 8 }, { serverMaxWindowBits: 10 }],
      [{}, { serverMaxWindowBits: 8, clientMaxWindowBits: 8 }],
    ] as Array<[DeflateOptions, DeflateOptions]>) {
      const { server, client } = connectPair(clientOptions, serverOptions);
      const sample = messages();
      for (const [data, binary] of sample) client.connection.send(data, binary);
      transfer(client, server);
      assertReceived(server, sample);
      for (const [data, binary] of sample) server.connection.send(data, binary);
      transfer(server, client);
      assertReceived(client, sample);
    }
  });

  it("sends large compressed messages as fragments, RSV1 on the first only, and reassembles them", () => {
    const { server, client } = connectPair({}, {}, { fragmentSize: 100 });
    const sample = messages();
    for (const [data, binary] of sample) client.connection.send(data, binary);
    const frames = transfer(client, server);
    assertReceived(server, sample);
    assert.ok(frames.length > sample.length, "some messages were fragmented");
    for (const frame of frames) {
      assert.ok(frame.payload.length <= 100);
      assert.equal(frame.rsv1, frame.opcode !== OP.continuation, "RSV1 exactly on first frames");
    }
    for (const [data, binary] of sample) server.connection.send(data, binary);
    transfer(server, client);
    assertReceived(client, sample);
  });

  it("sends messages below the threshold uncompressed", () => {
    const server = new Recorder({
      role: "server",
      compressor: new ZlibCompressor(DEFAULT_PARAMS, "server", { ...INLINE, threshold: 10 }),
    });
    server.connection.send("short", false);
    server.connection.send("long enough to compress", false);
    server.connection.send("x".repeat(1000), false); // the string path also compresses
    const frames = decodeFrames(server.output());
    assert.deepEqual(
      frames.map((frame) => frame.rsv1),
      [false, true, true],
    );
    assert.equal(server.connection.compressed, true);
  });
});

for (const role of ROLES) {
  describe(`Connection receiving compressed messages (${role} role)`, () => {
    it("inflates a compressed text and binary message however the bytes are split", () => {
      const text = "compressed ".repeat(100);
      const binary = randomBytes(createRandom(3), 500);
      const input = Buffer.concat([
        inbound(role, OP.text, deflate(text), { rsv1: true }),
        inbound(role, OP.binary, deflate(binary), { rsv1: true }),
      ]);
      const recorder = replay(compressed(role), input);
      assert.deepStrictEqual(recorder.events, [
        { type: "message", data: Buffer.from(text), binary: false },
        { type: "message", data: binary, binary: true },
      ]);
    });

    it("inflates a compressed empty message (a single 00 byte, §7.2.3.6)", () => {
      const recorder = replay(
        compressed(role),
        inbound(role, OP.text, Buffer.from([0x00]), { rsv1: true }),
      );
      assert.deepStrictEqual(recorder.events, [
        { type: "message", data: Buffer.alloc(0), binary: false },
      ]);
    });

    it("accepts an uncompressed message on a compressed connection", () => {
      const recorder = replay(compressed(role), inbound(role, OP.text, "plain"));
      assert.deepStrictEqual(recorder.events, [
        { type: "message", data: Buffer.from("plain"), binary: false },
      ]);
    });

    it("inflates a compressed message whose DEFLATE data is cut into fragments at any point", () => {
      const random = createRandom(8);
      const text = Buffer.from("fragmented and compressed: é 🌍 ".repeat(200));
      const data = deflate(text);
      for (let trial = 0; trial < 6; trial++) {
        const cuts = [
          0,
          ...[1, 2, 3].map(() => Math.floor(random() * data.length)).sort((a, b) => a - b),
          data.length,
        ];
        const frames = cuts.slice(0, -1).map((start, i) =>
          inbound(role, i === 0 ? OP.text : OP.continuation, data.subarray(start, cuts[i + 1]), {
            rsv1: i === 0,
            fin: i === cuts.length - 2,
          }),
        );
        const recorder = replay(compressed(role), Buffer.concat(frames));
        assert.deepStrictEqual(
          recorder.events,
          [{ type: "message", data: text, binary: false }],
          `cuts ${cuts.join(",")}`,
        );
      }
    });

    it("answers a ping between the fragments of a compressed message", () => {
      const data = deflate("x".repeat(1000));
      const input = Buffer.concat([
        inbound(role, OP.text, data.subarray(0, 3), { rsv1: true, fin: false }),
        inbound(role, OP.ping, "mid"),
        inbound(role, OP.continuation, data.subarray(3)),
      ]);
      const recorder = replay(compressed(role), input);
      assert.equal(recorder.events.length, 2);
      assertSent(role, recorder.output(), [{ opcode: OP.pong, payload: "mid" }]);
    });

    it("keeps the LZ77 context between messages (context takeover)", () => {
      // One deflate stream for two messages: the second refers back into the first.
      const deflater = zlib.createDeflateRaw();
      const chunks: Buffer[] = [];
      deflater.on("data", (chunk: Buffer) => chunks.push(chunk));
      const text = "a message that will be sent twice; ".repeat(10);
      const payloads: Buffer[] = [];
      const done = new Promise<void>((resolve) => {
        deflater.write(text);
        deflater.flush(zlib.constants.Z_SYNC_FLUSH, () => {
          payloads.push(Buffer.concat(chunks.splice(0)));
          deflater.write(text);
          deflater.flush(zlib.constants.Z_SYNC_FLUSH, () => {
            payloads.push(Buffer.concat(chunks.splice(0)));
            resolve();
          });
        });
      });
      return done.then(() => {
        const [first, second] = payloads.map((payload) =>
          payload.subarray(0, payload.length - 4),
        ) as [Buffer, Buffer];
        assert.ok(second.length < first.length);
        const input = Buffer.concat([
          inbound(role, OP.text, first, { rsv1: true }),
          inbound(role, OP.text, second, { rsv1: true }),
        ]);
        const recorder = replay(compressed(role), input);
        assert.equal(recorder.events.length, 2);
        assert.ok(
          recorder.events.every(
            (event) => event.type === "message" && event.data.toString() === text,
          ),
        );
        deflater.close();
      });
    });

    it("inflates consecutive messages that each end the DEFLATE stream with BFINAL (§7.2.3.4)", () => {
      const input = Buffer.concat(
        ["first message", "second message", "third"].map((text) =>
          inbound(role, OP.text, zlib.deflateRawSync(text), { rsv1: true }),
        ),
      );
      const recorder = replay(compressed(role), input);
      assert.deepStrictEqual(
        recorder.events.map((event) =>
          event.type === "message" ? event.data.toString() : event.type,
        ),
        ["first message", "second message", "third"],
      );
    });

    it("fails with 1002 on RSV1 set on a continuation frame", () => {
      const data = deflate("hello hello hello");
      const input = Buffer.concat([
        inbound(role, OP.text, data.subarray(0, 4), { rsv1: true, fin: false }),
        inbound(role, OP.continuation, data.subarray(4), { rsv1: true }),
      ]);
      assertFails(role, input, 1002, compressed(role));
    });

    it("fails with 1002 on RSV1 set on a continuation of an uncompressed message", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, "a", { fin: false }),
        inbound(role, OP.continuation, "b", { rsv1: true }),
      ]);
      assertFails(role, input, 1002, compressed(role));
    });

    it("fails with 1002 on RSV1 set on a control frame", () => {
      assertFails(role, inbound(role, OP.ping, "", { rsv1: true }), 1002, compressed(role));
    });

    it("fails with 1002 on RSV2 or RSV3 even with compression negotiated", () => {
      assertFails(
        role,
        inbound(role, OP.text, deflate("x"), { rsv1: true, rsv2: true }),
        1002,
        compressed(role),
      );
      assertFails(
        role,
        inbound(role, OP.text, deflate("x"), { rsv3: true }),
        1002,
        compressed(role),
      );
    });

    it("fails with 1007 on corrupt compressed data", () => {
      assertFails(
        role,
        inbound(role, OP.binary, Buffer.from([0xff, 0xff, 0xff, 0xff]), { rsv1: true }),
        1007,
        compressed(role),
      );
    });

    it("fails with 1007 on corrupt data in a later fragment", () => {
      const input = Buffer.concat([
        inbound(role, OP.binary, deflateFragment("good start ".repeat(20)), {
          rsv1: true,
          fin: false,
        }),
        inbound(role, OP.continuation, Buffer.from([0xff, 0xee, 0xdd])),
      ]);
      assertFails(role, input, 1007, compressed(role));
    });

    it("fails with 1007 on a compressed text message that inflates to invalid UTF-8", () => {
      assertFails(
        role,
        inbound(role, OP.text, deflate(Buffer.from([0x61, 0xff])), { rsv1: true }),
        1007,
        compressed(role),
      );
    });

    it("fails with 1007 on a compressed fragmented text message that ends inside a code point", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, deflateFragment(Buffer.from([0x61, 0xe2])), {
          rsv1: true,
          fin: false,
        }),
        inbound(role, OP.continuation, Buffer.from([0x00])),
      ]);
      assertFails(role, input, 1007, compressed(role));
    });

    it("accepts a message that inflates to exactly maxPayload and refuses one byte more with 1009", () => {
      const exact = Buffer.alloc(5000, 0x61);
      const ok = replay(
        compressed(role, { maxPayload: 5000 }),
        inbound(role, OP.text, deflate(exact), { rsv1: true }),
      );
      assert.deepStrictEqual(ok.events, [{ type: "message", data: exact, binary: false }]);
      assertFails(
        role,
        inbound(role, OP.text, deflate(Buffer.alloc(5001, 0x61)), { rsv1: true }),
        1009,
        compressed(role, { maxPayload: 5000 }),
      );
    });

    it("fails with 1009 when compressed fragments inflate to more than maxPayload together", () => {
      const input = Buffer.concat([
        inbound(role, OP.binary, deflateFragment(Buffer.alloc(3000)), { rsv1: true, fin: false }),
        inbound(role, OP.continuation, deflate(Buffer.alloc(3000))),
      ]);
      const recorder = assertFails(role, input, 1009, compressed(role, { maxPayload: 5000 }));
      assert.equal(recorder.events.length, 1);
    });

    it("fails with 1009 at the header on a compressed frame too long to inflate within maxPayload", () => {
      // Deflate never expands data by more than a few bytes per 16 KiB, so a compressed frame
      // much longer than maxPayload cannot be honest.
      const header = inbound(role, OP.binary, "", { rsv1: true, declaredLength: 100_000 });
      assertFails(role, header, 1009, compressed(role, { maxPayload: 10_000 }));
    });

    it("delivers compressed frames in frame mode, the message inflated whole with its last frame", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, deflateFragment("first part, "), { rsv1: true, fin: false }),
        inbound(role, OP.continuation, deflate("second part")),
        inbound(role, OP.binary, deflate(Buffer.from([1, 2, 3])), { rsv1: true }),
      ]);
      const recorder = replay(compressed(role, { frameMode: true }), input);
      // A compressed message is inflated once it is complete (node:zlib has no public way to
      // keep an engine between frames), so the frames before the last one arrive empty.
      assert.deepStrictEqual(recorder.events, [
        { type: "frame", opcode: OP.text, payload: Buffer.alloc(0), fin: false },
        {
          type: "frame",
          opcode: OP.continuation,
          payload: Buffer.from("first part, second part"),
          fin: true,
        },
        { type: "frame", opcode: OP.binary, payload: Buffer.from([1, 2, 3]), fin: true },
      ]);
    });

    it("applies maxPayload to inflated frames in frame mode", () => {
      const input = Buffer.concat([
        inbound(role, OP.binary, deflateFragment(Buffer.alloc(600)), { rsv1: true, fin: false }),
        inbound(role, OP.continuation, deflate(Buffer.alloc(600))),
      ]);
      assertFails(role, input, 1009, compressed(role, { frameMode: true, maxPayload: 1000 }));
    });

    it("fails with 1009 on a decompression bomb (100 MiB of zeros) with memory bounded", async () => {
      const bomb = await deflatedZeros(100);
      assert.ok(bomb.length < 200_000, `the bomb is small: ${bomb.length} bytes`);
      const frame = inbound(role, OP.binary, bomb, { rsv1: true });
      const before = process.memoryUsage();
      const recorder = new Recorder(compressed(role, { maxPayload: 1 << 20 })());
      recorder.receive(frame);
      const after = process.memoryUsage();
      assert.deepEqual(
        recorder.events.map((event) => (event.type === "error" ? event.closeCode : event.type)),
        [1009],
      );
      assert.equal(recorder.state, ConnectionState.Closed);
      const grownArrayBuffers = after.arrayBuffers - before.arrayBuffers;
      const grownRss = after.rss - before.rss;
      assert.ok(
        grownArrayBuffers < 16 * 1024 * 1024,
        `arrayBuffers grew by ${grownArrayBuffers} bytes`,
      );
      assert.ok(grownRss < 48 * 1024 * 1024, `rss grew by ${grownRss} bytes`);
    });

    it("fails with 1009 on a decompression bomb sent as many small fragments", async () => {
      const bomb = await deflatedZeros(20);
      const pieces: Buffer[] = [];
      let start = 0;
      for (const length of randomPieces(bomb.length, 5)) {
        pieces.push(bomb.subarray(start, start + length));
        start += length;
      }
      const frames = pieces.map((piece, i) =>
        inbound(role, i === 0 ? OP.binary : OP.continuation, piece, {
          rsv1: i === 0,
          fin: i === pieces.length - 1,
        }),
      );
      const recorder = new Recorder(compressed(role, { maxPayload: 1 << 20 })());
      recorder.receive(Buffer.concat(frames));
      assert.equal(recorder.connection.failure?.closeCode, 1009);
    });
  });
}

describe("Connection and its MessageCompressor", () => {
  /** A stand-in compressor that fails with a long, non-ASCII message and records close(). */
  class BrokenCompressor implements MessageCompressor {
    readonly threshold = 0;
    closed = 0;
    decompress(): Buffer | null {
      throw new Error(`zlib says ${"é".repeat(100)}`);
    }
    compress(data: Buffer): Buffer {
      return data;
    }
    decompressAsync(): void {
      throw new Error("never handed out");
    }
    compressAsync(): void {
      throw new Error("never handed out");
    }
    close(): void {
      this.closed++;
    }
  }

  it("cuts a long failure message to fit the close frame, without splitting a code point", () => {
    const recorder = new Recorder({ role: "client", compressor: new BrokenCompressor() });
    recorder.receive(inbound("client", OP.text, "x", { rsv1: true }));
    assert.equal(recorder.connection.failure?.closeCode, 1007);
    const [frame] = decodeFrames(recorder.output());
    assert.ok(frame!.payload.length <= 125);
    const reason = frame!.payload.subarray(2);
    assert.ok(reason.length > 100, "most of the message is kept");
    assert.equal(Buffer.from(reason.toString("utf8")).equals(reason), true, "valid UTF-8");
  });

  it("closes the compressor on dispose, once", () => {
    const compressor = new BrokenCompressor();
    const recorder = new Recorder({ role: "server", compressor });
    assert.equal(recorder.connection.compressed, true);
    recorder.connection.dispose();
    recorder.connection.dispose();
    assert.equal(compressor.closed, 1);
    assert.equal(recorder.connection.compressed, false);
  });
});
