import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { applyMask, applyMaskSmall, SMALL_MASK_BYTES } from "../../../src/protocol/mask.js";
import { createRandom, randomBytes } from "../../helpers/protocol-harness.js";

/** The obvious byte loop, as RFC 6455 §5.3 states it. */
function naiveMask(
  data: Uint8Array,
  start: number,
  end: number,
  key: Uint8Array,
  keyOffset: number,
  phase: number,
): void {
  for (let i = start; i < end; i++)
    data[i] = data[i]! ^ key[keyOffset + ((phase + i - start) % 4)]!;
}

const KEY = Uint8Array.from([0x37, 0xfa, 0x21, 0x3d]);

describe("applyMask", () => {
  it("matches a naive XOR for every length 0–100, at all 4 alignments and all 4 phases", () => {
    const random = createRandom(1);
    for (let length = 0; length <= 100; length++) {
      for (let alignment = 0; alignment < 4; alignment++) {
        for (let phase = 0; phase < 4; phase++) {
          const original = randomBytes(random, length + 8);
          // A fresh ArrayBuffer so that `alignment` is the real address alignment of data[0].
          const backing = new Uint8Array(new ArrayBuffer(length + 16));
          const data = backing.subarray(alignment, alignment + length + 8);
          data.set(original);
          const expected = Uint8Array.from(original);
          // Mask [2, 2 + length): the bytes around must stay untouched.
          applyMask(data, 2, 2 + length, KEY, 0, phase);
          naiveMask(expected, 2, 2 + length, KEY, 0, phase);
          assert.deepEqual(
            Buffer.from(data),
            Buffer.from(expected),
            `length ${length} alignment ${alignment} phase ${phase}`,
          );
        }
      }
    }
  });

  it("uses the key at keyOffset inside a larger buffer", () => {
    const keyHolder = Uint8Array.from([9, 9, 9, 0x11, 0x22, 0x33, 0x44, 9]);
    for (const length of [3, 40, 77]) {
      const data = randomBytes(createRandom(length), length);
      const expected = Uint8Array.from(data);
      applyMask(data, 0, length, keyHolder, 3, 1);
      naiveMask(expected, 0, length, Uint8Array.from([0x11, 0x22, 0x33, 0x44]), 0, 1);
      assert.deepEqual(Buffer.from(data), Buffer.from(expected));
    }
  });

  it("treats a phase beyond 3 modulo 4", () => {
    const a = randomBytes(createRandom(5), 64);
    const b = Buffer.from(a);
    applyMask(a, 0, 64, KEY, 0, 6);
    applyMask(b, 0, 64, KEY, 0, 2);
    assert.deepEqual(a, b);
  });

  it("matches a naive XOR on large buffers at odd offsets", () => {
    const random = createRandom(2);
    for (const [length, offset] of [
      [1 << 20, 0],
      [(1 << 20) + 3, 1],
      [100_003, 2],
      [65_536, 3],
    ] as const) {
      const data = randomBytes(random, length + 8);
      const expected = Buffer.from(data);
      applyMask(data, offset, offset + length, KEY, 0, offset);
      naiveMask(expected, offset, offset + length, KEY, 0, offset);
      assert.ok(data.equals(expected), `length ${length} offset ${offset}`);
    }
  });

  it("unmasks a payload processed in pieces, with the phase carried over, like one pass", () => {
    const random = createRandom(3);
    const payload = randomBytes(random, 5000);
    const whole = Buffer.from(payload);
    applyMask(whole, 0, whole.length, KEY, 0, 0);
    const pieces = Buffer.from(payload);
    let at = 0;
    while (at < pieces.length) {
      const end = Math.min(pieces.length, at + 1 + Math.floor(random() * 300));
      applyMask(pieces, at, end, KEY, 0, at);
      at = end;
    }
    assert.ok(pieces.equals(whole));
  });

  it("is its own inverse", () => {
    const original = randomBytes(createRandom(4), 1000);
    const data = Buffer.from(original);
    applyMask(data, 0, 1000, KEY, 0, 0);
    assert.ok(!data.equals(original));
    applyMask(data, 0, 1000, KEY, 0, 0);
    assert.ok(data.equals(original));
  });

  it("does nothing on an empty range", () => {
    const data = Buffer.from([1, 2, 3]);
    applyMask(data, 1, 1, KEY, 0, 0);
    assert.deepEqual(data, Buffer.from([1, 2, 3]));
  });
});

describe("applyMaskSmall", () => {
  it("unmasks as a naive XOR and returns the OR of the unmasked bytes, every length and phase", () => {
    const random = createRandom(7);
    for (let length = 0; length < SMALL_MASK_BYTES; length++) {
      for (let phase = 0; phase < 4; phase++) {
        const data = randomBytes(random, length + 4);
        const expected = Buffer.from(data);
        naiveMask(expected, 2, 2 + length, KEY, 0, phase);
        let bits = 0;
        for (let i = 2; i < 2 + length; i++) bits |= expected[i]!;
        assert.equal(applyMaskSmall(data, 2, 2 + length, KEY, 0, phase), bits);
        assert.deepEqual(data, expected, `length ${length}, phase ${phase}`);
      }
    }
  });

  it("tells an all-ASCII payload (every byte below 0x80) from one with a high byte", () => {
    const ascii = Buffer.from("plain ascii text");
    naiveMask(ascii, 0, ascii.length, KEY, 0, 0);
    assert.ok(applyMaskSmall(ascii, 0, ascii.length, KEY, 0, 0) < 0x80);
    const accented = Buffer.from("café");
    naiveMask(accented, 0, accented.length, KEY, 0, 0);
    assert.ok(applyMaskSmall(accented, 0, accented.length, KEY, 0, 0) >= 0x80);
  });
});
