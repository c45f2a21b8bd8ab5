import assert from "node:assert/strict";
import { test } from "node:test";
import { parseRedisUrl } from "../../../src/cluster/redis-url.js";

test("accepts redis:// and rediss:// with user, password, port and database", () => {
  assert.deepEqual(parseRedisUrl("redis://127.0.0.1:6380"), {
    url: "redis://127.0.0.1:6380",
    tls: false,
    host: "127.0.0.1",
    port: 6380,
    database: 0,
    display: "redis://127.0.0.1:6380",
  });
  const full = parseRedisUrl("rediss://user:s3cret@cache.example:7000/2");
  assert.equal(full.tls, true);
  assert.equal(full.port, 7000);
  assert.equal(full.database, 2);
  assert.equal(full.display, "rediss://user:***@cache.example:7000/2");
  assert.equal(parseRedisUrl("redis://localhost").port, 6379);
  assert.equal(parseRedisUrl("redis://[::1]:6379/").host, "::1");
});

for (const [url, reason] of [
  ["localhost:6379", /invalid Redis URL "localhost:6379": unknown scheme "localhost"/],
  ["http://h:1", /unknown scheme "http"/],
  ["redis://", /invalid Redis URL "redis:\/\/"/],
  ["redis://h:99999", /invalid Redis URL "redis:\/\/h:99999"/],
  ["redis://h:6379/x", /bad database "x"/],
  ["redis://h:6379/0?tls=1", /no query/],
  ["not a url", /invalid Redis URL "not a url": expected redis:\/\//],
] as const) {
  test(`refuses ${url} with one clear line`, () => {
    assert.throws(
      () => parseRedisUrl(url),
      (error: Error & { code?: string }) => {
        assert.equal(error.name, "BusError");
        assert.equal(error.code, "bad-url");
        assert.match(error.message, reason);
        assert.ok(!error.message.includes("\n"));
        return true;
      },
    );
  });
}

test("never shows the password in an error", () => {
  assert.throws(
    () => parseRedisUrl("redis://u:hunter2@h:6379/zz"),
    (error: Error) => !error.message.includes("hunter2") && error.message.includes("u:***@"),
  );
});
