import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type FrameHandler, FrameParser } from "../../../src/protocol/frame-parser.js";
import { buildFrame, MASK_KEY, OP } from "../../helpers/protocol-harness.js";

type Call =
  | { kind: "header"; fin: boolean; rsv1: boolean; opcode: number; length: number }
  | { kind: "payload"; payload: Buffer; last: boolean }
  | { kind: "error"; closeCode: number };

/** A handler that records calls and can refuse to continue after the n-th header or payload. */
class Handler implements FrameHandler {
  readonly calls: Call[] = [];
  readonly views: Buffer[] = [];
  stopAtHeader = -1;
  stopAtPayload = -1;
  private headers = 0;
  private payloads = 0;
  onFrameHeader(fin: boolean, rsv1: boolean, opcode: number, length: number): boolean {
    this.calls.push({ kind: "header", fin, rsv1, opcode, length });
    return this.headers++ !== this.stopAtHeader;
  }
  onFramePayload(payload: Buffer, last: boolean): boolean {
    this.views.push(payload);
    this.calls.push({ kind: "payload", payload: Buffer.from(payload), last });
    return this.payloads++ !== this.stopAtPayload;
  }
  onFrameError(closeCode: number): void {
    this.calls.push({ kind: "error", closeCode });
  }
}

function parse(
  bytes: Buffer,
  options = { expectMasked: true, allowRsv1: false },
  pieces?: number[],
): Handler {
  const handler = new Handler();
  const parser = new FrameParser(handler, options);
  const copy = Buffer.from(bytes);
  if (pieces === undefined) {
    parser.push(copy);
  } else {
    let at = 0;
    for (const piece of pieces) {
      parser.push(copy.subarray(at, at + piece));
      at += piece;
    }
  }
  return handler;
}

