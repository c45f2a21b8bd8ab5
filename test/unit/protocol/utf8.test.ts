import assert from "node:assert/strict";
import { isUtf8 } from "node:buffer";
import { describe, it } from "node:test";
import { isValidUtf8, Utf8Validator } from "../../../src/protocol/utf8.js";
import { createRandom, randomBytes } from "../../helpers/protocol-harness.js";

/** Completions that make any viable prefix valid: second bytes for E0, ED, F0, F4 leads, then fillers. */
const COMPLETIONS = [
  [],
  [0x80],
  [0x80, 0x80],
  [0x80, 0x80, 0x80],
  [0x90, 0x80],
  [0x90, 0x80, 0x80],
  [0xa0, 0x80],
].map((bytes) => Buffer.from(bytes));

const scratch = Buffer.alloc(8);
function joined(tail: Buffer, completion: Buffer): Buffer {
  tail.copy(scratch, 0);
  completion.copy(scratch, tail.length);
  return scratch.subarray(0, tail.length + completion.length);
}

/** Whether some valid UTF-8 text starts with `prefix` (brute force, independent of the validator). */
function isViablePrefix(prefix: Buffer): boolean {
  if (isUtf8(prefix)) return true;
  // An unfinished last sequence is 1–3 bytes long, and everything before it is valid as is.
  for (let k = 1; k <= Math.min(3, prefix.length); k++) {
    const head = prefix.subarray(0, prefix.length - k);
    const tail = prefix.subarray(prefix.length - k);
    if (isUtf8(head) && COMPLETIONS.some((completion) => isUtf8(joined(tail, completion))))
      return true;
  }
  return false;
}

/**
 * Length of the shortest prefix that no valid text starts with, or -1 when every prefix is
 * viable. Viability only ever goes from true to false as the prefix grows, so bisect.
 */
function firstNonViable(bytes: Buffer): number {
  if (isViablePrefix(bytes)) return -1;
  let low = 0; // viable
  let high = bytes.length; // not viable
  while (high - low > 1) {
    const mid = (low + high) >>> 1;
    if (isViablePrefix(bytes.subarray(0, mid))) low = mid;
    else high = mid;
  }
  return high;
}

/** Random cut points splitting `length` bytes into 1–6 pieces. */
function randomCuts(random: () => number, length: number): number[] {
  const count = Math.floor(random() * 6);
  const cuts = new Set<number>();
  for (let i = 0; i < count; i++) cuts.add(Math.floor(random() * (length + 1)));
  return [0, ...[...cuts].sort((a, b) => a - b), length];
}

/**
 * Pushes `bytes` in pieces and checks the validator against isUtf8: the overall verdict
 * matches, and the first push to return false is the one holding the first byte that makes
 * the text impossible (fail-fast, nothing earlier, nothing later).
 */
function checkAgainstIsUtf8(bytes: Buffer, ...cutLists: ReadonlyArray<readonly number[]>): void {
  const badAt = firstNonViable(bytes); // length of the shortest impossible prefix
  const expected = isUtf8(bytes);
  for (const cuts of cutLists) checkSplit(bytes, cuts, badAt, expected);
}

function checkSplit(
  bytes: Buffer,
  cuts: readonly number[],
  badAt: number,
  expected: boolean,
): void {
  const validator = new Utf8Validator();
  let rejectedAt = -1;
  for (let i = 0; i + 1 < cuts.length; i++) {
    const start = cuts[i]!;
    const end = cuts[i + 1]!;
    const ok = validator.push(bytes, start, end);
    if (!ok && rejectedAt < 0) rejectedAt = i;
    if (rejectedAt < 0 && badAt > 0 && badAt <= end && end > start) {
      assert.fail(
        `piece ${i} [${start}, ${end}) holds byte ${badAt - 1} of ${bytes.toString("hex")} but was accepted`,
      );
    }
    if (!ok)
      assert.ok(
        badAt > 0 && badAt <= end,
        `rejected too early at piece ${i} of ${bytes.toString("hex")}`,
      );
  }
  const verdict = rejectedAt < 0 && validator.isComplete();
  assert.equal(verdict, expected, `verdict for ${bytes.toString("hex")} cut at ${cuts.join(",")}`);
}

