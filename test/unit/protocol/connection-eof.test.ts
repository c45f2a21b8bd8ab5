import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type CloseOutcome, ConnectionState } from "../../../src/protocol/connection.js";
import {
  assertSent,
  closeBody,
  feed,
  inbound,
  OP,
  Recorder,
  type RecorderOptions,
  ROLES,
  splitsFor,
} from "../../helpers/protocol-harness.js";

// The end of the peer's byte stream (TCP FIN) is protocol input like any other: the core
// decides what it means (receiveEof), when this side ends its own stream (shouldSendEof),
// when a TCP close is due (closeExpected) and how the connection ended (closeOutcome).

/** Feeds `input` at every split, then the peer's EOF; checks each replay ends the same way. */
function replayThenEof(options: RecorderOptions, input: Buffer): Recorder {
  let reference: Recorder | null = null;
  for (const split of splitsFor(input.length)) {
    const recorder = new Recorder(options);
    feed(recorder, input, split.pieces);
    recorder.connection.receiveEof();
    if (reference === null) {
      reference = recorder;
      continue;
    }
    assert.deepStrictEqual(recorder.events, reference.events, `events when fed ${split.name}`);
    assert.deepStrictEqual(
      recorder.connection.closeOutcome,
      reference.connection.closeOutcome,
      `outcome when fed ${split.name}`,
    );
    assert.ok(recorder.output().equals(reference.output()), `output when fed ${split.name}`);
  }
  return reference!;
}

const ABNORMAL: CloseOutcome = { code: 1006, reason: "", wasClean: false };

for (const role of ROLES) {
  describe(`Connection end of stream (${role} role)`, () => {
    it("EOF on an open connection: Closed, 1006, not clean; this side ends its stream too", () => {
      const recorder = replayThenEof({ role }, Buffer.alloc(0));
      assert.equal(recorder.state, ConnectionState.Closed);
      assert.deepStrictEqual(recorder.connection.closeOutcome, ABNORMAL);
      assert.equal(recorder.connection.shouldSendEof, true);
      assert.equal(recorder.connection.closeExpected, true);
      assert.equal(recorder.connection.canSend, false, "nothing can be sent to a peer that left");
      assert.equal(recorder.output().length, 0, "no close frame to a peer that is gone");
    });

    it("EOF in the middle of a frame drops the frame: no message, 1006", () => {
      const frame = inbound(role, OP.text, "hello, world");
      const recorder = replayThenEof({ role }, frame.subarray(0, frame.length - 3));
      assert.deepStrictEqual(recorder.events, []);
      assert.deepStrictEqual(recorder.connection.closeOutcome, ABNORMAL);
    });

    it("EOF in the middle of a fragmented message drops the message", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, "first half ", { fin: false }),
        inbound(role, OP.continuation, "second", { fin: false }),
      ]);
      const recorder = replayThenEof({ role }, input);
      assert.deepStrictEqual(recorder.events, []);
      assert.deepStrictEqual(recorder.connection.closeOutcome, ABNORMAL);
    });

    it("whole messages before the EOF are delivered; bytes after it are ignored", () => {
      const recorder = replayThenEof({ role }, inbound(role, OP.text, "kept"));
      assert.equal(recorder.events.length, 1);
      recorder.receive(inbound(role, OP.text, "too late"));
      assert.equal(recorder.events.length, 1, "nothing is parsed after the end of stream");
      recorder.connection.receiveEof();
      assert.deepStrictEqual(
        recorder.connection.closeOutcome,
        ABNORMAL,
        "a second EOF changes nothing",
      );
    });

    it("the peer closes, we reply, then its EOF: clean with its code and reason", () => {
      const recorder = replayThenEof({ role }, inbound(role, OP.close, closeBody(4000, "bye")));
      assertSent(role, recorder.output(), [{ opcode: OP.close, payload: closeBody(4000, "bye") }]);
      assert.deepStrictEqual(recorder.connection.closeOutcome, {
        code: 4000,
        reason: "bye",
        wasClean: true,
      });
    });

    it("the peer's close without a code, then EOF: clean, 1005", () => {
      const recorder = replayThenEof({ role }, inbound(role, OP.close));
      assert.deepStrictEqual(recorder.connection.closeOutcome, {
        code: 1005,
        reason: "",
        wasClean: true,
      });
    });

    it("a protocol failure, then EOF: the failure's code and reason, not clean", () => {
      // A ping longer than 125 bytes breaks §5.5.
      const recorder = replayThenEof({ role }, inbound(role, OP.ping, Buffer.alloc(126)));
      const outcome = recorder.connection.closeOutcome;
      assert.equal(outcome.code, 1002);
      assert.equal(outcome.wasClean, false);
      assert.match(outcome.reason, /125/);
    });

    it("frame mode: the peer's close not yet answered when its EOF comes is not clean", () => {
      const recorder = replayThenEof(
        { role, frameMode: true },
        inbound(role, OP.close, closeBody(1000, "done")),
      );
      assert.equal(recorder.output().length, 0, "frame mode leaves the reply to the application");
      assert.deepStrictEqual(recorder.connection.closeOutcome, {
        code: 1000,
        reason: "done",
        wasClean: false,
      });
    });

    it("no close is expected and no EOF is due while the connection is open", () => {
      const recorder = new Recorder({ role });
      assert.equal(recorder.connection.closeExpected, false);
      assert.equal(recorder.connection.shouldSendEof, false);
      assert.deepStrictEqual(recorder.connection.closeOutcome, ABNORMAL);
    });

    it("our close expects the TCP close; the peer's reply completes a clean close", () => {
      const recorder = new Recorder({ role });
      recorder.connection.close(1000, "done");
      assert.equal(recorder.connection.closeExpected, true);
      assert.equal(recorder.connection.shouldSendEof, false, "the peer's close frame is still due");
      recorder.receive(inbound(role, OP.close, closeBody(1000, "done")));
      assert.deepStrictEqual(recorder.connection.closeOutcome, {
        code: 1000,
        reason: "done",
        wasClean: true,
      });
    });
  });
}

describe("Connection end of stream: who closes TCP first (§7.1.1)", () => {
  it("server: once both close frames are exchanged it ends its stream without waiting", () => {
    const recorder = new Recorder({ role: "server" });
    recorder.receive(inbound("server", OP.close, closeBody(1000)));
    assert.equal(recorder.connection.shouldSendEof, true);
  });

  it("client: after the close handshake it waits for the server's EOF, then ends its own", () => {
    const recorder = new Recorder({ role: "client" });
    recorder.receive(inbound("client", OP.close, closeBody(1000)));
    assert.equal(recorder.state, ConnectionState.Closed);
    assert.equal(recorder.connection.shouldSendEof, false);
    recorder.connection.receiveEof();
    assert.equal(recorder.connection.shouldSendEof, true);
  });

  it("client: a connection it failed is ended at once, without waiting for the server", () => {
    const recorder = new Recorder({ role: "client" });
    recorder.receive(inbound("client", OP.ping, Buffer.alloc(126)));
    assert.equal(recorder.connection.shouldSendEof, true);
  });
});
