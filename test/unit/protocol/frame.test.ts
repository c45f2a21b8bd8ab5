import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  encodeClosePayload,
  encodeFrame,
  frameHeaderLength,
  MAX_CONTROL_PAYLOAD,
  Opcode,
  writeFrameHeader,
} from "../../../src/protocol/frame.js";
import { buildFrame, decodeFrames, MASK_KEY } from "../../helpers/protocol-harness.js";

describe("frameHeaderLength", () => {
  const cases: Array<[number, number]> = [
    [0, 2],
    [125, 2],
    [126, 4],
    [65535, 4],
    [65536, 10],
    [2 ** 32, 10],
  ];
  for (const [length, size] of cases) {
    it(`is ${size} bytes for ${length} payload bytes, ${size + 4} when masked`, () => {
      assert.equal(frameHeaderLength(length, false), size);
      assert.equal(frameHeaderLength(length, true), size + 4);
    });
  }
});

describe("writeFrameHeader", () => {
  for (const length of [0, 1, 125, 126, 127, 65535, 65536, 1_000_000]) {
    for (const masked of [false, true]) {
      it(`writes the same header as RFC 6455 §5.2 for ${length} bytes${masked ? ", masked" : ""}`, () => {
        const target = Buffer.alloc(20, 0xee);
        const written = writeFrameHeader(
          target,
          3,
          Opcode.Binary,
          true,
          false,
          length,
          masked ? MASK_KEY : null,
        );
        assert.equal(written, frameHeaderLength(length, masked));
        const expected = buildFrame(Opcode.Binary, "", {
          declaredLength: length,
          mask: masked ? MASK_KEY : null,
        });
        assert.deepEqual(target.subarray(3, 3 + written), expected);
        assert.equal(target[2], 0xee, "nothing before offset");
        assert.equal(target[3 + written], 0xee, "nothing after the header");
      });
    }
  }

  it("writes fin, rsv1 and the opcode into the first byte", () => {
    const target = Buffer.alloc(2);
    writeFrameHeader(target, 0, Opcode.Continuation, false, false, 0, null);
    assert.equal(target[0], 0x00);
    writeFrameHeader(target, 0, Opcode.Text, true, true, 0, null);
    assert.equal(target[0], 0xc1);
    writeFrameHeader(target, 0, Opcode.Pong, true, false, 5, null);
    assert.deepEqual(target, Buffer.from([0x8a, 0x05]));
  });

  it("writes a length above 2^32 into the 64-bit field with its top bit clear", () => {
    const target = Buffer.alloc(10);
    writeFrameHeader(target, 0, Opcode.Binary, true, false, 2 ** 40 + 0x01020304, null);
    assert.deepEqual(target, Buffer.from([0x82, 0x7f, 0, 0, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04]));
  });

  it("reads the masking key at maskKeyOffset", () => {
    const target = Buffer.alloc(6);
    writeFrameHeader(target, 0, Opcode.Text, true, false, 0, Buffer.from([0, 0, 1, 2, 3, 4]), 2);
    assert.deepEqual(target, Buffer.from([0x81, 0x80, 1, 2, 3, 4]));
  });
});

describe("encodeFrame", () => {
  it("builds an unmasked frame with the payload after the header", () => {
    assert.deepEqual(
      encodeFrame(Opcode.Text, Buffer.from("Hello")),
      Buffer.from("810548656c6c6f", "hex"),
    );
  });
  it("builds a non-final and a compressed frame", () => {
    assert.deepEqual(
      encodeFrame(Opcode.Binary, Buffer.from([1]), false),
      Buffer.from([0x02, 0x01, 0x01]),
    );
    assert.deepEqual(
      encodeFrame(Opcode.Text, Buffer.from([1]), true, true),
      Buffer.from([0xc1, 0x01, 0x01]),
    );
  });
  it("uses the 16- and 64-bit lengths", () => {
    for (const length of [126, 65536]) {
      const payload = Buffer.alloc(length, 7);
      const [frame] = decodeFrames(encodeFrame(Opcode.Binary, payload));
      assert.equal(frame!.lengthBytes, length === 126 ? 2 : 8);
      assert.ok(frame!.payload.equals(payload));
      assert.equal(frame!.masked, false);
    }
  });
});

describe("encodeClosePayload", () => {
  it("is empty without a code", () => {
    assert.equal(encodeClosePayload(undefined, "").length, 0);
  });
  it("is the code in network byte order followed by the UTF-8 reason", () => {
    assert.deepEqual(encodeClosePayload(1000, ""), Buffer.from([0x03, 0xe8]));
    assert.deepEqual(encodeClosePayload(4001, "é"), Buffer.from([0x0f, 0xa1, 0xc3, 0xa9]));
  });
});

describe("MAX_CONTROL_PAYLOAD", () => {
  it("is 125 (§5.5)", () => {
    assert.equal(MAX_CONTROL_PAYLOAD, 125);
  });
});
