/** The read deadlines' min-heap: entries leave in deadline order, and from anywhere. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Deadlined, DeadlineHeap } from "../../../../src/lua/host/deadline-heap.js";

describe("DeadlineHeap", () => {
  it("pops due entries in deadline order after removals from anywhere in it", () => {
    const heap = new DeadlineHeap<Deadlined & { id: number }>();
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const entries = Array.from({ length: 300 }, (_, id) => ({
      id,
      deadline: Math.floor(random() * 1000),
      heapIndex: -1,
    }));
    for (const entry of entries) heap.insert(entry);
    const removed = entries.filter((_, i) => i % 3 === 0);
    for (const entry of removed) heap.remove(entry);
    heap.remove(removed[0]!); // twice: nothing happens
    assert.equal(heap.size, 200);
    assert.equal(heap.popDue(-1), undefined, "nothing is due before every deadline");
    const popped: number[] = [];
    for (let entry = heap.popDue(1000); entry; entry = heap.popDue(1000))
      popped.push(entry.deadline);
    const expected = entries
      .filter((_, i) => i % 3 !== 0)
      .map((entry) => entry.deadline)
      .sort((a, b) => a - b);
    assert.deepEqual(popped, expected);
    assert.equal(heap.size, 0);
  });
});
