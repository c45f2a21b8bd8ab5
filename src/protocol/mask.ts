/**
 * XORs `data[start, end)` in place with the 4-byte masking key (RFC 6455 §5.3). `phase` is the
 * index within the frame payload of `data[start]`, so a payload unmasked in several pieces
 * lines up with its key. Aligned words go through an Int32Array view, which is several times
 * faster than a byte loop on large payloads.
 */
export function applyMask(
  data: Uint8Array,
  start: number,
  end: number,
  key: Uint8Array,
  keyOffset: number,
  phase: number,
): void {
  let i = start;
  let p = phase & 3;
  if (end - start >= 32) {
    // Byte-wise until the absolute address is 4-aligned.
    while ((data.byteOffset + i) & 3) {
      data[i++]! ^= key[keyOffset + p]!;
      p = (p + 1) & 3;
    }
    const words = (end - i) >>> 2;
    if (words > 0) {
      const k0 = key[keyOffset + p]!;
      const k1 = key[keyOffset + ((p + 1) & 3)]!;
      const k2 = key[keyOffset + ((p + 2) & 3)]!;
      const k3 = key[keyOffset + ((p + 3) & 3)]!;
      // Typed arrays use the platform's byte order; every supported Node platform is little-endian.
      const word = k0 | (k1 << 8) | (k2 << 16) | (k3 << 24);
      const view = new Int32Array(data.buffer, data.byteOffset + i, words);
      for (let w = 0; w < words; w++) view[w]! ^= word;
      i += words << 2;
    }
  }
  while (i < end) {
    data[i++]! ^= key[keyOffset + p]!;
    p = (p + 1) & 3;
  }
}
