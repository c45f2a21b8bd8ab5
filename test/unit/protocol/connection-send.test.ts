import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Connection, ConnectionState } from "../../../src/protocol/connection.js";
import { StateError } from "../../../src/protocol/errors.js";
import { encodeFrame } from "../../../src/protocol/frame.js";
import {
  assertSent,
  closeBody,
  createRandom,
  decodeFrames,
  inbound,
  OP,
  Recorder,
  ROLES,
  randomBytes,
} from "../../helpers/protocol-harness.js";

function throwsState(fn: () => unknown, code: string): void {
  assert.throws(fn, (error: unknown) => error instanceof StateError && error.code === code);
}

for (const role of ROLES) {
  describe(`Connection sending (${role} role)`, () => {
    it("sends a text string and a binary Buffer", () => {
      const recorder = new Recorder({ role });
      assert.equal(recorder.connection.send("hello", false), true);
      assert.equal(recorder.connection.send(Buffer.from([0, 1, 2]), true), true);
      assertSent(role, recorder.output(), [
        { opcode: OP.text, payload: "hello" },
        { opcode: OP.binary, payload: Buffer.from([0, 1, 2]) },
      ]);
    });

    it("sends a Buffer as text and a string as binary", () => {
      const recorder = new Recorder({ role });
      recorder.connection.send(Buffer.from("bytes"), false);
      recorder.connection.send("string", true);
      assertSent(role, recorder.output(), [
        { opcode: OP.text, payload: "bytes" },
        { opcode: OP.binary, payload: "string" },
      ]);
    });

    it("encodes strings as UTF-8, short and long, ASCII and not", () => {
      const samples = [
        "",
        "é",
        "日本語 🌍",
        "x".repeat(2047),
        "x".repeat(2048),
        "é".repeat(3000),
        "🌍".repeat(5000),
      ];
      const recorder = new Recorder({ role });
      for (const text of samples) recorder.connection.send(text, false);
      assertSent(
        role,
        recorder.output(),
        samples.map((payload) => ({ opcode: OP.text, payload })),
      );
    });

    it("frames every payload size with the right length encoding", () => {
      const random = createRandom(11);
      const sizes = [0, 125, 126, 65535, 65536, 16 * 1024 - 1, 16 * 1024, 100_000];
      const payloads = sizes.map((size) => randomBytes(random, size));
      const recorder = new Recorder({ role });
      for (const payload of payloads) recorder.connection.send(payload, true);
      const frames = assertSent(
        role,
        recorder.output(),
        payloads.map((payload) => ({ opcode: OP.binary, payload })),
      );
      assert.deepEqual(
        frames.map((frame) => frame.lengthBytes),
        sizes.map((size) => (size < 126 ? 0 : size < 65536 ? 2 : 8)),
      );
    });

    it("splits messages larger than fragmentSize into fragments", () => {
      const recorder = new Recorder({ role, fragmentSize: 10 });
      recorder.connection.send("abcdefghijklmnopqrstuvwxy", false);
      recorder.connection.send(Buffer.from("0123456789"), true); // exactly fragmentSize: one frame
      recorder.connection.send("", false);
      assertSent(role, recorder.output(), [
        { opcode: OP.text, payload: "abcdefghij", fin: false },
        { opcode: OP.continuation, payload: "klmnopqrst", fin: false },
        { opcode: OP.continuation, payload: "uvwxy", fin: true },
        { opcode: OP.binary, payload: "0123456789" },
        { opcode: OP.text, payload: "" },
      ]);
    });

    it("splits a large binary message into fragments that reassemble to it", () => {
      const payload = randomBytes(createRandom(5), 100_000);
      const recorder = new Recorder({ role, fragmentSize: 30_000 });
      recorder.connection.send(payload, true);
      const frames = decodeFrames(recorder.output());
      assert.deepEqual(
        frames.map((frame) => [frame.opcode, frame.fin, frame.payload.length]),
        [
          [OP.binary, false, 30_000],
          [OP.continuation, false, 30_000],
          [OP.continuation, false, 30_000],
          [OP.continuation, true, 10_000],
        ],
      );
      assert.ok(Buffer.concat(frames.map((frame) => frame.payload)).equals(payload));
    });

    it("sends pings and pongs with and without payloads", () => {
      const recorder = new Recorder({ role });
      assert.equal(recorder.connection.ping(), true);
      assert.equal(recorder.connection.ping("p"), true);
      assert.equal(recorder.connection.pong(Buffer.from([1, 2])), true);
      assert.equal(recorder.connection.pong(), true);
      assert.equal(recorder.connection.ping("x".repeat(125)), true);
      assertSent(role, recorder.output(), [
        { opcode: OP.ping, payload: "" },
        { opcode: OP.ping, payload: "p" },
        { opcode: OP.pong, payload: Buffer.from([1, 2]) },
        { opcode: OP.pong, payload: "" },
        { opcode: OP.ping, payload: "x".repeat(125) },
      ]);
    });

    it("throws a StateError for a ping or pong over 125 bytes (counted in UTF-8 bytes)", () => {
      const connection = new Recorder({ role }).connection;
      throwsState(() => connection.ping(Buffer.alloc(126)), "ERR_WS_CONTROL_TOO_LONG");
      throwsState(() => connection.pong("x".repeat(126)), "ERR_WS_CONTROL_TOO_LONG");
      throwsState(() => connection.ping("é".repeat(63)), "ERR_WS_CONTROL_TOO_LONG");
    });

    it("sends a close frame with a code and a reason", () => {
      const recorder = new Recorder({ role });
      assert.equal(recorder.connection.close(4000, "custom"), true);
      assertSent(role, recorder.output(), [
        { opcode: OP.close, payload: closeBody(4000, "custom") },
      ]);
    });

    for (const code of [
      0,
      999,
      1004,
      1005,
      1006,
      1015,
      1016,
      2999,
      5000,
      65536,
      1000.5,
      Number.NaN,
      -1,
    ]) {
      it(`throws a StateError for close code ${code}`, () => {
        const recorder = new Recorder({ role });
        throwsState(() => recorder.connection.close(code), "ERR_WS_CLOSE_CODE");
        assert.equal(recorder.state, ConnectionState.Open);
        assert.equal(recorder.output().length, 0);
      });
    }

    it("throws a StateError for a reason without a code", () => {
      throwsState(
        () => new Recorder({ role }).connection.close(undefined, "why"),
        "ERR_WS_CLOSE_CODE",
      );
    });

    it("accepts a 123-byte reason and throws a StateError for 124 bytes", () => {
      const recorder = new Recorder({ role });
      throwsState(() => recorder.connection.close(1000, "x".repeat(124)), "ERR_WS_CLOSE_REASON");
      throwsState(() => recorder.connection.close(1000, "é".repeat(62)), "ERR_WS_CLOSE_REASON");
      assert.equal(recorder.connection.close(1000, "x".repeat(123)), true);
    });

    it("refuses to send after close: send, ping, pong and close return false and send nothing", () => {
      const recorder = new Recorder({ role });
      recorder.connection.close(1000);
      recorder.clearOutput();
      assert.equal(recorder.connection.send("late", false), false);
      assert.equal(recorder.connection.send(Buffer.from("late"), true), false);
      assert.equal(recorder.connection.ping(), false);
      assert.equal(recorder.connection.pong(), false);
      assert.equal(recorder.connection.close(1000), false);
      assert.equal(recorder.connection.sendFrame(OP.text, Buffer.from("x"), true), false);
      assert.equal(recorder.output().length, 0);
    });

    it("sends raw frames with sendFrame: fragments, continuations and control frames", () => {
      const recorder = new Recorder({ role });
      const c = recorder.connection;
      assert.equal(c.sendFrame(OP.text, Buffer.from("he"), false), true);
      assert.equal(c.sendFrame(OP.ping, Buffer.from("in between"), true), true);
      assert.equal(c.sendFrame(OP.continuation, Buffer.from("llo"), true), true);
      assert.equal(c.sendFrame(OP.pong, Buffer.alloc(0), true), true);
      assertSent(role, recorder.output(), [
        { opcode: OP.text, payload: "he", fin: false },
        { opcode: OP.ping, payload: "in between" },
        { opcode: OP.continuation, payload: "llo" },
        { opcode: OP.pong, payload: "" },
      ]);
    });

    it("sends a close through sendFrame with the close handshake's bookkeeping", () => {
      const recorder = new Recorder({ role });
      assert.equal(recorder.connection.sendFrame(OP.close, closeBody(1001, "bye"), true), true);
      assert.equal(recorder.state, ConnectionState.CloseSent);
      assert.equal(recorder.connection.closeCodeSent, 1001);
      assertSent(role, recorder.output(), [{ opcode: OP.close, payload: closeBody(1001, "bye") }]);
      const empty = new Recorder({ role });
      assert.equal(empty.connection.sendFrame(OP.close, Buffer.alloc(0), true), true);
      assertSent(role, empty.output(), [{ opcode: OP.close, payload: "" }]);
    });

    it("throws a StateError for a reserved or out-of-range opcode in sendFrame, sending nothing", () => {
      const recorder = new Recorder({ role });
      for (const opcode of [3, 7, 0xb, 0xf, 16, 0x81, -1, 1.5]) {
        throwsState(
          () => recorder.connection.sendFrame(opcode, Buffer.from("x"), true),
          "ERR_WS_STATE",
        );
      }
      assert.equal(recorder.output().length, 0);
    });

    it("throws a StateError for invalid control frames in sendFrame", () => {
      const c = new Recorder({ role }).connection;
      throwsState(() => c.sendFrame(OP.ping, Buffer.alloc(0), false), "ERR_WS_STATE");
      throwsState(() => c.sendFrame(OP.ping, Buffer.alloc(126), true), "ERR_WS_CONTROL_TOO_LONG");
      throwsState(() => c.sendFrame(OP.close, Buffer.from([3]), true), "ERR_WS_STATE");
      throwsState(() => c.sendFrame(OP.close, closeBody(1005), true), "ERR_WS_CLOSE_CODE");
      throwsState(
        () => c.sendFrame(OP.close, closeBody(1000, "x".repeat(124)), true),
        "ERR_WS_CLOSE_REASON",
      );
    });

    it("signals onOutput when output goes from empty to non-empty, once per drain", () => {
      const recorder = new Recorder({ role });
      assert.equal(recorder.outputSignals, 0);
      recorder.connection.send("a", false);
      recorder.connection.send("b", false);
      recorder.connection.ping();
      assert.equal(recorder.outputSignals, 1);
      assert.ok(recorder.connection.bufferedAmount > 0);
      recorder.drain();
      assert.equal(recorder.connection.bufferedAmount, 0);
      recorder.connection.send("c", false);
      assert.equal(recorder.outputSignals, 2);
    });

    it("tracks bufferedAmount in bytes", () => {
      const recorder = new Recorder({ role });
      recorder.connection.send("hello", false);
      assert.equal(recorder.connection.bufferedAmount, 2 + 5 + (role === "client" ? 4 : 0));
      recorder.connection.send(Buffer.alloc(70_000), true);
      assert.equal(
        recorder.connection.bufferedAmount,
        7 + (role === "client" ? 8 : 0) + 10 + 70_000,
      );
    });

    it("packs a burst of small frames into one contiguous output chunk", () => {
      const recorder = new Recorder({ role });
      recorder.connection.send(Buffer.alloc(20_000), true); // start the burst on a fresh slab
      recorder.drain();
      for (let i = 0; i < 100; i++) recorder.connection.send(`message ${i}`, false);
      const chunks: Buffer[] = [];
      recorder.connection.drainOutput((chunk) => chunks.push(chunk));
      assert.equal(chunks.length, 1);
      assertSent(
        role,
        chunks[0]!,
        Array.from({ length: 100 }, (_, i) => ({ opcode: OP.text, payload: `message ${i}` })),
      );
    });

    it("reports compressed false without a compressor", () => {
      assert.equal(new Recorder({ role }).connection.compressed, false);
    });

    it("ignores input after dispose()", () => {
      const recorder = new Recorder({ role });
      recorder.connection.dispose();
      recorder.receive(inbound(role, OP.text, "ignored"));
      assert.equal(recorder.events.length, 0);
    });

    it("keeps working when the application closes from inside onMessage", () => {
      const events: string[] = [];
      const connection: Connection = new Connection(
        {
          onMessage: (data) => {
            events.push(data.toString());
            connection.close(1000);
          },
          onClose: (code) => events.push(`close ${code}`),
          onError: () => events.push("error"),
          onOutput: () => {},
        },
        { role },
      );
      connection.receive(
        Buffer.concat([
          inbound(role, OP.text, "one"),
          inbound(role, OP.text, "two"),
          inbound(role, OP.close, closeBody(1000)),
        ]),
      );
      assert.deepEqual(events, ["one", "two", "close 1000"]);
      assert.equal(connection.state, ConnectionState.Closed);
    });

    it("stops delivering when the application disposes from inside onMessage", () => {
      const events: string[] = [];
      const connection: Connection = new Connection(
        {
          onMessage: (data) => {
            events.push(data.toString());
            connection.dispose();
          },
          onClose: () => events.push("close"),
          onError: () => events.push("error"),
          onOutput: () => {},
        },
        { role },
      );
      connection.receive(
        Buffer.concat([inbound(role, OP.text, "one"), inbound(role, OP.text, "two")]),
      );
      assert.deepEqual(events, ["one"]);
    });
  });
}