describe("FrameParser", () => {
  it("reports the header, then the unmasked payload", () => {
    const handler = parse(buildFrame(OP.text, "Hello", { mask: MASK_KEY }));
    assert.deepStrictEqual(handler.calls, [
      { kind: "header", fin: true, rsv1: false, opcode: OP.text, length: 5 },
      { kind: "payload", payload: Buffer.from("Hello"), last: true },
    ]);
  });

  it("reports an empty frame with one empty, last payload piece", () => {
    const handler = parse(buildFrame(OP.binary, "", { mask: MASK_KEY }));
    assert.deepStrictEqual(handler.calls.at(-1), {
      kind: "payload",
      payload: Buffer.alloc(0),
      last: true,
    });
  });

  it("hands over a data payload in the pieces it arrived in, as views unmasked in place", () => {
    const frame = buildFrame(OP.binary, Buffer.from("abcdefghij"), { mask: MASK_KEY });
    const handler = new Handler();
    const parser = new FrameParser(handler, { expectMasked: true, allowRsv1: false });
    const chunk1 = Buffer.from(frame.subarray(0, 9));
    const chunk2 = Buffer.from(frame.subarray(9));
    parser.push(chunk1);
    parser.push(chunk2);
    assert.deepStrictEqual(
      handler.calls.filter((call) => call.kind === "payload"),
      [
        { kind: "payload", payload: Buffer.from("abc"), last: false },
        { kind: "payload", payload: Buffer.from("defghij"), last: true },
      ],
    );
    assert.equal(handler.views[0]!.buffer, chunk1.buffer, "a view into the chunk, not a copy");
    assert.deepEqual(chunk2, Buffer.from("defghij"), "unmasked in place");
  });

  it("hands over a control payload whole even when it arrives byte by byte", () => {
    const frame = buildFrame(OP.ping, "ping!", { mask: MASK_KEY });
    const handler = parse(frame, undefined, new Array<number>(frame.length).fill(1));
    assert.deepStrictEqual(handler.calls.at(-1), {
      kind: "payload",
      payload: Buffer.from("ping!"),
      last: true,
    });
    assert.equal(handler.calls.length, 2);
  });

  it("gathers a header split at every position, for every length encoding", () => {
    for (const length of [5, 300, 70_000]) {
      const frame = buildFrame(OP.binary, Buffer.alloc(length, 1), { mask: MASK_KEY });
      const headerLength = frame.length - length;
      for (let cut = 1; cut < headerLength; cut++) {
        const handler = parse(frame, undefined, [cut, frame.length - cut]);
        assert.deepStrictEqual(handler.calls[0], {
          kind: "header",
          fin: true,
          rsv1: false,
          opcode: OP.binary,
          length,
        });
      }
    }
  });

  it("parses unmasked frames when masks are not expected", () => {
    const handler = parse(buildFrame(OP.text, "hi"), { expectMasked: false, allowRsv1: false });
    assert.deepStrictEqual(handler.calls.at(-1), {
      kind: "payload",
      payload: Buffer.from("hi"),
      last: true,
    });
  });

  it("allows RSV1 on data frames only when told to, and never on control frames", () => {
    const compressed = buildFrame(OP.text, "x", { mask: MASK_KEY, rsv1: true });
    assert.deepStrictEqual(parse(compressed).calls, [{ kind: "error", closeCode: 1002 }]);
    assert.equal(
      parse(compressed, { expectMasked: true, allowRsv1: true }).calls[0]?.kind,
      "header",
    );
    const handler = new Handler();
    const parser = new FrameParser(handler, { expectMasked: true, allowRsv1: false });
    parser.setAllowRsv1(true);
    parser.push(Buffer.from(compressed));
    assert.deepEqual(handler.calls[0], {
      kind: "header",
      fin: true,
      rsv1: true,
      opcode: OP.text,
      length: 1,
    });
    const ping = buildFrame(OP.ping, "", { mask: MASK_KEY, rsv1: true });
    assert.deepStrictEqual(parse(ping, { expectMasked: true, allowRsv1: true }).calls, [
      { kind: "error", closeCode: 1002 },
    ]);
  });

  it("stops when the header handler returns false", () => {
    const two = Buffer.concat([
      buildFrame(OP.text, "a", { mask: MASK_KEY }),
      buildFrame(OP.text, "b", { mask: MASK_KEY }),
    ]);
    const handler = new Handler();
    handler.stopAtHeader = 0;
    const parser = new FrameParser(handler, { expectMasked: true, allowRsv1: false });
    parser.push(two);
    assert.equal(handler.calls.length, 1);
    assert.equal(parser.stopped, true);
  });

  it("stops when the payload handler returns false, for data, empty and control frames", () => {
    for (const frame of [
      buildFrame(OP.text, "abc", { mask: MASK_KEY }),
      buildFrame(OP.text, "", { mask: MASK_KEY }),
      buildFrame(OP.pong, "p", { mask: MASK_KEY }),
    ]) {
      const handler = new Handler();
      handler.stopAtPayload = 0;
      const parser = new FrameParser(handler, { expectMasked: true, allowRsv1: false });
      parser.push(Buffer.concat([frame, buildFrame(OP.text, "next", { mask: MASK_KEY })]));
      assert.equal(handler.calls.length, 2);
      assert.equal(parser.stopped, true);
    }
  });

  it("stops when the handler stops it from inside onFrameHeader", () => {
    const handler = new Handler();
    const parser = new FrameParser(
      {
        onFrameHeader: (...args) => {
          parser.stop();
          return handler.onFrameHeader(...args);
        },
        onFramePayload: (payload, last) => handler.onFramePayload(payload, last),
        onFrameError: (code) => handler.onFrameError(code),
      },
      { expectMasked: true, allowRsv1: false },
    );
    parser.push(buildFrame(OP.text, "abc", { mask: MASK_KEY }));
    assert.equal(handler.calls.length, 1);
  });

  it("ignores input after stop()", () => {
    const handler = new Handler();
    const parser = new FrameParser(handler, { expectMasked: true, allowRsv1: false });
    assert.equal(parser.stopped, false);
    parser.stop();
    assert.equal(parser.stopped, true);
    parser.push(buildFrame(OP.text, "abc", { mask: MASK_KEY }));
    assert.equal(handler.calls.length, 0);
  });

  it("reports one error and stops on a structural violation", () => {
    const handler = parse(
      Buffer.concat([
        buildFrame(0x5, "", { mask: MASK_KEY }),
        buildFrame(OP.text, "x", { mask: MASK_KEY }),
      ]),
    );
    assert.deepStrictEqual(handler.calls, [{ kind: "error", closeCode: 1002 }]);
  });

  it("reads a 64-bit length above 2^32 (the handler decides whether it is too big)", () => {
    const handler = parse(
      buildFrame(OP.binary, "", { mask: MASK_KEY, declaredLength: 2 ** 33 + 7, lengthBytes: 8 }),
    );
    assert.deepStrictEqual(handler.calls, [
      { kind: "header", fin: true, rsv1: false, opcode: OP.binary, length: 2 ** 33 + 7 },
    ]);
  });
});