/** Random text made of code points from every UTF-8 length class, with occasional damage. */
function structuredInput(random: () => number): Buffer {
  const parts: Buffer[] = [];
  const count = 1 + Math.floor(random() * 12);
  for (let i = 0; i < count; i++) {
    const kind = Math.floor(random() * 5);
    let codePoint: number;
    if (kind === 0) codePoint = Math.floor(random() * 0x80);
    else if (kind === 1) codePoint = 0x80 + Math.floor(random() * (0x800 - 0x80));
    else if (kind === 2) {
      codePoint = 0x800 + Math.floor(random() * (0x10000 - 0x800));
      if (codePoint >= 0xd800 && codePoint <= 0xdfff) codePoint = 0xfffd;
    } else if (kind === 3) codePoint = 0x10000 + Math.floor(random() * (0x110000 - 0x10000));
    else
      codePoint = [0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xffff, 0x10000, 0x10ffff][
        Math.floor(random() * 9)
      ]!;
    parts.push(Buffer.from(String.fromCodePoint(codePoint)));
  }
  const bytes = Buffer.concat(parts);
  const damage = Math.floor(random() * 4);
  if (damage === 1 && bytes.length > 0) {
    bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256); // flip one byte
  } else if (damage === 2 && bytes.length > 0) {
    return bytes.subarray(0, Math.floor(random() * bytes.length)); // truncate
  } else if (damage === 3) {
    const bad = [0xc0, 0xc1, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xff, 0x80, 0xbf, 0xa0, 0x90, 0x8f][
      Math.floor(random() * 13)
    ]!;
    const at = Math.floor(random() * (bytes.length + 1));
    return Buffer.concat([bytes.subarray(0, at), Buffer.from([bad]), bytes.subarray(at)]);
  }
  return bytes;
}

describe("isValidUtf8", () => {
  it("accepts valid UTF-8 and the empty buffer", () => {
    assert.equal(isValidUtf8(Buffer.from("héllo 🌍")), true);
    assert.equal(isValidUtf8(Buffer.alloc(0)), true);
  });
  it("rejects overlongs, surrogates, code points above U+10FFFF and truncation", () => {
    for (const bytes of [
      [0xc0, 0x80],
      [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0xe2, 0x82],
    ]) {
      assert.equal(isValidUtf8(Buffer.from(bytes)), false, Buffer.from(bytes).toString("hex"));
    }
  });
});

