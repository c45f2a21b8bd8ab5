import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BenchResult } from "../../../src/cli/bench-engine.js";
import { LatencyHistogram } from "../../../src/cli/bench-histogram.js";
import { deserializeError, mergeResults, serializeError } from "../../../src/cli/bench-threads.js";
import { HandshakeError } from "../../../src/protocol/errors.js";

function part(overrides: Partial<BenchResult>): BenchResult {
  return {
    mode: "echo",
    threads: 1,
    url: "ws://127.0.0.1:9001/",
    connections: 50,
    pipeline: 1,
    size: 64,
    binary: false,
    durationMs: 5000,
    warmupMs: 2000,
    measuredMs: 5000,
    messages: 100_000,
    bytes: 6_400_000,
    messagesPerSecond: 20_000,
    megabytesPerSecond: 1.28,
    latencyUs: { p50: 0, p90: 0, p99: 0, max: 0, count: 0 },
    opened: 50,
    failed: 0,
    closed: 0,
    errors: 0,
    protocolErrors: 0,
    broadcast: null,
    cpu: null,
    messagesPerServerCpuSecond: null,
    firstError: null,
    connectError: null,
    stopReason: null,
    ...overrides,
  };
}

describe("bench threads", () => {
  it("adds up the threads' results; CPU from the first; percentiles from the merged histogram", () => {
    const histogram = new LatencyHistogram();
    for (let us = 1; us <= 100; us++) histogram.record(us);
    const merged = mergeResults(
      [
        {
          result: part({ cpu: { bench: 150, server: 80, others: 5, cores: 4 } }),
          connectError: null,
        },
        {
          result: part({ connections: 49, opened: 48, failed: 1, errors: 2, firstError: "boom" }),
          connectError: new Error("refused"),
        },
      ],
      histogram,
      2,
    );
    assert.equal(merged.threads, 2);
    assert.equal(merged.connections, 99);
    assert.equal(merged.opened, 98);
    assert.equal(merged.failed, 1);
    assert.equal(merged.errors, 2);
    assert.equal(merged.messages, 200_000);
    assert.equal(merged.messagesPerSecond, 40_000);
    assert.equal(merged.megabytesPerSecond, 2.56);
    assert.equal(merged.messagesPerServerCpuSecond, 50_000);
    assert.deepEqual(merged.latencyUs, { p50: 50, p90: 90, p99: 99, max: 100, count: 100 });
    assert.equal(merged.firstError, "boom");
    assert.equal(merged.connectError?.message, "refused");
    assert.deepEqual(merged.cpu, { bench: 150, server: 80, others: 5, cores: 4 });
  });

  it("carries errors across threads with their code and status", () => {
    const refused = deserializeError(
      serializeError(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" })),
    );
    assert.equal((refused as NodeJS.ErrnoException).code, "ECONNREFUSED");
    const handshake = deserializeError(
      serializeError(
        new HandshakeError(404, "server answered 404 instead of 101 Switching Protocols"),
      ),
    );
    assert.ok(handshake instanceof HandshakeError);
    assert.equal(handshake.status, 404);
    assert.equal(deserializeError(serializeError(null)), null);
  });

  it("round-trips a histogram through a snapshot", () => {
    const a = new LatencyHistogram();
    a.record(7);
    a.record(70_000);
    const b = new LatencyHistogram();
    b.mergeSnapshot(structuredClone(a.snapshot()));
    assert.equal(b.count, 2);
    assert.equal(b.max, 70_000);
    assert.equal(b.percentile(1), a.percentile(1));
  });
});
