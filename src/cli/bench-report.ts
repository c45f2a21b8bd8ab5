/**
 * What `moonsocket bench` prints: the progress line, the summary table, the JSON object, and
 * the notes that say when a figure should not be trusted (the generator was the bottleneck,
 * the machine was busy with other work).
 *
 * @module
 */

import os from "node:os";
import type { BenchProgress, BenchResult } from "./bench-engine.js";

/** Bench CPU (percent of one core) from which the generator, not the server, sets the pace. */
export const BENCH_LIMITED_PERCENT = 90;
/** CPU of other processes (percent of one core) from which a run counts as disturbed. */
export const BUSY_MACHINE_PERCENT = 50;

/**
 * The progress line (without line ending), e.g.
 * `[  4s] measuring  open 100/100  52,310 msg/s  errors 0  bench cpu 71%`; in broadcast mode
 * the rate is in `deliveries/s`.
 */
export function formatProgress(
  progress: BenchProgress,
  mode: "echo" | "broadcast" = "echo",
): string {
  const seconds = Math.round(progress.elapsedMs / 1000);
  return (
    `[${String(seconds).padStart(3)}s] ${progress.phase.padEnd(10)} open ${progress.open}/${progress.target}` +
    `  ${formatCount(progress.messagesPerSecond)} ${mode === "broadcast" ? "deliveries/s" : "msg/s"}  errors ${progress.errors}` +
    `  bench cpu ${Math.round(progress.benchCpu)}%`
  );
}

/** True when the generator used so much CPU (per thread) that the figures are its limit. */
export function isBenchLimited(result: BenchResult): boolean {
  // The cores this process may run on (taskset/cgroups), not the machine's.
  const usable = Math.min(result.threads, os.availableParallelism());
  return result.cpu !== null && result.cpu.bench >= BENCH_LIMITED_PERCENT * usable;
}

/** Warnings about the run, one sentence each (empty when there is nothing to say). */
export function describeCaveats(result: BenchResult): string[] {
  const notes: string[] = [];
  const cpu = result.cpu;
  if (cpu !== null && isBenchLimited(result)) {
    notes.push(
      `the bench itself used ${Math.round(cpu.bench)}% of ${result.threads === 1 ? "a core" : `one core (${result.threads} threads)`}: ` +
        "it was probably the bottleneck, so the server may do more than this " +
        "(run the server and the bench on different cores, add --threads, or use wsload)",
    );
  }
  if (cpu !== null && cpu.others !== null && cpu.others >= BUSY_MACHINE_PERCENT) {
    // When the CPU is shared, the bench's own cost per message holds the rate down as much as
    // the server's does if the two are alike.
    const alike = cpu.server !== null && cpu.server > 0 && cpu.bench >= 0.8 * cpu.server;
    const unit = result.mode === "broadcast" ? "deliveries" : "messages";
    notes.push(
      `other processes used ${Math.round(cpu.others)}% of a core during the run: the figures are disturbed` +
        (result.messagesPerServerCpuSecond === null
          ? ` (give --pid SERVER_PID to get ${unit} per second of server CPU, which suffers less)`
          : alike
            ? "; the bench needed about as much CPU as the server, so its share of the CPU held the rate " +
              `down too: compare ${unit} per server CPU-second, not ${unit}/s`
            : `; compare ${unit} per server CPU-second`),
    );
  }
  if (result.broadcast !== null && result.broadcast.incomplete > 0) {
    notes.push(`${result.broadcast.incomplete} broadcasts did not reach every receiver within 5 s`);
  }
  return notes;
}

