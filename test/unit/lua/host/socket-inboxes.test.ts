/**
 * The one inbox of the coroutine styles: wakes batched per event-loop turn, the event handed
 * over as the wake's values, read deadlines in one heap, flow control.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InboxEvent, SocketInboxes } from "../../../../src/lua/host/socket-inboxes.js";
import type { LuaInput } from "../../../../src/lua/vm/engine.js";

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

function inboxes(onFlow?: (handle: number, reading: boolean) => void) {
  const wakes: LuaInput[][] = [];
  let woken: (() => void) | null = null;
  const box = new SocketInboxes({
    wake: (args) => {
      wakes.push(args);
      woken?.();
    },
    onFlow,
  });
  const nextWake = () =>
    new Promise<void>((resolve) => {
      woken = resolve;
    });
  return { box, wakes, nextWake };
}

describe("SocketInboxes", () => {
  it("wakes the parked readers of every socket that had data in a turn with one entry, event included", async () => {
    const { box, wakes } = inboxes();
    for (const handle of [1, 2, 3]) {
      box.open(handle);
      assert.equal(box.take(handle, 0), undefined);
    }
    const one = Buffer.from("one");
    const two = Buffer.from("two");
    box.deliver(1, 1, one, true);
    box.deliver(3, 2, two, false);
    box.deliver(3, 1, one, true);
    assert.equal(wakes.length, 0, "not from inside the socket read");
    await turn();
    assert.deepEqual(wakes, [[1, 1, one, true, 3, 2, two, false]]);
    // The second event of handle 3 waits for its next read.
    const inbox = box.take(3, 0);
    assert.equal(inbox?.takenKind, 1);
    assert.equal(inbox?.takenData, one);
  });

  it("a read with a deadline is woken with a timeout, from one heap", async () => {
    const { box, wakes, nextWake } = inboxes();
    box.open(1);
    box.open(2);
    const woken = nextWake();
    assert.equal(box.take(1, 5), undefined);
    assert.equal(box.take(2, 60_000), undefined);
    assert.equal(box.deadlineCount, 2);
    await woken;
    assert.deepEqual(wakes, [[1, InboxEvent.Timeout, "", null]]);
    assert.equal(box.deadlineCount, 1);
    box.dispose();
  });

  it("data before the deadline takes the read out of the heap", async () => {
    const { box, wakes } = inboxes();
    box.open(1);
    box.take(1, 60_000);
    assert.equal(box.deadlineCount, 1);
    box.deliver(1, 1, Buffer.from("x"), true);
    assert.equal(box.deadlineCount, 0);
    await turn();
    assert.equal(wakes.length, 1);
    box.dispose();
  });

  it("pauses the peer past 1024 unread events and resumes it once the script read half", () => {
    const flow: Array<[number, boolean]> = [];
    const { box } = inboxes((handle, reading) => flow.push([handle, reading]));
    box.open(7);
    for (let i = 0; i < 1024; i++) box.deliver(7, 2, Buffer.from([i & 255]), true);
    assert.deepEqual(flow, [[7, false]]);
    for (let i = 0; i < 511; i++) box.take(7, 0);
    assert.deepEqual(flow, [[7, false]]);
    box.take(7, 0);
    assert.deepEqual(flow, [
      [7, false],
      [7, true],
    ]);
  });

  it("closing a handle wakes its parked reader with 'gone'; later reads find no inbox", async () => {
    const { box, wakes } = inboxes();
    box.open(4);
    box.take(4, 0);
    box.close(4);
    await turn();
    assert.deepEqual(wakes, [[4, InboxEvent.Closed, "", null]]);
    assert.equal(box.has(4), false);
    assert.equal(box.isClosed(4), true);
  });

  it("an event put back (its reader was gone) is read first", () => {
    const { box } = inboxes();
    box.open(1);
    box.deliver(1, 1, Buffer.from("second"), true);
    box.putBack(1, 1, Buffer.from("first"), true);
    assert.equal(String(box.take(1, 0)?.takenData), "first");
    assert.equal(String(box.take(1, 0)?.takenData), "second");
  });
});
