import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { JobLimiter } from "../../../src/transport/zlib-jobs.js";

describe("JobLimiter", () => {
  it("runs at most `limit` jobs at once and starts the waiting ones in order", () => {
    const limiter = new JobLimiter(2);
    const started: number[] = [];
    const releases: Array<() => void> = [];
    for (let i = 0; i < 5; i++) {
      limiter.run((release) => {
        started.push(i);
        releases[i] = release;
      });
    }
    assert.deepEqual(started, [0, 1]);
    assert.equal(limiter.active, 2);
    assert.equal(limiter.queued, 3);
    releases[1]!();
    releases[1]!(); // a second release of the same job changes nothing
    assert.deepEqual(started, [0, 1, 2]);
    releases[0]!();
    releases[2]!();
    assert.deepEqual(started, [0, 1, 2, 3, 4]);
    releases[3]!();
    releases[4]!();
    assert.equal(limiter.active, 0);
    assert.equal(limiter.peak, 2);
  });

  it("refuses a limit below 1", () => {
    assert.throws(() => new JobLimiter(0), RangeError);
  });
});

/** A property access to node:zlib's internals: `x._handle`, `x["_writeState"]`. */
const PRIVATE_ZLIB = /(?:\.|\[["'`])(?:_handle|_writeState|_processChunk)\b/g;

describe("the source", () => {
  it("uses no private node:zlib API (_handle, _writeState, _processChunk)", () => {
    const offenders: string[] = [];
    const root = join(import.meta.dirname, "../../../../src");
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.name.endsWith(".ts")) {
          const text = readFileSync(path, "utf8");
          for (const match of text.matchAll(PRIVATE_ZLIB)) offenders.push(`${path}: ${match[0]}`);
        }
      }
    };
    assert.match("engine._handle.writeSync(", PRIVATE_ZLIB, "the pattern finds such code");
    PRIVATE_ZLIB.lastIndex = 0;
    walk(root);
    assert.ok(readdirSync(root).includes("transport"), `${root} is the source tree`);
    assert.deepEqual(offenders, []);
  });
});
