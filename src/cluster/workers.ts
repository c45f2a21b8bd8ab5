/**
 * The primary process of `serve --workers N`: it forks N workers (node:cluster) that share the
 * port and act as one server, and it
 *
 * - serves them the bus (worker-bus-broker.ts: ids, presence, relaying) and the shared
 *   dictionaries of the OpenResty style (shared-dict-pipe-server.ts);
 * - prints the banner once every worker listens (with `--port 0` it chose the port first, so
 *   they all share it);
 * - replaces a worker that dies (a log line, `moonsocket_worker_restarts_total`); its clients'
 *   connections drop, the other workers' clients notice nothing;
 * - answers a worker's request for the whole server's /metrics and /healthz by asking every
 *   worker (metrics-merge.ts);
 * - on SIGTERM or SIGINT asks every worker to shut down gracefully (stop accepting, run the
 *   shutdown hook, close clients with 1001) and exits 0 once they all have.
 *
 * The primary itself serves no client and runs no Lua. A worker whose primary disappears (even
 * SIGKILLed) sees its IPC channel close and shuts down too (worker-process.ts): no orphans.
 *
 * @module
 */

import cluster, { type Worker } from "node:cluster";
import net from "node:net";
import { availableParallelism } from "node:os";
import type { Logger } from "../observability/logger.js";
import { MetricsRegistry } from "../observability/metrics.js";
import { mergeWorkerMetrics } from "./metrics-merge.js";
import { MemorySharedDictStore } from "./shared-dict-memory.js";
import { type SharedDictChannel, SharedDictPipeServer } from "./shared-dict-pipe-server.js";
import { WorkerBusBroker, type WorkerPort } from "./worker-bus-broker.js";
import {
  isWorkerMessage,
  type PrimaryToWorker,
  type WorkerHealth,
  type WorkerToPrimary,
} from "./worker-messages.js";
import { WORKER_ENV } from "./worker-process.js";

/** How long a scrape waits for a busy worker before answering without it, in milliseconds. */
const SCRAPE_PATIENCE_MS = 2_000;
/** Pause before replacing a worker that died before it listened (a crash loop), in milliseconds. */
const RESPAWN_BACKOFF_MS = 1_000;

/**
 * Reads `--workers`: a whole number from 1, or `auto` (the cores this process may use).
 * @throws {RangeError} with a one-line message otherwise.
 */
export function parseWorkerCount(text: string): number {
  if (text === "auto") return availableParallelism();
  const count = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new RangeError(`--workers must be a whole number from 1, or auto; got '${text}'`);
  }
  return count;
}

/** Options of {@link superviseWorkers}. */
export interface SupervisorOptions {
  /** Worker processes to run, at least 2. */
  readonly count: number;
  /** The address the workers listen on; a port 0 is replaced by a free one chosen here. */
  readonly host: string;
  readonly port: number;
  /** Messages kept per topic (the bus's history). Default 0. */
  readonly historyLength?: number;
  /** Where the primary logs (its lines carry no worker field: the workers' do). */
  readonly logger: Logger;
  /** Called once every worker listens, with the banner lines of worker 1: print them. */
  readonly onListening: (banners: readonly string[]) => void;
  /** How long workers get to shut down after SIGTERM before they are killed. Default 30,000 ms. */
  readonly shutdownTimeoutMs?: number;
}

interface Slot {
  readonly worker: number;
  process: Worker | null;
  port: WorkerPort | null;
  shdict: SharedDictChannel | null;
  /** Reported that it listens. */
  listening: boolean;
}

interface Scrape {
  readonly from: WorkerPort;
  readonly seq: number;
  readonly waiting: Set<number>;
  readonly pages: { worker: number; text: string }[];
  readonly health: WorkerHealth[];
  readonly timer: NodeJS.Timeout;
}

/**
 * Runs the primary until the workers are shut down; resolves with the exit code: 0 after
 * SIGTERM/SIGINT, 1 when a worker failed to start (its error is on stderr).
 */
export async function superviseWorkers(options: SupervisorOptions): Promise<number> {
  const port = options.port === 0 ? await findFreePort(options.host) : options.port;
  return new Supervisor(options, port).run();
}

