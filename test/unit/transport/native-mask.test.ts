import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { applyMask, setNativeUnmask } from "../../../src/protocol/mask.js";
import { installNativeUnmask } from "../../../src/transport/native-mask.js";

function naive(data: Uint8Array, key: Uint8Array, phase: number): Uint8Array {
  return data.map((byte, i) => byte ^ key[(i + phase) & 3]!);
}

describe("native unmasking (bufferutil, optional)", () => {
  after(() => installNativeUnmask());

  it("is installed in this checkout (bufferutil is an optional dependency)", () => {
    assert.equal(installNativeUnmask(), true);
  });

  for (const native of [true, false]) {
    it(`${native ? "native" : "JavaScript"} unmasking matches a naive XOR at every length, alignment and phase`, () => {
      setNativeUnmask(null);
      if (native) installNativeUnmask();
      const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
      for (const length of [0, 1, 127, 128, 129, 1000, 65536 + 3]) {
        for (let offset = 0; offset < 4; offset++) {
          for (let phase = 0; phase < 4; phase++) {
            const backing = Buffer.alloc(length + 8);
            for (let i = 0; i < backing.length; i++) backing[i] = (i * 31 + 7) & 0xff;
            const data = backing.subarray(offset, offset + length);
            const expected = naive(Uint8Array.from(data), key, phase);
            applyMask(data, 0, length, key, 0, phase);
            assert.deepEqual(
              Uint8Array.from(data),
              expected,
              `length ${length} offset ${offset} phase ${phase}`,
            );
          }
        }
      }
    });
  }
});
