import assert from "node:assert/strict";
import { test } from "node:test";
import { LocalBus } from "../../../src/cluster/local-bus.js";

test("ids are the lowest free, reused after release, and listed in order", () => {
  const bus = new LocalBus();
  assert.deepEqual([bus.acquireId(), bus.acquireId(), bus.acquireId()], [0, 1, 2]);
  bus.releaseId(1);
  bus.releaseId(1); // a double release is ignored, not a second free slot
  assert.deepEqual(bus.clients(), [0, 2]);
  assert.equal(bus.acquireId(), 1);
  assert.equal(bus.acquireId(), 3);
  assert.deepEqual(bus.clients(), [0, 1, 2, 3]);
});

test("there is no other node: sendTo says so and nothing is delivered anywhere", async () => {
  const bus = new LocalBus();
  await bus.start();
  const id = bus.acquireId();
  assert.equal(bus.sendTo(id, { data: "x", binary: false }), false);
  bus.broadcast({ data: "x", binary: false });
  assert.equal(bus.up, true);
  assert.deepEqual(
    (await bus.nodes()).map((n) => [n.id, n.clients]),
    [["local", 1]],
  );
});

test("history keeps the last N publications per topic, synchronously", async () => {
  const bus = new LocalBus({ historyLength: 2 });
  for (const data of ["a", "b", "c"]) bus.publish("t", { data, binary: false });
  bus.publish("u", { data: new Uint8Array([1]), binary: true });
  assert.deepEqual(
    bus.historyNow("t").map((m) => m.data),
    ["b", "c"],
  );
  assert.deepEqual(await bus.history("u"), [{ data: new Uint8Array([1]), binary: true }]);
  assert.deepEqual(await bus.history("none"), []);
});

test("without --history nothing is kept", async () => {
  const bus = new LocalBus();
  bus.publish("t", { data: "a", binary: false });
  assert.deepEqual(await bus.history("t"), []);
});

test("a stopped bus refuses new ids and lists none", async () => {
  const bus = new LocalBus();
  bus.acquireId();
  await bus.stop();
  assert.deepEqual(bus.clients(), []);
  assert.throws(() => bus.acquireId(), { name: "BusError", code: "stopped" });
});

test("a negative history length is refused", () => {
  assert.throws(() => new LocalBus({ historyLength: -1 }), RangeError);
});
