import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConnectionState } from "../../../src/protocol/connection.js";
import {
  assertFails,
  assertSent,
  closeBody,
  createRandom,
  inbound,
  OP,
  ROLES,
  randomBytes,
  replay,
} from "../../helpers/protocol-harness.js";

for (const role of ROLES) {
  describe(`Connection frame mode (${role} role)`, () => {
    it("delivers an unfragmented message as one final frame, whole however it was split", () => {
      const payload = randomBytes(createRandom(1), 300);
      const recorder = replay({ role, frameMode: true }, inbound(role, OP.binary, payload));
      assert.deepStrictEqual(recorder.events, [
        { type: "frame", opcode: OP.binary, payload, fin: true },
      ]);
    });

    it("delivers a large frame split across many reads whole and intact", () => {
      const payload = randomBytes(createRandom(2), 100_000);
      const recorder = replay({ role, frameMode: true }, inbound(role, OP.binary, payload));
      assert.equal(recorder.events.length, 1);
      const event = recorder.events[0]!;
      assert.ok(event.type === "frame" && event.payload.equals(payload));
    });

    it("delivers each fragment as a frame, continuations with opcode 0 as on the wire", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, "Hel", { fin: false }),
        inbound(role, OP.continuation, "lo, ", { fin: false }),
        inbound(role, OP.continuation, "world"),
        inbound(role, OP.binary, Buffer.from([1, 2])),
      ]);
      const recorder = replay({ role, frameMode: true }, input);
      assert.deepStrictEqual(recorder.events, [
        { type: "frame", opcode: OP.text, payload: Buffer.from("Hel"), fin: false },
        { type: "frame", opcode: OP.continuation, payload: Buffer.from("lo, "), fin: false },
        { type: "frame", opcode: OP.continuation, payload: Buffer.from("world"), fin: true },
        { type: "frame", opcode: OP.binary, payload: Buffer.from([1, 2]), fin: true },
      ]);
    });

    it("delivers empty frames", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, "", { fin: false }),
        inbound(role, OP.continuation, ""),
      ]);
      const recorder = replay({ role, frameMode: true }, input);
      assert.deepStrictEqual(recorder.events, [
        { type: "frame", opcode: OP.text, payload: Buffer.alloc(0), fin: false },
        { type: "frame", opcode: OP.continuation, payload: Buffer.alloc(0), fin: true },
      ]);
    });

    it("delivers pings and pongs as frames and leaves the pong to the application", () => {
      const input = Buffer.concat([inbound(role, OP.ping, "ping"), inbound(role, OP.pong, "pong")]);
      const recorder = replay({ role, frameMode: true }, input);
      assert.deepStrictEqual(recorder.events, [
        { type: "frame", opcode: OP.ping, payload: Buffer.from("ping"), fin: true },
        { type: "frame", opcode: OP.pong, payload: Buffer.from("pong"), fin: true },
      ]);
      assert.equal(recorder.output().length, 0);
      recorder.connection.pong("ping");
      assertSent(role, recorder.output(), [{ opcode: OP.pong, payload: "ping" }]);
    });

    it("never answers pings itself, even with autoPong set", () => {
      const recorder = replay(
        { role, frameMode: true, autoPong: true },
        inbound(role, OP.ping, "x"),
      );
      assert.equal(recorder.output().length, 0);
    });

    it("delivers control frames between fragments", () => {
      const input = Buffer.concat([
        inbound(role, OP.binary, "a", { fin: false }),
        inbound(role, OP.ping, "p"),
        inbound(role, OP.continuation, "b"),
      ]);
      const recorder = replay({ role, frameMode: true }, input);
      assert.deepStrictEqual(
        recorder.events.map((event) =>
          event.type === "frame" ? [event.opcode, event.payload.toString(), event.fin] : [],
        ),
        [
          [OP.binary, "a", false],
          [OP.ping, "p", true],
          [OP.continuation, "b", true],
        ],
      );
    });

    it("reports a close frame and moves to CloseReceived without replying", () => {
      const recorder = replay(
        { role, frameMode: true },
        inbound(role, OP.close, closeBody(1000, "bye")),
      );
      assert.equal(recorder.state, ConnectionState.CloseReceived);
      assert.equal(recorder.output().length, 0);
    });

    it("delivers text frames whose code points are split between frames", () => {
      const bytes = Buffer.from("é🌍");
      const input = Buffer.concat([
        inbound(role, OP.text, bytes.subarray(0, 1), { fin: false }),
        inbound(role, OP.continuation, bytes.subarray(1, 3), { fin: false }),
        inbound(role, OP.continuation, bytes.subarray(3)),
      ]);
      const recorder = replay({ role, frameMode: true }, input);
      assert.deepEqual(
        Buffer.concat(
          recorder.events.map((event) =>
            event.type === "frame" ? event.payload : Buffer.alloc(0),
          ),
        ),
        bytes,
      );
    });

    it("fails with 1007 on invalid UTF-8 in a text frame", () => {
      assertFails(role, inbound(role, OP.text, Buffer.from([0x61, 0xff])), 1007, {
        frameMode: true,
      });
    });

    it("fails with 1007 on invalid UTF-8 split across frames", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, Buffer.from([0x61, 0xe2]), { fin: false }),
        inbound(role, OP.continuation, Buffer.from([0x41])),
      ]);
      assertFails(role, input, 1007, { frameMode: true });
    });

    it("fails with 1007 on a text message that ends inside a code point", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, Buffer.from([0x61]), { fin: false }),
        inbound(role, OP.continuation, Buffer.from([0xe2, 0x82])),
      ]);
      assertFails(role, input, 1007, { frameMode: true });
    });

    it("validates the next message afresh after a final frame", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, "é", { fin: false }),
        inbound(role, OP.continuation, "!"),
        inbound(role, OP.text, "again"),
      ]);
      assert.equal(replay({ role, frameMode: true }, input).events.length, 3);
    });

    it("applies maxPayload to the message across its frames", () => {
      const input = Buffer.concat([
        inbound(role, OP.binary, Buffer.alloc(60), { fin: false }),
        inbound(role, OP.continuation, Buffer.alloc(41)),
      ]);
      const recorder = assertFails(role, input, 1009, { frameMode: true, maxPayload: 100 });
      assert.equal(recorder.events[0]?.type, "frame", "the first frame was delivered");
      const ok = Buffer.concat([
        inbound(role, OP.binary, Buffer.alloc(60), { fin: false }),
        inbound(role, OP.continuation, Buffer.alloc(40)),
        inbound(role, OP.binary, Buffer.alloc(100)),
      ]);
      assert.equal(replay({ role, frameMode: true, maxPayload: 100 }, ok).events.length, 3);
    });

    it("still enforces the fragmentation rules", () => {
      assertFails(role, inbound(role, OP.continuation, "x"), 1002, { frameMode: true });
      const input = Buffer.concat([
        inbound(role, OP.text, "a", { fin: false }),
        inbound(role, OP.binary, "b"),
      ]);
      assertFails(role, input, 1002, { frameMode: true });
    });
  });
}