describe("Utf8Validator", () => {
  it("accepts valid text pushed whole and is complete", () => {
    const validator = new Utf8Validator();
    assert.equal(validator.push(Buffer.from("héllo wörld 🌍")), true);
    assert.equal(validator.isComplete(), true);
  });

  it("accepts an empty push and stays complete", () => {
    const validator = new Utf8Validator();
    assert.equal(validator.push(Buffer.alloc(0)), true);
    assert.equal(validator.isComplete(), true);
  });

  it("accepts a code point split over several pushes and is incomplete until its last byte", () => {
    const bytes = Buffer.from("𝄞"); // F0 9D 84 9E
    const validator = new Utf8Validator();
    for (let i = 0; i < 3; i++) {
      assert.equal(validator.push(bytes, i, i + 1), true);
      assert.equal(validator.isComplete(), false);
    }
    assert.equal(validator.push(bytes, 3, 4), true);
    assert.equal(validator.isComplete(), true);
  });

  it("honours start and end", () => {
    const bytes = Buffer.from([0xff, 0x61, 0x62, 0xff]);
    const validator = new Utf8Validator();
    assert.equal(validator.push(bytes, 1, 3), true);
    assert.equal(validator.push(bytes, 3), false);
  });

  it("stays rejected after a failure until reset", () => {
    const validator = new Utf8Validator();
    assert.equal(validator.push(Buffer.from([0xff])), false);
    assert.equal(validator.push(Buffer.from("valid")), false);
    assert.equal(validator.push(Buffer.from([0xa9])), false);
    assert.equal(validator.isComplete(), false);
    validator.reset();
    assert.equal(validator.push(Buffer.from("valid")), true);
    assert.equal(validator.isComplete(), true);
  });

  it("reset forgets an incomplete sequence", () => {
    const validator = new Utf8Validator();
    validator.push(Buffer.from([0xe2, 0x82]));
    validator.reset();
    assert.equal(validator.isComplete(), true);
    assert.equal(validator.push(Buffer.from("a")), true);
  });

  it("rejects each impossible byte in the step where it arrives", () => {
    const cases: Array<[number[], number]> = [
      [[0xc0], 0],
      [[0xc1], 0],
      [[0xf5], 0],
      [[0xff], 0],
      [[0x80], 0],
      [[0xe0, 0x9f], 1],
      [[0xe0, 0xc0], 1],
      [[0xed, 0xa0], 1],
      [[0xed, 0x7f], 1],
      [[0xf0, 0x8f], 1],
      [[0xf0, 0xc0], 1],
      [[0xf4, 0x90], 1],
      [[0xf4, 0x7f], 1],
      [[0xe1, 0x80, 0x41], 2],
      [[0xf1, 0x80, 0x80, 0xc0], 3],
    ];
    for (const [bytes, badIndex] of cases) {
      const validator = new Utf8Validator();
      bytes.forEach((byte, i) => {
        assert.equal(
          validator.push(Buffer.from([byte])),
          i < badIndex,
          `${Buffer.from(bytes).toString("hex")} byte ${i}`,
        );
      });
    }
  });

  it("checks a long piece whose tail has more continuation bytes than any lead needs", () => {
    const validator = new Utf8Validator();
    assert.equal(validator.push(Buffer.from([0x41, 0x80, 0x80, 0x80, 0x80])), false);
  });

  it("matches isUtf8 on every 1- and 2-byte input, split every way", () => {
    for (let a = 0; a < 256; a++) {
      checkAgainstIsUtf8(Buffer.from([a]), [0, 1]);
      for (let b = 0; b < 256; b++) {
        const bytes = Buffer.from([a, b]);
        checkAgainstIsUtf8(bytes, [0, 2], [0, 1, 2]);
      }
    }
  });

  it("matches isUtf8 on every 3-byte input with interesting bytes, split every way", () => {
    const interesting = [
      0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xe1, 0xed,
      0xee, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff,
    ];
    for (const a of interesting) {
      for (const b of interesting) {
        for (const c of interesting) {
          const bytes = Buffer.from([a, b, c]);
          checkAgainstIsUtf8(bytes, [0, 3], [0, 1, 3], [0, 2, 3], [0, 1, 2, 3]);
        }
      }
    }
  });

  it("matches isUtf8 on 4,000 structured inputs split at random points", () => {
    const random = createRandom(2024);
    for (let i = 0; i < 4000; i++) {
      const bytes = structuredInput(random);
      checkAgainstIsUtf8(bytes, randomCuts(random, bytes.length));
    }
  });

  it("matches isUtf8 on 4,000 random byte strings split at random points", () => {
    const random = createRandom(7);
    for (let i = 0; i < 4000; i++) {
      // Bias towards high bytes so that multi-byte sequences are common.
      const length = Math.floor(random() * 12);
      const bytes = randomBytes(random, length);
      for (let j = 0; j < length; j++) if (random() < 0.5) bytes[j] = 0x80 | (bytes[j]! & 0x7f);
      checkAgainstIsUtf8(bytes, randomCuts(random, length));
    }
  });

  it("matches isUtf8 on long valid texts with one damaged byte far from the edges", () => {
    const random = createRandom(99);
    for (let i = 0; i < 200; i++) {
      const parts: Buffer[] = [];
      for (let j = 0; j < 40; j++) parts.push(structuredInput(createRandom(i * 100 + j)));
      const bytes = Buffer.from(Buffer.concat(parts).toString("utf8")); // repaired: valid
      assert.equal(isUtf8(bytes), true);
      checkAgainstIsUtf8(bytes, randomCuts(random, bytes.length));
      if (bytes.length > 0 && i % 2 === 0) bytes[Math.floor(random() * bytes.length)] = 0xff;
      checkAgainstIsUtf8(bytes, randomCuts(random, bytes.length));
    }
  });
});
