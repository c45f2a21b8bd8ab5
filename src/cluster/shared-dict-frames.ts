/**
 * The frames of the shared-dictionary pipes: a 4-byte big-endian length, then the payload in V8's
 * serialization format (which keeps what JSON loses: `Infinity` from `capacity`, `-0`, `NaN`).
 *
 * @module
 */

import { deserialize, serialize } from "node:v8";
import type { SharedDictResult, SharedDictValue } from "./shared-dict-store.js";

/** A request: dictionary, operation, arguments. */
export type SharedDictRequest = readonly [
  dict: string,
  op: string,
  args: readonly SharedDictValue[],
];

/** A reply: the results, or the message of the error the store threw. */
export type SharedDictReply = { readonly ok: SharedDictResult } | { readonly error: string };

/** Bytes of the length prefix. */
export const FRAME_HEADER_BYTES = 4;

/** Encodes `payload` as one frame. */
export function encodeFrame(payload: SharedDictRequest | SharedDictReply): Buffer {
  const body = serialize(payload);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

/** Decodes a frame's body. */
export function decodeFrameBody<T extends SharedDictRequest | SharedDictReply>(
  body: Uint8Array,
): T {
  return deserialize(body) as T;
}

/**
 * Splits a byte stream into frame bodies: feed it chunks, get every complete body back.
 * Bodies longer than `maxBodyBytes` are a broken peer: {@link FrameSplitter.push} throws.
 */
export class FrameSplitter {
  #buffered: Buffer = Buffer.alloc(0);

  constructor(readonly maxBodyBytes = 64 * 1024 * 1024) {}

  /**
   * Appends `chunk`; returns the bodies it completed.
   * @throws {RangeError} for a frame announcing more than `maxBodyBytes`.
   */
  push(chunk: Buffer): Buffer[] {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    const bodies: Buffer[] = [];
    while (this.#buffered.length >= FRAME_HEADER_BYTES) {
      const length = this.#buffered.readUInt32BE(0);
      if (length > this.maxBodyBytes) throw new RangeError(`frame of ${length} bytes is too big`);
      const end = FRAME_HEADER_BYTES + length;
      if (this.#buffered.length < end) break;
      bodies.push(this.#buffered.subarray(FRAME_HEADER_BYTES, end));
      this.#buffered = this.#buffered.subarray(end);
    }
    return bodies;
  }
}
