import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BenchResult } from "../../../src/cli/bench-engine.js";
import { findPayloadOffset, readHexSequence } from "../../../src/cli/bench-engine.js";
import {
  describeCaveats,
  formatCount,
  formatJson,
  formatMicros,
  formatProgress,
  formatSummary,
  isBenchLimited,
} from "../../../src/cli/bench-report.js";

function result(overrides: Partial<BenchResult> = {}): BenchResult {
  return {
    mode: "echo",
    threads: 1,
    url: "ws://127.0.0.1:9001/",
    connections: 100,
    pipeline: 16,
    size: 64,
    binary: false,
    durationMs: 5000,
    warmupMs: 2000,
    measuredMs: 5000,
    messages: 500_000,
    bytes: 32_000_000,
    messagesPerSecond: 100_000,
    megabytesPerSecond: 6.4,
    latencyUs: { p50: 850, p90: 12_400, p99: 25_000, max: 1_250_000, count: 500_000 },
    opened: 100,
    failed: 0,
    closed: 0,
    errors: 0,
    protocolErrors: 0,
    broadcast: null,
    cpu: { bench: 60, server: 99, others: 10, cores: 2 },
    messagesPerServerCpuSecond: 101_010,
    firstError: null,
    connectError: null,
    stopReason: null,
    ...overrides,
  };
}

