import { isUtf8 } from "node:buffer";

/** Whole-buffer UTF-8 check (native, SIMD in Node ≥ 18.14). Rejects overlongs, surrogates and > U+10FFFF. */
export function isValidUtf8(bytes: Uint8Array): boolean {
  return isUtf8(bytes);
}

// States of the incremental decoder: how many continuation bytes are still expected and,
// for the lead bytes with a narrowed second-byte range (Unicode Table 3-7), which range.
const ACCEPT = 0;
const NEED_1 = 1; // one more 80..BF
const NEED_2 = 2; // two more 80..BF
const NEED_3 = 3; // three more 80..BF
const E0_SECOND = 4; // after E0: A0..BF, then one more
const ED_SECOND = 5; // after ED: 80..9F (no surrogates), then one more
const F0_SECOND = 6; // after F0: 90..BF, then two more
const F4_SECOND = 7; // after F4: 80..8F (≤ U+10FFFF), then two more
const REJECT = -1;

function step(state: number, byte: number): number {
  if (state === ACCEPT) {
    if (byte < 0x80) return ACCEPT;
    if (byte < 0xc2) return REJECT; // stray continuation or overlong 2-byte lead
    if (byte < 0xe0) return NEED_1;
    if (byte === 0xe0) return E0_SECOND;
    if (byte === 0xed) return ED_SECOND;
    if (byte < 0xf0) return NEED_2;
    if (byte === 0xf0) return F0_SECOND;
    if (byte < 0xf4) return NEED_3;
    if (byte === 0xf4) return F4_SECOND;
    return REJECT;
  }
  switch (state) {
    case E0_SECOND:
      return byte >= 0xa0 && byte <= 0xbf ? NEED_1 : REJECT;
    case ED_SECOND:
      return byte >= 0x80 && byte <= 0x9f ? NEED_1 : REJECT;
    case F0_SECOND:
      return byte >= 0x90 && byte <= 0xbf ? NEED_2 : REJECT;
    case F4_SECOND:
      return byte >= 0x80 && byte <= 0x8f ? NEED_2 : REJECT;
    default:
      return (byte & 0xc0) === 0x80 ? state - 1 : REJECT;
  }
}

/** Expected length of the sequence a lead byte starts (1 for ASCII and for bytes that are not leads). */
function sequenceLength(lead: number): number {
  if (lead >= 0xf0) return 4;
  if (lead >= 0xe0) return 3;
  if (lead >= 0xc0) return 2;
  return 1;
}

/**
 * Incremental UTF-8 validator for text that arrives in pieces (fragments, partial frames).
 * It fails on the first byte that cannot start or continue a valid sequence, so a peer is
 * caught as early as possible (RFC 6455 §8.1), and a code point split across pieces is fine.
 * Bulk bytes go through the native validator; only the few bytes at piece edges are stepped here.
 */
export class Utf8Validator {
  private state = ACCEPT;

  /** Feeds `bytes[start, end)`. Returns false once the text can no longer be valid UTF-8. */
  push(bytes: Uint8Array, start = 0, end = bytes.length): boolean {
    // Once rejected, stay rejected until reset() (without this, valid bytes after a
    // rejection would be accepted and the REJECT state stepped like a continuation state).
    if (this.state === REJECT) return false;
    let state = this.state;
    let i = start;
    // Finish a sequence left open by the previous piece.
    while (state > ACCEPT && i < end) {
      state = step(state, bytes[i++]!);
      if (state === REJECT) return this.reject();
    }
    if (i < end) {
      // Cut before an incomplete trailing sequence: the part before is checked natively,
      // the tail byte by byte (which also catches an impossible tail like F5 or F4 90).
      let cut = end;
      let j = end - 1;
      while (j > i && end - j < 4 && (bytes[j]! & 0xc0) === 0x80) j--;
      if (end - j < sequenceLength(bytes[j]!)) cut = j;
      if (cut > i && !isUtf8(bytes.subarray(i, cut))) return this.reject();
      for (let k = cut; k < end; k++) {
        state = step(state, bytes[k]!);
        if (state === REJECT) return this.reject();
      }
    }
    this.state = state;
    return true;
  }

  /** True when the text so far ends on a complete code point (call at the end of a message). */
  isComplete(): boolean {
    return this.state === ACCEPT;
  }

  /** Forgets everything, for the next message. */
  reset(): void {
    this.state = ACCEPT;
  }

  private reject(): false {
    this.state = REJECT;
    return false;
  }
}