describe("Connection sending (server role only)", () => {
  it("never masks, and takes the string fast path with identical bytes", () => {
    const fast = new Recorder({ role: "server" });
    const slow = new Recorder({ role: "server" });
    for (const text of ["", "hello", "日本語 🌍", "y".repeat(2047)]) {
      fast.connection.send(text, false);
      slow.connection.send(Buffer.from(text), false);
    }
    assert.deepEqual(fast.output(), slow.output());
    assert.ok(decodeFrames(fast.output()).every((frame) => !frame.masked));
  });

  it("queues a large payload by reference, without copying it", () => {
    const recorder = new Recorder({ role: "server" });
    const payload = Buffer.alloc(100_000, 5);
    recorder.connection.send(payload, true);
    const chunks: Buffer[] = [];
    recorder.connection.drainOutput((chunk) => chunks.push(chunk));
    assert.ok(chunks.includes(payload));
  });

  it("sends a prebuilt frame by reference", () => {
    const recorder = new Recorder({ role: "server" });
    const frame = encodeFrame(OP.text, Buffer.from("broadcast"));
    assert.equal(recorder.connection.sendPrebuiltFrame(frame), true);
    const chunks: Buffer[] = [];
    recorder.connection.drainOutput((chunk) => chunks.push(chunk));
    assert.deepEqual(chunks, [frame]);
    assert.equal(chunks[0], frame);
    assert.equal(recorder.outputSignals, 1);
  });

  it("refuses a prebuilt frame after close", () => {
    const recorder = new Recorder({ role: "server" });
    recorder.connection.close();
    assert.equal(
      recorder.connection.sendPrebuiltFrame(encodeFrame(OP.text, Buffer.from("x"))),
      false,
    );
  });
});

