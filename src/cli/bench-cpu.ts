/**
 * CPU accounting for `moonsocket bench`, read the way wsload reads it: this process's own CPU
 * time, the CPU time of a server process (`--pid`, all its threads, from `/proc/PID/stat`) and
 * the busy time of the whole machine (`/proc/stat`), so that a run can say who was the
 * bottleneck and how much other work disturbed it. Linux only; elsewhere the `/proc` figures
 * are `null`.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import os from "node:os";

/** Clock ticks per second of the `/proc` counters (USER_HZ): 100 on every Linux platform Node supports. */
const CLOCK_TICKS_PER_SECOND = 100;

/** One reading of the counters; times in seconds since some fixed point. */
export interface CpuSample {
  /** Wall clock, from `performance.now()`, in seconds. */
  readonly wall: number;
  /** CPU time (user + system) of this process, all threads. */
  readonly self: number;
  /** CPU time of the `--pid` process, or null (no pid, not Linux, process gone). */
  readonly server: number | null;
  /** Busy time of all cores together, or null where `/proc/stat` is missing. */
  readonly machine: number | null;
}

/** CPU use over an interval, in percent of one core (so 200 on two busy cores). */
export interface CpuUsage {
  /** This process. */
  readonly bench: number;
  /** The `--pid` process, or null. */
  readonly server: number | null;
  /** Everything else on the machine (never below 0), or null. */
  readonly others: number | null;
  /** Online cores. */
  readonly cores: number;
}

/** Reads the counters now. `pid` is the server process to follow, if any. */
export function sampleCpu(pid?: number): CpuSample {
  const usage = process.cpuUsage();
  return {
    wall: performance.now() / 1000,
    self: (usage.user + usage.system) / 1e6,
    server: pid === undefined ? null : readProcessCpu(pid),
    machine: readMachineBusy(),
  };
}

/** Percentages of one core between two samples. */
export function diffCpu(before: CpuSample, after: CpuSample): CpuUsage {
  const seconds = Math.max(after.wall - before.wall, 1e-9);
  const bench = ((after.self - before.self) / seconds) * 100;
  const server =
    before.server !== null && after.server !== null
      ? ((after.server - before.server) / seconds) * 100
      : null;
  const others =
    before.machine !== null && after.machine !== null
      ? Math.max(0, ((after.machine - before.machine) / seconds) * 100 - bench - (server ?? 0))
      : null;
  return { bench, server, others, cores: os.cpus().length };
}

/** CPU seconds (utime + stime, all threads) of process `pid`, or null if it cannot be read. */
export function readProcessCpu(pid: number): number | null {
  try {
    return parseProcessStat(readFileSync(`/proc/${pid}/stat`, "latin1"));
  } catch {
    return null;
  }
}

/**
 * CPU seconds from the text of `/proc/PID/stat`: fields 14 and 15 (utime, stime), counted
 * after the command name, which is in parentheses and may itself contain spaces and ')'.
 */
export function parseProcessStat(text: string): number | null {
  const close = text.lastIndexOf(")");
  if (close < 0) return null;
  // After ") ": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15)
  const fields = text
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return (utime + stime) / CLOCK_TICKS_PER_SECOND;
}

/** Busy seconds of all cores together from `/proc/stat`, or null. */
export function readMachineBusy(): number | null {
  try {
    return parseMachineStat(readFileSync("/proc/stat", "latin1"));
  } catch {
    return null;
  }
}

/**
 * Busy seconds from the text of `/proc/stat`: user + nice + system + irq + softirq + steal of
 * the aggregate `cpu` line (idle and iowait left out), as wsload counts them.
 */
export function parseMachineStat(text: string): number | null {
  const match = /^cpu\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(text);
  if (match === null) return null;
  const [user, nice, system, , , irq, softirq, steal] = match.slice(1, 9).map(Number) as number[];
  return (user! + nice! + system! + irq! + softirq! + steal!) / CLOCK_TICKS_PER_SECOND;
}
