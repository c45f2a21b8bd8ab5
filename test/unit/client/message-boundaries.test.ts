import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MessageBoundaryScanner } from "../../../src/client/message-boundaries.js";
import { Connection } from "../../../src/protocol/connection.js";
import { buildFrame, closeBody, MASK_KEY, OP, splitsFor } from "../../helpers/protocol-harness.js";

/** A server's stream: messages of every length encoding, fragmented, with control frames between. */
const FRAMES: Array<{ frame: Buffer; endsMessage: boolean }> = [
  { frame: buildFrame(OP.text, "Hello"), endsMessage: true },
  { frame: buildFrame(OP.binary, ""), endsMessage: true },
  { frame: buildFrame(OP.ping, "p"), endsMessage: false },
  { frame: buildFrame(OP.text, "x".repeat(300)), endsMessage: true },
  { frame: buildFrame(OP.text, "frag", { fin: false }), endsMessage: false },
  { frame: buildFrame(OP.pong, ""), endsMessage: false },
  { frame: buildFrame(OP.continuation, "ment", { fin: false }), endsMessage: false },
  { frame: buildFrame(OP.continuation, "ed"), endsMessage: true },
  { frame: buildFrame(OP.binary, Buffer.alloc(70_000, 7)), endsMessage: true },
  { frame: buildFrame(OP.text, "long form", { lengthBytes: 8 }), endsMessage: true },
  { frame: buildFrame(OP.text, "sixteen", { lengthBytes: 2 }), endsMessage: true },
  { frame: buildFrame(OP.close, closeBody(1000, "done")), endsMessage: false },
];
const STREAM = Buffer.concat(FRAMES.map((f) => f.frame));

/** Offsets just after each frame that ends a message. */
const MESSAGE_ENDS = (() => {
  const ends: number[] = [];
  let offset = 0;
  for (const { frame, endsMessage } of FRAMES) {
    offset += frame.length;
    if (endsMessage) ends.push(offset);
  }
  return ends;
})();

describe("MessageBoundaryScanner", () => {
  for (const split of splitsFor(STREAM.length)) {
    it(`stops at every message end and nowhere else (${split.name})`, () => {
      const scanner = new MessageBoundaryScanner();
      const stops: number[] = [];
      const pieceEnds = new Set<number>();
      let position = 0;
      for (const piece of split.pieces) {
        let rest = STREAM.subarray(position, position + piece);
        while (rest.length > 0) {
          const taken = scanner.scan(rest, true);
          assert.ok(taken > 0 && taken <= rest.length);
          position += taken;
          if (taken < rest.length) stops.push(position);
          rest = rest.subarray(taken);
        }
        pieceEnds.add(position);
      }
      // A message ending exactly where a piece ends needs no stop: the piece is fed whole.
      assert.deepEqual(
        stops,
        MESSAGE_ENDS.filter((end) => !pieceEnds.has(end)),
      );
    });
  }

  it("covers the whole chunk when not asked to stop", () => {
    const scanner = new MessageBoundaryScanner();
    assert.equal(scanner.scan(STREAM, false), STREAM.length);
    // …and still knows where frames are afterwards.
    const next = Buffer.concat([buildFrame(OP.text, "a"), buildFrame(OP.text, "b")]);
    assert.equal(scanner.scan(next, true), 3);
  });

  it("counts a masking key in the header", () => {
    const scanner = new MessageBoundaryScanner();
    const masked = buildFrame(OP.text, "masked", { mask: MASK_KEY });
    const stream = Buffer.concat([masked, buildFrame(OP.text, "next")]);
    assert.equal(scanner.scan(stream, true), masked.length);
  });

  it("agrees with the connection's parser: each stop is right after one message", () => {
    for (const split of splitsFor(STREAM.length)) {
      const delivered: string[] = [];
      const connection = new Connection(
        {
          onMessage: (data) => delivered.push(data.subarray(0, 10).toString()),
          onClose: () => {},
          onError: (error) => assert.fail(error.message),
          onOutput: () => {},
        },
        { role: "client" },
      );
      const scanner = new MessageBoundaryScanner();
      const copy = Buffer.from(STREAM);
      let position = 0;
      for (const piece of split.pieces) {
        let rest = copy.subarray(position, position + piece);
        while (rest.length > 0) {
          const taken = scanner.scan(rest, true);
          const before = delivered.length;
          connection.receive(rest.subarray(0, taken));
          position += taken;
          if (taken < rest.length) {
            assert.equal(delivered.length, before + 1, `${split.name}: one message per stop`);
          }
          rest = rest.subarray(taken);
        }
      }
      assert.equal(delivered.length, MESSAGE_ENDS.length, split.name);
    }
  });
});