/**
 * Asks the OS for a free port. With node:cluster each worker's `listen(0)` would get a port of
 * its own, so the primary picks one for all of them (another program could take it in the
 * moment between; the workers then fail to listen and say so).
 */
function findFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, host, () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

class Supervisor {
  readonly #options: SupervisorOptions;
  readonly #port: number;
  readonly #logger: Logger;
  readonly #slots: Slot[];
  readonly #broker: WorkerBusBroker;
  readonly #shdict = new SharedDictPipeServer(new MemorySharedDictStore());
  readonly #metrics = new MetricsRegistry();
  readonly #restarts = this.#metrics.counter({
    name: "moonsocket_worker_restarts_total",
    help: "Worker processes that died and were replaced.",
  });
  readonly #scrapes = new Map<number, Scrape>();
  #scrapeSeq = 0;
  /** What worker 1 said it listens on, for the banner. */
  #banners: readonly string[] = [];
  #started = false;
  #stopping = false;
  #finish: (code: number) => void = () => {};
  #exitCode = 0;

  constructor(options: SupervisorOptions, port: number) {
    this.#options = options;
    this.#port = port;
    this.#logger = options.logger;
    this.#broker = new WorkerBusBroker({ historyLength: options.historyLength ?? 0 });
    this.#slots = Array.from({ length: options.count }, (_, i) => ({
      worker: i + 1,
      process: null,
      port: null,
      shdict: null,
      listening: false,
    }));
    this.#metrics.gauge({
      name: "moonsocket_workers",
      help: "Worker processes serving clients.",
      collect: () => this.#slots.filter((slot) => slot.listening).length,
    });
  }

  run(): Promise<number> {
    // Payload bytes cross as Buffers, not as JSON arrays of numbers.
    cluster.setupPrimary({ serialization: "advanced" });
    const done = new Promise<number>((resolve) => (this.#finish = resolve));
    process.on("SIGTERM", () => this.#stop("SIGTERM"));
    process.on("SIGINT", () => this.#stop("SIGINT"));
    for (const slot of this.#slots) this.#fork(slot);
    return done;
  }

  #fork(slot: Slot): void {
    const shdict = this.#shdict.attach();
    const child = cluster.fork({
      [WORKER_ENV.worker]: String(slot.worker),
      [WORKER_ENV.count]: String(this.#options.count),
      [WORKER_ENV.port]: String(this.#port),
      [WORKER_ENV.shdictRequest]: shdict.requestPath,
      [WORKER_ENV.shdictResponse]: shdict.responsePath,
    });
    const port: WorkerPort = {
      worker: slot.worker,
      send: (message: PrimaryToWorker) => {
        if (child.isConnected()) child.send(message);
      },
    };
    Object.assign(slot, { process: child, port, shdict, listening: false });
    this.#broker.attach(port);
    child.on("message", (message: unknown) => {
      if (isWorkerMessage(message)) this.#onMessage(slot, port, message as WorkerToPrimary);
    });
    child.on("exit", (code, signal) => this.#onExit(slot, child, code, signal));
    // A send to a worker whose channel is closing fails with EPIPE: it is exiting, and its exit
    // is handled above; the message had nobody to reach.
    child.on("error", (error: Error) =>
      this.#logger.debug("worker channel error", { worker: slot.worker, err: error }),
    );
  }

  #onMessage(slot: Slot, port: WorkerPort, message: WorkerToPrimary): void {
    if (this.#broker.handle(port, message)) return;
    switch (message.ms) {
      case "listening":
        slot.listening = true;
        if (slot.worker === 1 && !this.#started) this.#banners = message.banners;
        this.#checkStarted();
        return;
      case "scrape":
        this.#startScrape(port, message.seq);
        return;
      case "stats":
        this.#collected(slot, message.seq, message.metrics, message.health);
        return;
      default:
        return;
    }
  }

  #checkStarted(): void {
    if (this.#started || this.#stopping || !this.#slots.every((slot) => slot.listening)) return;
    this.#started = true;
    this.#options.onListening(this.#banners);
    this.#logger.info("workers started", { workers: this.#options.count, pid: process.pid });
  }

  #onExit(slot: Slot, child: Worker, code: number | null, signal: string | null): void {
    if (slot.process !== child) return;
    if (slot.port !== null) this.#broker.detach(slot.port);
    if (slot.shdict !== null) this.#shdict.detach(slot.shdict);
    const wasListening = slot.listening;
    Object.assign(slot, { process: null, port: null, shdict: null, listening: false });
    for (const scrape of this.#scrapes.values()) {
      if (scrape.waiting.delete(slot.worker)) this.#maybeAnswer(scrape);
    }
    if (this.#stopping) {
      this.#finishIfAllGone();
      return;
    }
    const how = signal !== null ? `signal ${signal}` : `exit code ${code}`;
    if (!this.#started && !wasListening) {
      // A worker that cannot start (a script error, a port in use) would fail again: give up.
      this.#logger.error("a worker failed to start; stopping", { worker: slot.worker, how });
      this.#exitCode = 1;
      this.#stop("a failed worker");
      return;
    }
    this.#restarts.inc();
    const delay = wasListening ? 0 : RESPAWN_BACKOFF_MS;
    this.#logger.warn("worker died; replacing it", {
      worker: slot.worker,
      pid: child.process.pid,
      how,
    });
    setTimeout(() => {
      if (!this.#stopping) this.#fork(slot);
    }, delay);
  }

  #stop(reason: string): void {
    if (this.#stopping) {
      if (reason === "SIGINT" || reason === "SIGTERM") {
        process.stderr.write(`moonsocket serve: ${reason} again, exiting now\n`);
        for (const slot of this.#slots) slot.process?.process.kill("SIGKILL");
        process.exit(1);
      }
      return;
    }
    this.#stopping = true;
    this.#logger.info("stopping the workers", { reason });
    for (const slot of this.#slots) slot.port?.send({ ms: "shutdown" });
    const timeout = this.#options.shutdownTimeoutMs ?? 30_000;
    setTimeout(() => {
      for (const slot of this.#slots) {
        if (slot.process === null) continue;
        this.#logger.warn("worker did not stop in time; killing it", { worker: slot.worker });
        slot.process.process.kill("SIGKILL");
      }
    }, timeout).unref();
    this.#finishIfAllGone();
  }

  #finishIfAllGone(): void {
    if (this.#slots.some((slot) => slot.process !== null)) return;
    this.#shdict.close();
    this.#finish(this.#exitCode);
  }

  // ---- /metrics and /healthz of the whole server ------------------------------------------

  #startScrape(from: WorkerPort, seq: number): void {
    const id = ++this.#scrapeSeq;
    const live = this.#slots.filter((slot) => slot.port !== null && slot.listening);
    const scrape: Scrape = {
      from,
      seq,
      waiting: new Set(live.map((slot) => slot.worker)),
      pages: [],
      health: [],
      timer: setTimeout(() => this.#answer(id), SCRAPE_PATIENCE_MS),
    };
    this.#scrapes.set(id, scrape);
    for (const slot of live) slot.port!.send({ ms: "collect", seq: id });
    this.#maybeAnswer(scrape);
  }

  #collected(slot: Slot, id: number, metrics: string, health: WorkerHealth): void {
    const scrape = this.#scrapes.get(id);
    if (scrape === undefined || !scrape.waiting.delete(slot.worker)) return;
    scrape.pages.push({ worker: slot.worker, text: metrics });
    scrape.health.push(health);
    this.#maybeAnswer(scrape);
  }

  #maybeAnswer(scrape: Scrape): void {
    if (scrape.waiting.size > 0) return;
    for (const [id, candidate] of this.#scrapes) if (candidate === scrape) this.#answer(id);
  }

  #answer(id: number): void {
    const scrape = this.#scrapes.get(id);
    if (scrape === undefined) return;
    this.#scrapes.delete(id);
    clearTimeout(scrape.timer);
    const pages = [...scrape.pages].sort((a, b) => a.worker - b.worker);
    scrape.from.send({
      ms: "scrape-reply",
      seq: scrape.seq,
      metrics: mergeWorkerMetrics(pages) + this.#metrics.render(),
      health: [...scrape.health].sort((a, b) => a.worker - b.worker),
    });
  }
}
