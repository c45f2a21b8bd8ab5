import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConnectionState } from "../../../src/protocol/connection.js";
import {
  assertFails,
  assertSent,
  buildFrame,
  createRandom,
  inbound,
  MASK_KEY,
  messageText,
  OP,
  ROLES,
  randomBytes,
  replay,
} from "../../helpers/protocol-harness.js";

const PROTOCOL_ERROR = 1002;
const MESSAGE_TOO_BIG = 1009;

for (const role of ROLES) {
  describe(`Connection framing (${role} role)`, () => {
    describe("data frames", () => {
      const cases: Array<[number, number]> = [
        [0, 0],
        [1, 0],
        [125, 0],
        [126, 2],
        [127, 2],
        [65535, 2],
        [65536, 8],
        [1 << 20, 8],
      ];
      // Byte-by-byte replays of a megabyte only cost time; the random splits still cut it up.
      const bytewise = (length: number) => length <= 65536;
      for (const [length, lengthBytes] of cases) {
        it(`delivers a ${length}-byte text message (${lengthBytes * 8 || 7}-bit length)`, () => {
          const text = "abcdefghijklmnopqrstuvwxyz0123456789"
            .repeat(Math.ceil(length / 36))
            .slice(0, length);
          const frame = inbound(role, OP.text, text);
          assert.equal(frame.length, 2 + lengthBytes + (role === "server" ? 4 : 0) + length);
          const recorder = replay({ role }, frame, { bytewise: bytewise(length) });
          assert.equal(recorder.events.length, 1);
          assert.equal(messageText(recorder.events[0]), text);
          assert.equal((recorder.events[0] as { binary: boolean }).binary, false);
          assert.equal(recorder.output().length, 0);
          assert.equal(recorder.state, ConnectionState.Open);
        });

        it(`delivers a ${length}-byte binary message (${lengthBytes * 8 || 7}-bit length)`, () => {
          const payload = randomBytes(createRandom(length), length);
          const recorder = replay({ role }, inbound(role, OP.binary, payload), {
            bytewise: bytewise(length),
          });
          assert.deepStrictEqual(recorder.events, [
            { type: "message", data: payload, binary: true },
          ]);
        });
      }

      it("accepts a non-minimal length encoding (16-bit and 64-bit lengths for short payloads)", () => {
        const input = Buffer.concat([
          inbound(role, OP.text, "short", { lengthBytes: 2 }),
          inbound(role, OP.binary, Buffer.from([1, 2, 3]), { lengthBytes: 8 }),
        ]);
        const recorder = replay({ role }, input);
        assert.deepStrictEqual(recorder.events, [
          { type: "message", data: Buffer.from("short"), binary: false },
          { type: "message", data: Buffer.from([1, 2, 3]), binary: true },
        ]);
      });

      it("delivers several messages that arrive in one chunk, in order", () => {
        const input = Buffer.concat([
          inbound(role, OP.text, "one"),
          inbound(role, OP.binary, Buffer.from([2])),
          inbound(role, OP.text, ""),
          inbound(role, OP.text, "four"),
        ]);
        const recorder = replay({ role }, input);
        assert.deepStrictEqual(
          recorder.events.map((event) =>
            event.type === "message" ? event.data.toString("latin1") : event.type,
          ),
          ["one", "\u0002", "", "four"],
        );
      });

      it("fails with 1002 on a 64-bit length with its most significant bit set", () => {
        assertFails(
          role,
          inbound(role, OP.binary, "", { lengthBytes: 8, high32: 0x80000000, declaredLength: 0 }),
          PROTOCOL_ERROR,
        );
      });

      it("fails with 1009 on a 64-bit length beyond any limit (top bit clear)", () => {
        const frame = inbound(role, OP.binary, "", {
          lengthBytes: 8,
          high32: 0x7fffffff,
          declaredLength: 0,
        });
        assertFails(role, frame, MESSAGE_TOO_BIG);
      });
    });

    describe("masking (§5.1)", () => {
      if (role === "server") {
        it("fails with 1002 on an unmasked client frame", () => {
          assertFails(role, buildFrame(OP.text, "hello"), PROTOCOL_ERROR);
        });
        it("fails with 1002 on an unmasked client control frame", () => {
          assertFails(role, buildFrame(OP.ping, "hello"), PROTOCOL_ERROR);
        });
        it("unmasks with every masking key, including an all-zero one", () => {
          for (const key of [
            Buffer.from([0, 0, 0, 0]),
            Buffer.from([0xff, 0xff, 0xff, 0xff]),
            Buffer.from([1, 2, 3, 4]),
          ]) {
            const payload = randomBytes(createRandom(key[3]!), 300);
            const recorder = replay({ role }, buildFrame(OP.binary, payload, { mask: key }));
            assert.deepStrictEqual(recorder.events, [
              { type: "message", data: payload, binary: true },
            ]);
          }
        });
      } else {
        it("fails with 1002 on a masked server frame", () => {
          assertFails(role, buildFrame(OP.text, "hello", { mask: MASK_KEY }), PROTOCOL_ERROR);
        });
        it("fails with 1002 on a masked server control frame", () => {
          assertFails(role, buildFrame(OP.pong, "hello", { mask: MASK_KEY }), PROTOCOL_ERROR);
        });
      }
    });

    describe("reserved bits and opcodes (§5.2)", () => {
      for (const bit of ["rsv1", "rsv2", "rsv3"] as const) {
        it(`fails with 1002 on ${bit.toUpperCase()} set on a text frame without an extension`, () => {
          assertFails(role, inbound(role, OP.text, "hi", { [bit]: true }), PROTOCOL_ERROR);
        });
        it(`fails with 1002 on ${bit.toUpperCase()} set on a ping`, () => {
          assertFails(role, inbound(role, OP.ping, "hi", { [bit]: true }), PROTOCOL_ERROR);
        });
      }
      it("fails with 1002 on RSV2 on a continuation in the middle of a message", () => {
        const input = Buffer.concat([
          inbound(role, OP.text, "a", { fin: false }),
          inbound(role, OP.continuation, "b", { rsv2: true }),
        ]);
        assertFails(role, input, PROTOCOL_ERROR);
      });
      for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
        it(`fails with 1002 on reserved opcode 0x${opcode.toString(16)}`, () => {
          assertFails(role, inbound(role, opcode, "payload"), PROTOCOL_ERROR);
        });
      }
      it("fails with 1002 on a reserved opcode after a valid message, which is still delivered", () => {
        const recorder = assertFails(
          role,
          Buffer.concat([inbound(role, OP.text, "first"), inbound(role, 0x3, "")]),
          PROTOCOL_ERROR,
        );
        assert.equal(messageText(recorder.events[0]), "first");
      });
    });

    describe("control frames (§5.5)", () => {
      for (const opcode of [OP.ping, OP.pong, OP.close]) {
        it(`fails with 1002 on a 0x${opcode.toString(16)} frame longer than 125 bytes`, () => {
          const payload =
            opcode === OP.close
              ? Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.alloc(124, 0x61)])
              : Buffer.alloc(126, 0x61);
          assertFails(role, inbound(role, opcode, payload), PROTOCOL_ERROR);
        });
        it(`fails with 1002 on a fragmented 0x${opcode.toString(16)} frame`, () => {
          assertFails(role, inbound(role, opcode, "", { fin: false }), PROTOCOL_ERROR);
        });
      }

      it("fails with 1002 on a control frame with a 16-bit length field, even for 5 bytes", () => {
        assertFails(role, inbound(role, OP.ping, "hello", { lengthBytes: 2 }), PROTOCOL_ERROR);
      });

      it("answers a ping with a pong carrying the same payload", () => {
        const recorder = replay({ role }, inbound(role, OP.ping, "are you there?"));
        assert.deepStrictEqual(recorder.events, [
          { type: "ping", payload: Buffer.from("are you there?") },
        ]);
        assertSent(role, recorder.output(), [{ opcode: OP.pong, payload: "are you there?" }]);
      });

      it("answers an empty ping with an empty pong", () => {
        const recorder = replay({ role }, inbound(role, OP.ping));
        assertSent(role, recorder.output(), [{ opcode: OP.pong, payload: "" }]);
      });

      it("answers a 125-byte binary ping with the same 125 bytes", () => {
        const payload = randomBytes(createRandom(125), 125);
        const recorder = replay({ role }, inbound(role, OP.ping, payload));
        assertSent(role, recorder.output(), [{ opcode: OP.pong, payload }]);
      });

      it("answers each of several pings in order", () => {
        const input = Buffer.concat(["1", "2", "3"].map((p) => inbound(role, OP.ping, p)));
        const recorder = replay({ role }, input);
        assertSent(
          role,
          recorder.output(),
          ["1", "2", "3"].map((payload) => ({ opcode: OP.pong, payload })),
        );
      });

      it("does not answer pings when autoPong is off, but still reports them", () => {
        const recorder = replay({ role, autoPong: false }, inbound(role, OP.ping, "x"));
        assert.deepStrictEqual(recorder.events, [{ type: "ping", payload: Buffer.from("x") }]);
        assert.equal(recorder.output().length, 0);
      });

      it("delivers a pong and sends nothing back", () => {
        const recorder = replay({ role }, inbound(role, OP.pong, "heartbeat"));
        assert.deepStrictEqual(recorder.events, [
          { type: "pong", payload: Buffer.from("heartbeat") },
        ]);
        assert.equal(recorder.output().length, 0);
      });

      it("delivers an unsolicited empty pong", () => {
        const recorder = replay({ role }, inbound(role, OP.pong));
        assert.deepStrictEqual(recorder.events, [{ type: "pong", payload: Buffer.alloc(0) }]);
      });
    });

    describe("fragmentation (§5.4)", () => {
      it("reassembles a text message from three fragments", () => {
        const input = Buffer.concat([
          inbound(role, OP.text, "frag", { fin: false }),
          inbound(role, OP.continuation, "ment", { fin: false }),
          inbound(role, OP.continuation, "ed"),
        ]);
        const recorder = replay({ role }, input);
        assert.deepStrictEqual(recorder.events, [
          { type: "message", data: Buffer.from("fragmented"), binary: false },
        ]);
      });

      it("reassembles a binary message from fragments of every length encoding", () => {
        const random = createRandom(7);
        const parts = [
          randomBytes(random, 100),
          randomBytes(random, 1000),
          randomBytes(random, 70_000),
          randomBytes(random, 1),
        ];
        const input = Buffer.concat(
          parts.map((part, i) =>
            inbound(role, i === 0 ? OP.binary : OP.continuation, part, {
              fin: i === parts.length - 1,
            }),
          ),
        );
        const recorder = replay({ role }, input);
        assert.deepStrictEqual(recorder.events, [
          { type: "message", data: Buffer.concat(parts), binary: true },
        ]);
      });

      it("reassembles a message whose fragments are all empty", () => {
        const input = Buffer.concat([
          inbound(role, OP.text, "", { fin: false }),
          inbound(role, OP.continuation, "", { fin: false }),
          inbound(role, OP.continuation, ""),
        ]);
        const recorder = replay({ role }, input);
        assert.deepStrictEqual(recorder.events, [
          { type: "message", data: Buffer.alloc(0), binary: false },
        ]);
      });

      it("reassembles a message whose first fragments are empty and whose last is not", () => {
        const input = Buffer.concat([
          inbound(role, OP.binary, "", { fin: false }),
          inbound(role, OP.continuation, "", { fin: false }),
          inbound(role, OP.continuation, "tail"),
          inbound(role, OP.text, "next", { fin: false }),
          inbound(role, OP.continuation, " one"),
        ]);
        const recorder = replay({ role }, input);
        assert.deepStrictEqual(recorder.events, [
          { type: "message", data: Buffer.from("tail"), binary: true },
          { type: "message", data: Buffer.from("next one"), binary: false },
        ]);
      });

      it("reassembles a message of many fragments that grows its buffer several times", () => {
        const random = createRandom(99);
        const parts = Array.from({ length: 40 }, (_, i) => randomBytes(random, 37 * i + 3));
        const input = Buffer.concat(
          parts.map((part, i) =>
            inbound(role, i === 0 ? OP.binary : OP.continuation, part, { fin: i === 39 }),
          ),
        );
        const recorder = replay({ role }, input);
        assert.deepStrictEqual(recorder.events, [
          { type: "message", data: Buffer.concat(parts), binary: true },
        ]);
      });

      it("accepts control frames between fragments and answers a ping in the middle", () => {
        const input = Buffer.concat([
          inbound(role, OP.text, "Hello, ", { fin: false }),
          inbound(role, OP.ping, "mid"),
          inbound(role, OP.continuation, "fragmented ", { fin: false }),
          inbound(role, OP.pong, "pong"),
          inbound(role, OP.continuation, "world"),
        ]);
        const recorder = replay({ role }, input);
        assert.deepStrictEqual(recorder.events, [
          { type: "ping", payload: Buffer.from("mid") },
          { type: "pong", payload: Buffer.from("pong") },
          { type: "message", data: Buffer.from("Hello, fragmented world"), binary: false },
        ]);
        assertSent(role, recorder.output(), [{ opcode: OP.pong, payload: "mid" }]);
      });

      it("sends the pong for a ping between fragments before the message is complete", () => {
        const recorder = replay(
          { role },
          Buffer.concat([
            inbound(role, OP.binary, "a", { fin: false }),
            inbound(role, OP.ping, "now"),
          ]),
        );
        assert.deepStrictEqual(recorder.events, [{ type: "ping", payload: Buffer.from("now") }]);
        assertSent(role, recorder.output(), [{ opcode: OP.pong, payload: "now" }]);
      });

      it("fails with 1002 on a continuation frame without a message to continue", () => {
        assertFails(role, inbound(role, OP.continuation, "orphan"), PROTOCOL_ERROR);
      });

      it("fails with 1002 on a non-final continuation frame without a message to continue", () => {
        assertFails(role, inbound(role, OP.continuation, "orphan", { fin: false }), PROTOCOL_ERROR);
      });

      it("fails with 1002 on a continuation after a complete message", () => {
        const input = Buffer.concat([
          inbound(role, OP.text, "done"),
          inbound(role, OP.continuation, "more"),
        ]);
        const recorder = assertFails(role, input, PROTOCOL_ERROR);
        assert.equal(messageText(recorder.events[0]), "done");
      });

      it("fails with 1002 on a new text frame while a message is fragmented", () => {
        const input = Buffer.concat([
          inbound(role, OP.text, "a", { fin: false }),
          inbound(role, OP.text, "b"),
        ]);
        assertFails(role, input, PROTOCOL_ERROR);
      });

      it("fails with 1002 on a new binary frame while a text message is fragmented", () => {
        const input = Buffer.concat([
          inbound(role, OP.text, "a", { fin: false }),
          inbound(role, OP.continuation, "b", { fin: false }),
          inbound(role, OP.binary, "c", { fin: false }),
        ]);
        assertFails(role, input, PROTOCOL_ERROR);
      });
    });
  });
}