/** The summary table for people, ending with a newline. */
export function formatSummary(result: BenchResult): string {
  const rows: [string, string][] = [];
  const kind = result.binary ? "binary" : "text";
  const title =
    `moonsocket bench ${result.mode} ${result.url}\n` +
    `${result.connections} ${result.mode === "broadcast" ? "receivers + 1 sender" : "connections"}` +
    `${result.threads > 1 ? ` on ${result.threads} threads` : ""}, ` +
    (result.mode === "broadcast" && result.broadcast !== null && result.broadcast.intervalMs > 0
      ? `one message every ${result.broadcast.intervalMs} ms`
      : `${result.mode === "broadcast" ? "outstanding" : "pipeline"} ${result.pipeline}`) +
    `, ${result.size} B ${kind}, ${formatSeconds(result.durationMs)} measured after ${formatSeconds(result.warmupMs)} warm-up` +
    // Stopped early (Ctrl-C) or the clock started late: say what the rates are based on.
    (Math.abs(result.measuredMs - result.durationMs) > result.durationMs * 0.05
      ? ` (measured ${(result.measuredMs / 1000).toFixed(1)}s)`
      : "");
  const rate = result.mode === "broadcast" ? "deliveries/s" : "messages/s";
  rows.push([rate, formatCount(result.messagesPerSecond)]);
  rows.push(["MB/s (payload, one way)", result.megabytesPerSecond.toFixed(2)]);
  const latency = result.mode === "broadcast" ? "fan-out latency" : "echo latency";
  const l = result.latencyUs;
  rows.push([
    latency,
    `p50 ${formatMicros(l.p50)}   p90 ${formatMicros(l.p90)}   p99 ${formatMicros(l.p99)}   max ${formatMicros(l.max)}`,
  ]);
  rows.push(["latency samples", formatCount(l.count)]);
  if (result.broadcast !== null) {
    rows.push([
      "broadcasts",
      `${formatCount(result.broadcast.sent)} sent, ${result.broadcast.incomplete} incomplete, ` +
        `${formatCount(result.broadcast.echoesToSender)} copies to the sender`,
    ]);
  }
  rows.push([
    "connections",
    `${result.opened} opened, ${result.failed} failed, ${result.closed} closed by the server`,
  ]);
  rows.push([
    "errors",
    `${result.errors} wrong ${result.mode === "broadcast" ? "deliveries" : "messages"}, ${result.protocolErrors} protocol errors`,
  ]);
  if (result.stopReason !== null) rows.push(["stopped early", result.stopReason]);
  const cpu = result.cpu;
  if (cpu !== null) {
    const parts = [`bench ${Math.round(cpu.bench)}%`];
    if (cpu.server !== null) parts.push(`server ${Math.round(cpu.server)}%`);
    if (cpu.others !== null) parts.push(`others ${Math.round(cpu.others)}%`);
    rows.push(["cpu (% of one core)", `${parts.join("  ")}  (${cpu.cores} cores)`]);
  }
  if (result.messagesPerServerCpuSecond !== null) {
    rows.push([
      `${rate.replace("/s", "")} per server CPU-s`,
      formatCount(result.messagesPerServerCpuSecond),
    ]);
  }
  const perBenchCpu = computeMessagesPerBenchCpuSecond(result);
  if (perBenchCpu !== null)
    rows.push([`${rate.replace("/s", "")} per bench CPU-s`, formatCount(perBenchCpu)]);
  if (result.firstError !== null) rows.push(["first problem", result.firstError]);

  const width = Math.max(...rows.map(([name]) => name.length));
  const lines = [title, ""];
  for (const [name, value] of rows) lines.push(`  ${name.padEnd(width)}  ${value}`);
  const caveats = describeCaveats(result);
  if (caveats.length > 0) lines.push("", ...caveats.map((note) => `note: ${note}`));
  return `${lines.join("\n")}\n`;
}

/** The result as one JSON object (a line, ending with a newline) for scripts. */
export function formatJson(result: BenchResult, exitCode: number): string {
  const { connectError, ...rest } = result;
  return `${JSON.stringify({
    ...rest,
    messagesPerSecond: round(result.messagesPerSecond, 1),
    megabytesPerSecond: round(result.megabytesPerSecond, 3),
    measuredMs: round(result.measuredMs, 1),
    cpu:
      result.cpu === null
        ? null
        : {
            benchPercent: round(result.cpu.bench, 1),
            serverPercent: result.cpu.server === null ? null : round(result.cpu.server, 1),
            othersPercent: result.cpu.others === null ? null : round(result.cpu.others, 1),
            cores: result.cpu.cores,
          },
    messagesPerServerCpuSecond:
      result.messagesPerServerCpuSecond === null
        ? null
        : Math.round(result.messagesPerServerCpuSecond),
    messagesPerBenchCpuSecond: roundOrNull(computeMessagesPerBenchCpuSecond(result)),
    connectError: connectError === null ? null : connectError.message,
    benchLimited: isBenchLimited(result),
    caveats: describeCaveats(result),
    ok: exitCode === 0,
  })}\n`;
}

/**
 * Messages (or deliveries) per second of the bench's own CPU: what one core of the bench can
 * handle, to compare with the server's figure. Null when nothing was measured.
 */
export function computeMessagesPerBenchCpuSecond(result: BenchResult): number | null {
  const bench = result.cpu?.bench ?? 0;
  return bench > 0 && result.messages > 0 ? result.messagesPerSecond / (bench / 100) : null;
}

/** 1234567.8 → "1,234,568". */
export function formatCount(value: number): string {
  // By hand: toLocaleString loads ICU data, which costs a tenth of a second on first use.
  const digits = String(Math.abs(Math.round(value)));
  const grouped = digits.replace(/\B(?=(\d{3})+$)/g, ",");
  return value <= -0.5 ? `-${grouped}` : grouped;
}

/** Microseconds for people: "850 µs", "12.4 ms", "1.25 s". */
export function formatMicros(us: number): string {
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(1)}s`;
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function roundOrNull(value: number | null): number | null {
  return value === null ? null : Math.round(value);
}
