import { Opcode } from "./opcode.js";

/** Largest payload a control frame may carry (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125;

/** Bytes needed for a frame header carrying `payloadLength` bytes (§5.2): 2, 4 or 10, plus 4 when masked. */
export function frameHeaderLength(payloadLength: number, masked: boolean): number {
  const base = payloadLength < 126 ? 2 : payloadLength < 0x10000 ? 4 : 10;
  return masked ? base + 4 : base;
}

/**
 * Writes a frame header at `target[offset]` and returns its length. With a `maskKey` the mask
 * bit is set and the key follows the length (the payload itself is masked by the caller).
 */
export function writeFrameHeader(
  target: Uint8Array,
  offset: number,
  opcode: number,
  fin: boolean,
  rsv1: boolean,
  payloadLength: number,
  maskKey: Uint8Array | null,
  maskKeyOffset = 0,
): number {
  let o = offset;
  target[o++] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  const maskBit = maskKey ? 0x80 : 0;
  if (payloadLength < 126) {
    target[o++] = maskBit | payloadLength;
  } else if (payloadLength < 0x10000) {
    target[o++] = maskBit | 126;
    target[o++] = payloadLength >>> 8;
    target[o++] = payloadLength & 0xff;
  } else {
    target[o++] = maskBit | 127;
    // §5.2: 64-bit length, most significant bit 0. JS buffers stay far below 2^53.
    const high = Math.floor(payloadLength / 0x100000000);
    target[o++] = 0;
    target[o++] = 0;
    target[o++] = (high >>> 8) & 0xff;
    target[o++] = high & 0xff;
    target[o++] = (payloadLength >>> 24) & 0xff;
    target[o++] = (payloadLength >>> 16) & 0xff;
    target[o++] = (payloadLength >>> 8) & 0xff;
    target[o++] = payloadLength & 0xff;
  }
  if (maskKey) {
    target[o++] = maskKey[maskKeyOffset]!;
    target[o++] = maskKey[maskKeyOffset + 1]!;
    target[o++] = maskKey[maskKeyOffset + 2]!;
    target[o++] = maskKey[maskKeyOffset + 3]!;
  }
  return o - offset;
}

/**
 * Builds one complete unmasked frame in a fresh buffer: what a server sends, and what a
 * broadcast frames once and hands to every connection.
 */
export function encodeFrame(opcode: number, payload: Uint8Array, fin = true, rsv1 = false): Buffer {
  const headerLength = frameHeaderLength(payload.length, false);
  const frame = Buffer.allocUnsafe(headerLength + payload.length);
  writeFrameHeader(frame, 0, opcode, fin, rsv1, payload.length, null);
  frame.set(payload, headerLength);
  return frame;
}

/** Close frame payload: 2-byte code, then the UTF-8 reason (§5.5.1). Code undefined → empty body. */
export function encodeClosePayload(code: number | undefined, reason: string): Buffer {
  if (code === undefined) return Buffer.alloc(0);
  const reasonLength = Buffer.byteLength(reason);
  const payload = Buffer.allocUnsafe(2 + reasonLength);
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2, "utf8");
  return payload;
}

export { Opcode };