describe("Connection sending (client role only)", () => {
  it("masks every frame with a fresh key from randomFill", () => {
    let counter = 0;
    const recorder = new Recorder({
      role: "client",
      randomFill: (target) => {
        target.fill(++counter);
      },
    });
    recorder.connection.send("one", false);
    recorder.connection.send(Buffer.alloc(20_000, 9), true);
    recorder.connection.ping("p");
    recorder.connection.close(1000);
    const frames = decodeFrames(recorder.output());
    assert.deepEqual(
      frames.map((frame) => frame.key),
      [1, 2, 3, 4].map((n) => Buffer.alloc(4, n)),
    );
    assert.equal(frames[0]!.payload.toString(), "one");
    assert.ok(frames[1]!.payload.equals(Buffer.alloc(20_000, 9)));
  });

  it("masks with crypto keys by default, and the payload survives (over more than one key pool refill)", () => {
    const chunks: Buffer[] = [];
    const connection = new Connection(
      { onMessage() {}, onClose() {}, onError() {}, onOutput() {} },
      { role: "client" },
    );
    for (let i = 0; i < 2100; i++) connection.send(`m${i}`, false);
    connection.send(Buffer.alloc(30_000, 1), true);
    connection.drainOutput((chunk) => chunks.push(Buffer.from(chunk)));
    const frames = decodeFrames(Buffer.concat(chunks));
    assert.equal(frames.length, 2101);
    assert.ok(frames.every((frame) => frame.masked));
    assert.deepEqual(
      frames.slice(0, 2100).map((frame) => frame.payload.toString()),
      Array.from({ length: 2100 }, (_, i) => `m${i}`),
    );
    assert.ok(frames[2100]!.payload.equals(Buffer.alloc(30_000, 1)));
    const keys = new Set(frames.map((frame) => frame.key!.toString("hex")));
    assert.ok(keys.size > 2000, "keys differ from frame to frame");
  });

  it("does not change the caller's payload when masking", () => {
    const recorder = new Recorder({ role: "client" });
    const small = Buffer.from("small payload");
    const large = Buffer.alloc(50_000, 0x42);
    recorder.connection.send(small, true);
    recorder.connection.send(large, true);
    recorder.drain();
    assert.equal(small.toString(), "small payload");
    assert.ok(large.equals(Buffer.alloc(50_000, 0x42)));
  });

  it("throws a StateError for a prebuilt (unmasked) frame", () => {
    const recorder = new Recorder({ role: "client" });
    assert.throws(
      () => recorder.connection.sendPrebuiltFrame(encodeFrame(OP.text, Buffer.from("x"))),
      StateError,
    );
  });
});
