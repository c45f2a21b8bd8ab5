import assert from "node:assert/strict";
import { test } from "node:test";
import { MemorySharedDictStore } from "../../../src/cluster/shared-dict-memory.js";

function setup(capacity?: number) {
  const clock = { now: 5_000 };
  const store = new MemorySharedDictStore({
    now: () => clock.now,
    ...(capacity === undefined ? {} : { defaultCapacityBytes: capacity }),
  });
  const call = (op: Parameters<typeof store.call>[1], ...args: unknown[]) =>
    store.call("d", op, args as never);
  return { clock, store, call };
}

test("set, get with flags, add, replace and delete answer as lua-resty-core does", () => {
  const { call } = setup();
  assert.deepEqual(call("get", "k"), []);
  assert.deepEqual(call("set", "k", "v", 0, 0), [true, null, false]);
  assert.deepEqual(call("get", "k"), ["v"]);
  assert.deepEqual(call("set", "k", 3.5, 0, 9), [true, null, false]);
  assert.deepEqual(call("get", "k"), [3.5, 9]);
  assert.deepEqual(call("add", "k", true, 0, 0), [false, "exists", false]);
  assert.deepEqual(call("replace", "k", false, 0, 0), [true, null, false]);
  assert.deepEqual(call("get", "k"), [false]);
  assert.deepEqual(call("replace", "other", 1, 0, 0), [false, "not found", false]);
  assert.deepEqual(call("delete", "k"), [true, null, false]);
  assert.deepEqual(call("get", "k"), []);
  assert.deepEqual(call("set", "k", "v", 0, 0), [true, null, false]);
  assert.deepEqual(call("set", "k", null, 0, 0), [true, null, false], "a nil value deletes");
  assert.deepEqual(call("get", "k"), []);
});

test("incr: not found without init, init and init_ttl, not a number", () => {
  const { call, clock } = setup();
  assert.deepEqual(call("incr", "n", 1), [null, "not found"]);
  assert.deepEqual(call("incr", "n", 2, 10, 1), [12, null, false]);
  assert.deepEqual(call("incr", "n", -5), [7, null]);
  assert.deepEqual(call("ttl", "n"), [1]);
  clock.now += 1_000;
  assert.deepEqual(call("incr", "n", 1), [null, "not found"], "init_ttl expired it");
  call("set", "s", "abc", 0, 0);
  assert.deepEqual(call("incr", "s", 1), [null, "not a number"]);
  assert.deepEqual(call("incr", "n", "x", 0), [null, "value not a number"]);
});

test("expire, ttl, flush_expired, get_keys and flush_all", () => {
  const { call, clock } = setup();
  call("set", "a", 1, 0, 0);
  call("set", "b", 2, 2, 0);
  assert.deepEqual(call("ttl", "a"), [0]);
  assert.deepEqual(call("expire", "a", 1), [true]);
  assert.deepEqual(call("expire", "zz", 1), [null, "not found"]);
  assert.deepEqual(call("get_keys", 0), [["a", "b"]]);
  assert.deepEqual(call("get_keys", 1), [["a"]]);
  clock.now += 1_500;
  assert.deepEqual(call("get_keys", 0), [["b"]]);
  assert.deepEqual(call("flush_expired", 0), [1]);
  assert.deepEqual(call("get_stale", "a"), [], "flushed items are gone even for get_stale");
  call("flush_all");
  assert.deepEqual(call("get", "b"), []);
  assert.deepEqual(call("get_keys"), [[]]);
});

test("lists: push, pop, llen, and a list is not a value", () => {
  const { call } = setup();
  assert.deepEqual(call("rpush", "l", "b"), [1]);
  assert.deepEqual(call("lpush", "l", "a"), [2]);
  assert.deepEqual(call("rpush", "l", 3), [3]);
  assert.deepEqual(call("llen", "l"), [3]);
  assert.deepEqual(call("get", "l"), [null, "value is a list"]);
  assert.deepEqual(call("lpop", "l"), ["a"]);
  assert.deepEqual(call("rpop", "l"), [3]);
  assert.deepEqual(call("rpop", "l"), ["b"]);
  assert.deepEqual(call("rpop", "l"), []);
  assert.deepEqual(call("llen", "l"), [0]);
  call("set", "v", "x", 0, 0);
  assert.deepEqual(call("lpush", "v", "y"), [null, "value not a list"]);
  assert.deepEqual(call("llen", "v"), [null, "value not a list"]);
});

test("capacity and free_space in bytes; eviction takes expired items first, then the least recently used", () => {
  const { call, store, clock } = setup(600);
  assert.deepEqual(call("capacity"), [600]);
  assert.deepEqual(call("free_space"), [600]);
  const value = "v".repeat(100); // 64 + 1 + 100 = 165 bytes an item
  call("set", "a", value, 0, 0);
  call("set", "b", value, 1, 0);
  call("set", "c", value, 0, 0);
  assert.deepEqual(call("free_space"), [600 - 3 * 165]);
  call("get", "a"); // a is now more recently used than c
  clock.now += 2_000; // b expires
  assert.deepEqual(
    call("safe_set", "d", value, 0, 0),
    [true, null, false],
    "room made by the expired item",
  );
  assert.deepEqual(call("safe_set", "e", value, 0, 0), [false, "no memory", false]);
  assert.deepEqual(call("set", "e", value, 0, 0), [true, null, true]);
  assert.deepEqual(call("get", "c"), [], "c was the least recently used");
  assert.deepEqual(call("get", "a"), [value]);
  assert.deepEqual(call("set", "huge", "x".repeat(600), 0, 0), [false, "no memory", false]);
  assert.deepEqual(call("lpush", "l", value), [null, "no memory"]);
  assert.deepEqual(store.call("other", "capacity", []), [600]);
});

test("an unknown operation is an error, not a result", () => {
  const { store } = setup();
  assert.throws(() => store.call("d", "frobnicate" as never, []), { name: "SharedDictError" });
});
