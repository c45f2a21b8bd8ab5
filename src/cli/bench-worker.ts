/**
 * A worker thread of `moonsocket bench --threads N`: runs its share of the connections with the
 * same engine as a single-threaded run, forwards its progress, and posts its result and latency
 * histogram when done. Started by `bench-threads.ts` only.
 *
 * @module
 */

import { parentPort, workerData } from "node:worker_threads";
import { runBenchmark } from "./bench-engine.js";
import { serializeError, type WorkerMessage, type WorkerOptions } from "./bench-threads.js";

const port = parentPort;
if (port === null) throw new Error("bench-worker.js runs as a worker thread of moonsocket bench");
const options = workerData as WorkerOptions;
const handle = runBenchmark({
  ...options,
  url: new URL(options.url),
  onProgress: (progress) =>
    port.postMessage({ type: "progress", progress } satisfies WorkerMessage),
});
port.on("message", (message: unknown) => {
  if (message === "stop") handle.stop();
});
const result = await handle.done;
port.postMessage({
  type: "done",
  result: { ...result, connectError: null },
  connectError: serializeError(result.connectError),
  histogram: handle.histogram.snapshot(),
} satisfies WorkerMessage);
port.close();
