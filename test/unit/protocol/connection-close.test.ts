import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConnectionState } from "../../../src/protocol/connection.js";
import {
  assertFails,
  assertSent,
  closeBody,
  closeCodeOf,
  decodeFrames,
  inbound,
  messageText,
  OP,
  Recorder,
  ROLES,
  replay,
} from "../../helpers/protocol-harness.js";

const VALID_CODES = [
  1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
];
const INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];

for (const role of ROLES) {
  describe(`Connection close frames (${role} role)`, () => {
    it("reports 1005 for an empty close frame and answers with an empty close frame", () => {
      const recorder = replay({ role }, inbound(role, OP.close));
      assert.deepStrictEqual(recorder.events, [{ type: "close", code: 1005, reason: "" }]);
      assertSent(role, recorder.output(), [{ opcode: OP.close, payload: "" }]);
      assert.equal(recorder.state, ConnectionState.Closed);
      assert.equal(recorder.connection.closeCodeReceived, 1005);
      assert.equal(recorder.connection.closeCodeSent, 1005);
    });

    it("fails with 1002 on a close frame with a 1-byte payload", () => {
      assertFails(role, inbound(role, OP.close, Buffer.from([0x03])), 1002);
    });

    for (const code of VALID_CODES) {
      it(`accepts close code ${code} and echoes it`, () => {
        const recorder = replay({ role }, inbound(role, OP.close, closeBody(code)));
        assert.deepStrictEqual(recorder.events, [{ type: "close", code, reason: "" }]);
        const [frame] = assertSent(role, recorder.output(), [{ opcode: OP.close }]);
        assert.equal(closeCodeOf(frame!), code);
        assert.equal(frame!.payload.length, 2, "no reason came, so none goes back");
        assert.equal(recorder.state, ConnectionState.Closed);
        assert.equal(recorder.connection.closeCodeReceived, code);
        assert.equal(recorder.connection.closeCodeSent, code);
      });
    }

    for (const code of INVALID_CODES) {
      it(`fails with 1002 on close code ${code}`, () => {
        assertFails(role, inbound(role, OP.close, closeBody(code, "why")), 1002);
      });
    }

    it("reports the reason of a close frame", () => {
      const recorder = replay({ role }, inbound(role, OP.close, closeBody(1001, "going away")));
      assert.deepStrictEqual(recorder.events, [
        { type: "close", code: 1001, reason: "going away" },
      ]);
      assert.equal(recorder.connection.closeReasonReceived, "going away");
    });

    it("reports a multi-byte UTF-8 reason, whole even when its code points are split across reads", () => {
      const reason = "fermé — 閉じた 🌍";
      const recorder = replay({ role }, inbound(role, OP.close, closeBody(4000, reason)));
      assert.deepStrictEqual(recorder.events, [{ type: "close", code: 4000, reason }]);
    });

    for (const reason of ["going away", "fermé — 閉じた 🌍", "r".repeat(123)]) {
      it(`answers with the peer's code and its reason (${Buffer.byteLength(reason)} bytes)`, () => {
        const recorder = replay({ role }, inbound(role, OP.close, closeBody(4001, reason)));
        assertSent(role, recorder.output(), [
          { opcode: OP.close, payload: closeBody(4001, reason) },
        ]);
        assert.equal(recorder.connection.closeCodeSent, 4001);
      });
    }

    it("accepts a 123-byte reason (the largest a close frame holds)", () => {
      const reason = "r".repeat(123);
      const recorder = replay({ role }, inbound(role, OP.close, closeBody(1000, reason)));
      assert.deepStrictEqual(recorder.events, [{ type: "close", code: 1000, reason }]);
    });

    const badReasons: Array<[string, number[]]> = [
      ["a lone 0xFF", [0xff]],
      ["a truncated sequence", [0x61, 0xc3]],
      ["an overlong NUL", [0xc0, 0x80]],
      ["a surrogate", [0xed, 0xa0, 0x80]],
      ["a code point above U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
    ];
    for (const [name, bytes] of badReasons) {
      it(`fails with 1007 on a close reason with ${name}`, () => {
        assertFails(role, inbound(role, OP.close, closeBody(1000, Buffer.from(bytes))), 1007);
      });
    }

    it("processes nothing after a close frame", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, "before"),
        inbound(role, OP.close, closeBody(1000)),
        inbound(role, OP.text, "after"),
        inbound(role, OP.ping, "after"),
        inbound(role, 0x3, "reserved opcode, never parsed"),
      ]);
      const recorder = replay({ role }, input);
      assert.equal(recorder.events.length, 2);
      assert.equal(messageText(recorder.events[0]), "before");
      assert.deepStrictEqual(recorder.events[1], { type: "close", code: 1000, reason: "" });
      assertSent(role, recorder.output(), [{ opcode: OP.close }]);
      recorder.receive(inbound(role, OP.text, "later"));
      assert.equal(recorder.events.length, 2);
    });

    it("ignores garbage after a close frame in the same chunk", () => {
      const input = Buffer.concat([
        inbound(role, OP.close, closeBody(1000)),
        Buffer.from([0xff, 0xff, 0xff]),
      ]);
      const recorder = replay({ role }, input);
      assert.deepStrictEqual(recorder.events, [{ type: "close", code: 1000, reason: "" }]);
      assert.equal(recorder.connection.failure, null);
    });

    it("accepts a close frame between the fragments of a message and drops the partial message", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, "part", { fin: false }),
        inbound(role, OP.close, closeBody(1000)),
      ]);
      const recorder = replay({ role }, input);
      assert.deepStrictEqual(recorder.events, [{ type: "close", code: 1000, reason: "" }]);
    });

    describe("the close handshake (ConnectionState)", () => {
      it("starts Open and can send", () => {
        const recorder = new Recorder({ role });
        assert.equal(recorder.state, ConnectionState.Open);
        assert.equal(recorder.connection.canSend, true);
        assert.equal(recorder.connection.closeCodeReceived, 1006);
        assert.equal(recorder.connection.closeCodeSent, 1006);
      });

      it("we close first: CloseSent, then the peer's close → Closed, without a second close frame", () => {
        const recorder = new Recorder({ role });
        assert.equal(recorder.connection.close(1000, "bye"), true);
        assert.equal(recorder.state, ConnectionState.CloseSent);
        assert.equal(recorder.connection.canSend, false);
        assert.equal(recorder.connection.closeCodeSent, 1000);
        const [frame] = assertSent(role, recorder.output(), [{ opcode: OP.close }]);
        assert.deepEqual(frame!.payload, closeBody(1000, "bye"));
        recorder.clearOutput();
        recorder.receive(inbound(role, OP.close, closeBody(1000)));
        assert.equal(recorder.state, ConnectionState.Closed);
        assert.deepStrictEqual(recorder.events, [{ type: "close", code: 1000, reason: "" }]);
        assert.equal(recorder.output().length, 0);
      });

      it("we close first: messages the peer sent before its close are still delivered", () => {
        const recorder = new Recorder({ role });
        recorder.connection.close(1001);
        recorder.receive(
          Buffer.concat([inbound(role, OP.text, "in flight"), inbound(role, OP.ping, "p")]),
        );
        assert.equal(messageText(recorder.events[0]), "in flight");
        assert.equal(recorder.state, ConnectionState.CloseSent);
        // No pong once our close frame is out (§5.5.1: nothing is sent after a close frame).
        assertSent(role, recorder.output(), [{ opcode: OP.close }]);
      });

      it("we close first: a protocol error then closes without a second close frame", () => {
        const recorder = new Recorder({ role });
        recorder.connection.close(1000);
        recorder.receive(inbound(role, 0x3));
        assert.equal(recorder.state, ConnectionState.Closed);
        assert.equal(recorder.connection.failure?.closeCode, 1002);
        const frames = decodeFrames(recorder.output());
        assert.equal(frames.length, 1);
        assert.equal(closeCodeOf(frames[0]!), 1000);
      });

      it("we close first without a code: an empty close frame", () => {
        const recorder = new Recorder({ role });
        recorder.connection.close();
        assertSent(role, recorder.output(), [{ opcode: OP.close, payload: "" }]);
        assert.equal(recorder.connection.closeCodeSent, 1005);
      });

      it("the peer closes first: we echo and are Closed; close() is then refused", () => {
        const recorder = new Recorder({ role });
        recorder.receive(inbound(role, OP.close, closeBody(1001, "bye")));
        assert.equal(recorder.state, ConnectionState.Closed);
        assertSent(role, recorder.output(), [
          { opcode: OP.close, payload: closeBody(1001, "bye") },
        ]);
        assert.equal(recorder.connection.close(1000), false);
        assert.equal(recorder.connection.send("late", false), false);
        assert.equal(recorder.connection.ping(), false);
        assert.equal(recorder.connection.canSend, false);
      });

      it("frame mode: the peer's close → CloseReceived with no automatic reply; ours then → Closed", () => {
        const recorder = new Recorder({ role, frameMode: true });
        recorder.receive(inbound(role, OP.close, closeBody(1000, "done")));
        assert.equal(recorder.state, ConnectionState.CloseReceived);
        assert.deepStrictEqual(recorder.events, [
          { type: "frame", opcode: OP.close, payload: closeBody(1000, "done"), fin: true },
          { type: "close", code: 1000, reason: "done" },
        ]);
        assert.equal(recorder.output().length, 0, "no automatic close reply in frame mode");
        assert.equal(recorder.connection.canSend, true);
        assert.equal(recorder.connection.send("last words", false), true);
        assert.equal(recorder.connection.close(1000, "ok"), true);
        assert.equal(recorder.state, ConnectionState.Closed);
        assertSent(role, recorder.output(), [
          { opcode: OP.text, payload: "last words" },
          { opcode: OP.close, payload: closeBody(1000, "ok") },
        ]);
      });

      it("frame mode: an empty close → CloseReceived, reported as 1005", () => {
        const recorder = new Recorder({ role, frameMode: true });
        recorder.receive(inbound(role, OP.close));
        assert.equal(recorder.state, ConnectionState.CloseReceived);
        assert.deepStrictEqual(recorder.events.at(-1), { type: "close", code: 1005, reason: "" });
      });

      it("frame mode: we close first, then the peer's close → Closed", () => {
        const recorder = new Recorder({ role, frameMode: true });
        recorder.connection.close(3000);
        assert.equal(recorder.state, ConnectionState.CloseSent);
        recorder.receive(inbound(role, OP.close, closeBody(3000)));
        assert.equal(recorder.state, ConnectionState.Closed);
        assertSent(role, recorder.output(), [{ opcode: OP.close, payload: closeBody(3000) }]);
      });

      it("records only the first failure, even if the parser reported another", () => {
        const recorder = new Recorder({ role });
        recorder.connection.onFrameError(1002, "first");
        recorder.connection.onFrameError(1007, "second");
        assert.deepStrictEqual(recorder.events, [
          { type: "error", closeCode: 1002, code: "ERR_WS_PROTOCOL" },
        ]);
        assert.equal(recorder.connection.failure?.message, "first");
        assert.equal(decodeFrames(recorder.output()).length, 1);
      });

      it("a protocol error → Closed, and close() is then refused", () => {
        const recorder = new Recorder({ role });
        recorder.receive(inbound(role, 0xf));
        assert.equal(recorder.state, ConnectionState.Closed);
        assert.equal(recorder.connection.close(1000), false);
        assert.equal(recorder.connection.closeCodeSent, 1002);
      });
    });
  });
}
