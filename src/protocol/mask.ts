/**
 * A native XOR-unmask routine for large payloads (`bufferutil`'s `unmask(buffer, key)`), set by
 * the transport when one is installed. The core itself stays free of native code and I/O.
 */
type NativeUnmask = (data: Uint8Array, key: Uint8Array) => void;
let nativeUnmask: NativeUnmask | null = null;
/** Below this many bytes a plain loop beats the call overhead of native code. */
const NATIVE_MIN_BYTES = 128;
/** From this many bytes, XOR whole 32-bit words (making the word view costs as much as ~100 bytes of the byte loop). */
const WORD_MIN_BYTES = 128;
const rotatedKey = new Uint8Array(4);

/** Installs (or with null, removes) a native unmask routine used for payloads ≥ 128 bytes. */
export function setNativeUnmask(unmask: NativeUnmask | null): void {
  nativeUnmask = unmask;
}

/**
 * XORs `data[start, end)` in place with the 4-byte masking key (RFC 6455 §5.3). `phase` is the
 * index within the frame payload of `data[start]`, so a payload unmasked in several pieces
 * lines up with its key.
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
  const length = end - start;
  if (length >= NATIVE_MIN_BYTES && nativeUnmask !== null) {
    rotatedKey[0] = key[keyOffset + p]!;
    rotatedKey[1] = key[keyOffset + ((p + 1) & 3)]!;
    rotatedKey[2] = key[keyOffset + ((p + 2) & 3)]!;
    rotatedKey[3] = key[keyOffset + ((p + 3) & 3)]!;
    nativeUnmask(data.subarray(start, end), rotatedKey);
    return;
  }
  if (length >= WORD_MIN_BYTES) {
    // Byte-wise until the absolute address is 4-aligned, then whole words through an
    // Int32Array view (typed arrays use the platform's byte order; Node's platforms are
    // little-endian), unrolled because V8 does not vectorize the loop.
    while ((data.byteOffset + i) & 3) {
      data[i++]! ^= key[keyOffset + p]!;
      p = (p + 1) & 3;
    }
    const words = (end - i) >>> 2;
    const word =
      key[keyOffset + p]! |
      (key[keyOffset + ((p + 1) & 3)]! << 8) |
      (key[keyOffset + ((p + 2) & 3)]! << 16) |
      (key[keyOffset + ((p + 3) & 3)]! << 24);
    const view = new Int32Array(data.buffer, data.byteOffset + i, words);
    const unrolled = words & ~7;
    let w = 0;
    for (; w < unrolled; w += 8) {
      view[w]! ^= word;
      view[w + 1]! ^= word;
      view[w + 2]! ^= word;
      view[w + 3]! ^= word;
      view[w + 4]! ^= word;
      view[w + 5]! ^= word;
      view[w + 6]! ^= word;
      view[w + 7]! ^= word;
    }
    for (; w < words; w++) view[w]! ^= word;
    i += words << 2;
  } else {
    // Small payloads: four bytes a step with the key bytes in registers.
    const k0 = key[keyOffset + p]!;
    const k1 = key[keyOffset + ((p + 1) & 3)]!;
    const k2 = key[keyOffset + ((p + 2) & 3)]!;
    const k3 = key[keyOffset + ((p + 3) & 3)]!;
    for (const last = end - 4; i <= last; i += 4) {
      data[i]! ^= k0;
      data[i + 1]! ^= k1;
      data[i + 2]! ^= k2;
      data[i + 3]! ^= k3;
    }
  }
  while (i < end) {
    data[i++]! ^= key[keyOffset + p]!;
    p = (p + 1) & 3;
  }
}

/**
 * {@link applyMask} for payloads under 128 bytes that also tells whether every unmasked byte
 * is ASCII (below 0x80): a short text message then needs no separate UTF-8 check, which
 * costs more than the unmasking itself at this size. Returns the OR of the unmasked bytes.
 */
export function applyMaskSmall(
  data: Uint8Array,
  start: number,
  end: number,
  key: Uint8Array,
  keyOffset: number,
  phase: number,
): number {
  let i = start;
  let p = phase & 3;
  let bits = 0;
  const k0 = key[keyOffset + p]!;
  const k1 = key[keyOffset + ((p + 1) & 3)]!;
  const k2 = key[keyOffset + ((p + 2) & 3)]!;
  const k3 = key[keyOffset + ((p + 3) & 3)]!;
  for (const last = end - 4; i <= last; i += 4) {
    bits |= (data[i]! ^= k0) | (data[i + 1]! ^= k1) | (data[i + 2]! ^= k2) | (data[i + 3]! ^= k3);
  }
  while (i < end) {
    bits |= data[i++]! ^= key[keyOffset + p]!;
    p = (p + 1) & 3;
  }
  return bits;
}

/** Payloads shorter than this are unmasked by {@link applyMaskSmall}. */
export const SMALL_MASK_BYTES = WORD_MIN_BYTES;