describe("bench report", () => {
  it("formats counts and durations for people", () => {
    assert.equal(formatCount(0), "0");
    assert.equal(formatCount(999.6), "1,000");
    assert.equal(formatCount(1_234_567.8), "1,234,568");
    assert.equal(formatCount(-1234), "-1,234");
    assert.equal(formatMicros(850), "850 µs");
    assert.equal(formatMicros(1234), "1.23 ms");
    assert.equal(formatMicros(12_400), "12.4 ms");
    assert.equal(formatMicros(1_250_000), "1.25 s");
  });

  it("summarises an echo run as a table", () => {
    const text = formatSummary(result());
    assert.match(
      text,
      /^moonsocket bench echo ws:\/\/127\.0\.0\.1:9001\/\n100 connections, pipeline 16, 64 B text, 5s measured after 2s warm-up\n/,
    );
    assert.match(text, /messages\/s\s+100,000\n/);
    assert.match(text, /MB\/s \(payload, one way\)\s+6\.40\n/);
    assert.match(
      text,
      /echo latency\s+p50 850 µs {3}p90 12\.4 ms {3}p99 25\.0 ms {3}max 1\.25 s\n/,
    );
    assert.match(text, /connections\s+100 opened, 0 failed, 0 closed by the server\n/);
    assert.match(
      text,
      /cpu \(% of one core\)\s+bench 60% {2}server 99% {2}others 10% {2}\(2 cores\)\n/,
    );
    assert.match(text, /messages per server CPU-s\s+101,010\n/);
    assert.match(text, /messages per bench CPU-s\s+166,667\n/);
    assert.doesNotMatch(text, /note:/);
  });

  it("summarises a broadcast run with its own names", () => {
    const text = formatSummary(
      result({
        mode: "broadcast",
        pipeline: 1,
        broadcast: { intervalMs: 100, sent: 50, incomplete: 0, echoesToSender: 50 },
      }),
    );
    assert.match(text, /100 receivers \+ 1 sender, one message every 100 ms/);
    assert.match(text, /deliveries\/s/);
    assert.match(text, /fan-out latency/);
    assert.match(text, /broadcasts\s+50 sent, 0 incomplete, 50 copies to the sender/);
  });

  it("counts a broadcast run in deliveries everywhere, never in messages", () => {
    const run = result({
      mode: "broadcast",
      errors: 2,
      broadcast: { intervalMs: 0, sent: 50, incomplete: 0, echoesToSender: 0 },
      cpu: { bench: 60, server: null, others: 80, cores: 2 },
      messagesPerServerCpuSecond: null,
    });
    const text = formatSummary(run);
    assert.match(text, /errors\s+2 wrong deliveries, 0 protocol errors/);
    assert.match(text, /deliveries per bench CPU-s/);
    assert.match(text, /get deliveries per second of server CPU/);
    assert.doesNotMatch(text, /messages/);
    const progress = {
      elapsedMs: 3000,
      phase: "measuring" as const,
      open: 101,
      target: 101,
      messagesPerSecond: 12_000,
      errors: 0,
      benchCpu: 40,
    };
    assert.match(formatProgress(progress, "broadcast"), /12,000 deliveries\/s/);
    assert.match(formatProgress(progress), /12,000 msg\/s/);
  });

  it("says why a run stopped early", () => {
    const text = formatSummary(
      result({ closed: 100, stopReason: "every connection is gone (closed by the server)" }),
    );
    assert.match(text, /stopped early\s+every connection is gone \(closed by the server\)/);
  });

  it("says when the bench was the bottleneck or the machine was busy", () => {
    const limited = result({ cpu: { bench: 97, server: 60, others: 5, cores: 2 } });
    assert.equal(isBenchLimited(limited), true);
    assert.match(
      describeCaveats(limited)[0]!,
      /bench itself used 97% of a core: it was probably the bottleneck/,
    );
    const busy = result({
      cpu: { bench: 30, server: 40, others: 150, cores: 2 },
      messagesPerServerCpuSecond: null,
    });
    assert.equal(isBenchLimited(busy), false);
    assert.match(describeCaveats(busy)[0]!, /other processes used 150%.*--pid/);
    assert.match(formatSummary(busy), /\nnote: other processes used 150%/);
    const shared = result({ cpu: { bench: 35, server: 40, others: 150, cores: 2 } });
    assert.match(
      describeCaveats(shared)[0]!,
      /about as much CPU as the server.*per server CPU-second/,
    );
  });

  it("writes one JSON line with the figures, the CPU, the verdict and the connect error as text", () => {
    const line = formatJson(result({ connectError: new Error("connect ECONNREFUSED") }), 1);
    assert.ok(line.endsWith("}\n"));
    assert.equal(line.trim().split("\n").length, 1);
    const parsed = JSON.parse(line) as Record<string, unknown>;
    assert.equal(parsed.messagesPerSecond, 100_000);
    assert.deepEqual(parsed.latencyUs, {
      p50: 850,
      p90: 12_400,
      p99: 25_000,
      max: 1_250_000,
      count: 500_000,
    });
    assert.deepEqual(parsed.cpu, {
      benchPercent: 60,
      serverPercent: 99,
      othersPercent: 10,
      cores: 2,
    });
    assert.equal(parsed.connectError, "connect ECONNREFUSED");
    assert.equal(parsed.benchLimited, false);
    assert.equal(parsed.messagesPerBenchCpuSecond, 166_667);
    assert.equal(parsed.ok, false);
  });

  it("formats the progress line", () => {
    const line = formatProgress({
      elapsedMs: 4020,
      phase: "measuring",
      open: 100,
      target: 100,
      messagesPerSecond: 52_310,
      errors: 0,
      benchCpu: 71.4,
    });
    assert.equal(line, "[  4s] measuring  open 100/100  52,310 msg/s  errors 0  bench cpu 71%");
  });
});

describe("bench payloads (as wsload)", () => {
  it("moves the payload window with the sequence and the connection", () => {
    assert.equal(findPayloadOffset(0, 0), 0);
    assert.equal(findPayloadOffset(0, 1), 31);
    assert.equal(findPayloadOffset(1, 0), 7);
    assert.equal(findPayloadOffset(3, 100), (100 * 31 + 21) % 256);
    assert.ok(findPayloadOffset(99, 2 ** 40) < 256);
  });

  it("reads the 16-hex-digit sequence number in front of a broadcast", () => {
    assert.equal(readHexSequence(Buffer.from("00000000000000ff rest")), 255);
    assert.equal(readHexSequence(Buffer.from("00000000000ABCDE")), 0xabcde);
    assert.equal(readHexSequence(Buffer.from("000000000000000g")), -1);
    assert.equal(readHexSequence(Buffer.from("0001")), -1);
  });
});
