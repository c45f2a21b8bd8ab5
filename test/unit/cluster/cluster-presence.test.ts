import assert from "node:assert/strict";
import { test } from "node:test";
import { ClusterPresence } from "../../../src/cluster/cluster-presence.js";

test("joins, leaves and a node's departure keep the sorted id list right", () => {
  const presence = new ClusterPresence();
  presence.add(3, "b");
  presence.add(0, "a");
  presence.add(1, "b");
  assert.deepEqual(presence.ids(), [0, 1, 3]);
  assert.equal(presence.ownerOf(3), "b");
  presence.removeNode("b");
  assert.deepEqual(presence.ids(), [0]);
  assert.equal(presence.ownerOf(3), undefined);
});

test("a late leave of an id that moved to another node does not remove it", () => {
  const presence = new ClusterPresence();
  presence.add(2, "a");
  presence.add(2, "b"); // a released 2, b took it; a's leave event arrives after b's join
  presence.remove(2, "a");
  assert.equal(presence.ownerOf(2), "b");
  presence.remove(2, "b");
  assert.deepEqual(presence.ids(), []);
});

test("replace takes a fresh snapshot", () => {
  const presence = new ClusterPresence();
  presence.add(9, "gone");
  presence.replace([
    [4, "a"],
    [2, "b"],
  ]);
  assert.deepEqual(presence.ids(), [2, 4]);
});
