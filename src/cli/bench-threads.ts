/**
 * `moonsocket bench --threads N`: the connections split over N worker threads, each running
 * the engine of `bench-engine.ts` on its own event loop, so that the load generator can use
 * more than one core. The results are added up and the latency histograms merged; CPU figures
 * come from the first thread, which samples the whole process (all threads) and the server.
 * Echo mode only: a broadcast has one sender and one ledger of outstanding messages.
 *
 * @module
 */

import { Worker } from "node:worker_threads";
import { HandshakeError } from "../protocol/errors.js";
import type { BenchHandle, BenchOptions, BenchProgress, BenchResult } from "./bench-engine.js";
import { summarizeLatency } from "./bench-engine.js";
import { type HistogramSnapshot, LatencyHistogram } from "./bench-histogram.js";

/** What a worker is given: the options without the URL object and the callback. */
export type WorkerOptions = Omit<BenchOptions, "url" | "onProgress"> & { readonly url: string };

/** An error as plain data, to cross the thread boundary with its `code` and `status`. */
export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly status?: number;
  readonly body?: string;
}

/** Messages from a worker to the main thread. */
export type WorkerMessage =
  | { readonly type: "progress"; readonly progress: BenchProgress }
  | {
      readonly type: "done";
      readonly result: BenchResult;
      readonly connectError: SerializedError | null;
      readonly histogram: HistogramSnapshot;
    };

/** An error as plain data for `postMessage`, keeping `code` (errno), `status` and `body` (handshake). */
export function serializeError(error: Error | null): SerializedError | null {
  if (error === null) return null;
  const { code } = error as NodeJS.ErrnoException;
  return {
    name: error.name,
    message: error.message,
    ...(code === undefined ? {} : { code }),
    ...(error instanceof HandshakeError ? { status: error.status, body: error.body } : {}),
  };
}

/** The error again, from {@link serializeError}: a `HandshakeError`, or an `Error` with its `code`. */
export function deserializeError(error: SerializedError | null): Error | null {
  if (error === null) return null;
  if (error.name === "HandshakeError")
    return new HandshakeError(error.status ?? 0, error.message, {}, error.body ?? "");
  return Object.assign(
    new Error(error.message),
    error.code === undefined ? {} : { code: error.code },
  );
}

/** Runs the benchmark on `threads` worker threads (echo mode). */
export function runThreaded(options: BenchOptions, threads: number): BenchHandle {
  const count = Math.min(threads, options.connections);
  const workers: Worker[] = [];
  const latest: Array<BenchProgress | null> = [];
  const histogram = new LatencyHistogram();
  const parts: Array<{ result: BenchResult; connectError: Error | null } | undefined> = [];
  let finished = 0;
  let resolveDone!: (result: BenchResult) => void;
  let rejectDone!: (error: Error) => void;
  const done = new Promise<BenchResult>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });

  for (let k = 0; k < count; k++) {
    const share =
      Math.floor(options.connections / count) + (k < options.connections % count ? 1 : 0);
    const { url, onProgress: _onProgress, pid, ...rest } = options;
    const workerOptions: WorkerOptions = {
      ...rest,
      url: url.href,
      connections: share,
      // Only the first thread samples the server, and its CPU figures stand for the process.
      ...(k === 0 && pid !== undefined ? { pid } : {}),
    };
    const worker = new Worker(new URL("./bench-worker.js", import.meta.url), {
      workerData: workerOptions,
    });
    workers.push(worker);
    latest.push(null);
    worker.on("message", (message: WorkerMessage) => {
      if (message.type === "progress") {
        latest[k] = message.progress;
        if (k === 0)
          options.onProgress?.(sumProgress(latest, message.progress, options.connections));
        return;
      }
      histogram.mergeSnapshot(message.histogram);
      parts[k] = { result: message.result, connectError: deserializeError(message.connectError) };
      void worker.terminate();
      if (++finished === count)
        resolveDone(
          mergeResults(
            parts.map((part) => part!),
            histogram,
            count,
          ),
        );
    });
    worker.on("error", (error) => {
      for (const other of workers) void other.terminate();
      rejectDone(error);
    });
  }
  return {
    done,
    stop: () => {
      for (const worker of workers) worker.postMessage("stop");
    },
    histogram,
  };
}

/** The progress of all threads: sums, with the first thread's clock, phase and (process) CPU. */
function sumProgress(
  latest: ReadonlyArray<BenchProgress | null>,
  first: BenchProgress,
  target: number,
): BenchProgress {
  let open = 0;
  let rate = 0;
  let errors = 0;
  for (const p of latest) {
    if (p === null) continue;
    open += p.open;
    rate += p.messagesPerSecond;
    errors += p.errors;
  }
  return { ...first, open, target, messagesPerSecond: rate, errors };
}

/** Adds up the results of the threads; percentiles from the merged histogram. */
export function mergeResults(
  parts: ReadonlyArray<{ result: BenchResult; connectError: Error | null }>,
  histogram: LatencyHistogram,
  threads: number,
): BenchResult {
  const results = parts.map((part) => part.result);
  const first = results[0]!;
  const sum = (pick: (r: BenchResult) => number) =>
    results.reduce((total, r) => total + pick(r), 0);
  const messagesPerSecond = sum((r) => r.messagesPerSecond);
  const server = first.cpu?.server ?? null;
  return {
    ...first,
    threads,
    connections: sum((r) => r.connections),
    measuredMs: sum((r) => r.measuredMs) / results.length,
    messages: sum((r) => r.messages),
    bytes: sum((r) => r.bytes),
    messagesPerSecond,
    megabytesPerSecond: sum((r) => r.megabytesPerSecond),
    latencyUs: summarizeLatency(histogram),
    opened: sum((r) => r.opened),
    failed: sum((r) => r.failed),
    closed: sum((r) => r.closed),
    errors: sum((r) => r.errors),
    protocolErrors: sum((r) => r.protocolErrors),
    messagesPerServerCpuSecond:
      server !== null && server > 0 ? messagesPerSecond / (server / 100) : null,
    firstError: results.find((r) => r.firstError !== null)?.firstError ?? null,
    connectError: parts.find((part) => part.connectError !== null)?.connectError ?? null,
    // The run stopped early only if every thread did (each one watches its own connections).
    stopReason: results.every((r) => r.stopReason !== null) ? first.stopReason : null,
  };
}
