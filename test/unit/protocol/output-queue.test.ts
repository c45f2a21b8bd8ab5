import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OutputQueue, SMALL_FRAME_BYTES } from "../../../src/protocol/output-queue.js";

/** Reserves `bytes.length` bytes and fills them, as the connection does. */
function write(queue: OutputQueue, bytes: Buffer): void {
  const at = queue.reserve(bytes.length);
  bytes.copy(queue.reserved, at);
}

function drainAll(queue: OutputQueue): Buffer[] {
  const chunks: Buffer[] = [];
  queue.drain((chunk) => chunks.push(chunk));
  return chunks;
}

describe("OutputQueue", () => {
  it("starts empty and drains nothing", () => {
    const queue = new OutputQueue();
    assert.equal(queue.isEmpty(), true);
    assert.equal(queue.bytes, 0);
    assert.deepEqual(drainAll(queue), []);
  });

  it("packs many small frames into one contiguous chunk with exact contents", () => {
    const queue = new OutputQueue();
    // Start on a fresh slab so the run cannot straddle a slab boundary.
    write(queue, Buffer.alloc(SMALL_FRAME_BYTES, 0));
    drainAll(queue);
    const parts: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const part = Buffer.from(`frame ${i};`);
      parts.push(part);
      write(queue, part);
    }
    assert.equal(queue.bytes, Buffer.concat(parts).length);
    const chunks = drainAll(queue);
    assert.equal(chunks.length, 1);
    assert.deepEqual(chunks[0], Buffer.concat(parts));
    assert.equal(queue.isEmpty(), true);
  });

  it("queues pushed buffers by reference, in order with reserved bytes", () => {
    const queue = new OutputQueue();
    const big = Buffer.alloc(100_000, 7);
    write(queue, Buffer.from("head"));
    queue.push(big);
    write(queue, Buffer.from("tail"));
    const chunks = drainAll(queue);
    assert.equal(chunks.length, 3);
    assert.equal(chunks[1], big, "the same Buffer object, not a copy");
    assert.deepEqual(
      Buffer.concat(chunks),
      Buffer.concat([Buffer.from("head"), big, Buffer.from("tail")]),
    );
  });

  it("ignores an empty push", () => {
    const queue = new OutputQueue();
    queue.push(Buffer.alloc(0));
    assert.equal(queue.isEmpty(), true);
  });

  it("gives a reservation larger than a quarter slab that does not fit its own buffer", () => {
    const queue = new OutputQueue();
    const large = Buffer.alloc(60_000, 3);
    write(queue, Buffer.alloc(10_000, 1)); // the slab now cannot hold 60,000 more
    write(queue, large);
    const chunks = drainAll(queue);
    assert.deepEqual(Buffer.concat(chunks), Buffer.concat([Buffer.alloc(10_000, 1), large]));
  });

  it("moves to a fresh slab when the current one is full, keeping every byte", () => {
    const queue = new OutputQueue();
    const parts: Buffer[] = [];
    for (let i = 0; i < 100; i++) {
      const part = Buffer.alloc(5000, i);
      parts.push(part);
      write(queue, part);
    }
    const chunks = drainAll(queue);
    assert.ok(chunks.length >= 7, "several slabs were used");
    assert.deepEqual(Buffer.concat(chunks), Buffer.concat(parts));
  });

  it("keeps two queues that share the slab apart", () => {
    const a = new OutputQueue();
    const b = new OutputQueue();
    for (let i = 0; i < 50; i++) {
      write(a, Buffer.from(`a${i},`));
      write(b, Buffer.from(`b${i},`));
    }
    const expectedA = Array.from({ length: 50 }, (_, i) => `a${i},`).join("");
    const expectedB = Array.from({ length: 50 }, (_, i) => `b${i},`).join("");
    assert.equal(Buffer.concat(drainAll(a)).toString(), expectedA);
    assert.equal(Buffer.concat(drainAll(b)).toString(), expectedB);
  });

  it("does not let later reservations overwrite drained bytes", () => {
    const queue = new OutputQueue();
    write(queue, Buffer.from("first"));
    const [first] = drainAll(queue);
    write(queue, Buffer.from("second"));
    assert.equal(first!.toString(), "first");
    assert.equal(Buffer.concat(drainAll(queue)).toString(), "second");
  });

  it("take() returns one buffer: the single chunk itself, or the concatenation", () => {
    const queue = new OutputQueue();
    const big = Buffer.alloc(70_000, 1);
    queue.push(big);
    assert.equal(queue.take(), big);
    write(queue, Buffer.from("x"));
    queue.push(big);
    const taken = queue.take();
    assert.equal(taken.length, 70_001);
    assert.equal(queue.take().length, 0);
  });
});
