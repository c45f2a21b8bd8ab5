import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { findBucket, findLowerEdge, LatencyHistogram } from "../../../src/cli/bench-histogram.js";

/** wsload's hist_add index computation, transcribed with BigInt (64-bit unsigned as in C). */
function wsloadBucket(us: bigint): number {
  if (us < 2048n) return Number(us);
  const e = BigInt(us.toString(2).length - 1 - 10);
  return 2048 + Number(e - 1n) * 1024 + Number((us >> e) - 1024n);
}

/** wsload's hist_pct: lower edge of the bucket holding the ceil(q*n)-th sample. */
function wsloadPercentile(samples: number[], q: number): number {
  const counts = new Map<number, number>();
  for (const s of samples)
    counts.set(wsloadBucket(BigInt(s)), (counts.get(wsloadBucket(BigInt(s))) ?? 0) + 1);
  const want = Math.floor(q * samples.length + 0.999999);
  let seen = 0;
  for (const index of [...counts.keys()].sort((a, b) => a - b)) {
    seen += counts.get(index)!;
    if (seen >= want) {
      if (index < 2048) return index;
      const e = Math.floor((index - 2048) / 1024) + 1;
      return (1024 + ((index - 2048) % 1024)) * 2 ** e;
    }
  }
  return Math.max(...samples);
}

describe("LatencyHistogram (wsload's buckets)", () => {
  it("is exact below 2048 µs", () => {
    for (const us of [0, 1, 2, 999, 2047]) {
      assert.equal(findBucket(us), us);
      assert.equal(findLowerEdge(findBucket(us)), us);
    }
  });

  it("puts every value in the same bucket as wsload, across the whole range", () => {
    const values = [
      2048,
      2049,
      4095,
      4096,
      4097,
      65_535,
      65_536,
      1_000_000,
      2 ** 31,
      2 ** 32 - 1,
      2 ** 32,
      2 ** 32 + 1,
      2 ** 39,
      2 ** 40 - 1,
    ];
    let x = 12345;
    for (let i = 0; i < 2000; i++) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      values.push(Math.floor(2 ** ((x / 2 ** 31) * 40)));
    }
    for (const us of values)
      assert.equal(findBucket(us), wsloadBucket(BigInt(us)), `bucket of ${us}`);
  });

  it("has about 0.1 % resolution above 2048 µs: a value lies within its bucket", () => {
    for (const us of [2048, 3000, 12_345, 999_999, 123_456_789]) {
      const edge = findLowerEdge(findBucket(us));
      assert.ok(edge <= us, `${edge} <= ${us}`);
      assert.ok(us - edge < us / 1000 + 1, `${us} - ${edge} within 0.1 %`);
      assert.ok(findLowerEdge(findBucket(us) + 1) > us);
    }
  });

  it("reports percentiles as wsload does, and the exact max", () => {
    const samples = [5, 7, 7, 100, 2500, 2501, 40_000, 41_234, 1_000_001, 3];
    const h = new LatencyHistogram();
    for (const s of samples) h.record(s);
    assert.equal(h.count, samples.length);
    assert.equal(h.max, 1_000_001);
    for (const q of [0.1, 0.5, 0.9, 0.99, 1])
      assert.equal(h.percentile(q), wsloadPercentile(samples, q), `q=${q}`);
  });

  it("p50 of 1..100 is 50, p99 is 99", () => {
    const h = new LatencyHistogram();
    for (let us = 1; us <= 100; us++) h.record(us);
    assert.equal(h.percentile(0.5), 50);
    assert.equal(h.percentile(0.9), 90);
    assert.equal(h.percentile(0.99), 99);
  });

  it("truncates fractions, counts negatives as 0, clamps huge values, and is 0 when empty", () => {
    const h = new LatencyHistogram();
    assert.equal(h.percentile(0.5), 0);
    h.record(12.9);
    h.record(-5);
    h.record(2 ** 50);
    assert.equal(h.percentile(0.3), 0);
    assert.equal(h.percentile(0.5), 12);
    assert.equal(h.max, 2 ** 40 - 1);
  });

  it("merges and resets", () => {
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    a.record(10);
    b.record(20);
    b.record(5000);
    a.merge(b);
    assert.equal(a.count, 3);
    assert.equal(a.max, 5000);
    assert.equal(a.percentile(0.5), 20);
    a.reset();
    assert.equal(a.count, 0);
    assert.equal(a.max, 0);
  });
});
