/**
 * A worker process's side of `--workers N` (the primary's is workers.ts): who it is, telling the
 * primary it listens, answering the primary's requests for its metrics and health, asking for the
 * whole server's, and knowing when to stop gracefully: the primary asks (after SIGTERM/SIGINT) or
 * a signal arrives. A worker whose primary vanished (even SIGKILLed) never serves on as an
 * orphan: node:cluster exits it as soon as the IPC channel closes (its connections drop).
 *
 * @module
 */

import cluster from "node:cluster";
import type { SharedDictChannel } from "./shared-dict-pipe-server.js";
import {
  type PrimaryChannel,
  type PrimaryToWorker,
  processChannel,
  type WorkerHealth,
} from "./worker-messages.js";

/** The environment variables the primary hands its workers. */
export const WORKER_ENV = {
  worker: "MOONSOCKET_WORKER",
  count: "MOONSOCKET_WORKERS",
  port: "MOONSOCKET_WORKER_PORT",
  shdictRequest: "MOONSOCKET_SHDICT_REQUEST",
  shdictResponse: "MOONSOCKET_SHDICT_RESPONSE",
} as const;

/** Who this worker is. */
export interface WorkerIdentity {
  /** Its number, 1..count (as in log lines: `worker=1`). */
  readonly worker: number;
  /** How many workers the server has. */
  readonly count: number;
  /** The port every worker listens on (chosen by the primary when `--port 0`). */
  readonly port: number;
  /** Its pipes to the shared dictionaries. */
  readonly sharedDicts: SharedDictChannel;
}

/** This process's identity when it is a worker of `--workers N`, else null. */
export function currentWorker(): WorkerIdentity | null {
  if (!cluster.isWorker) return null;
  const env = process.env;
  const worker = Number(env[WORKER_ENV.worker]);
  if (!Number.isInteger(worker) || worker < 1) return null; // forked by someone else's cluster
  return {
    worker,
    count: Number(env[WORKER_ENV.count]),
    port: Number(env[WORKER_ENV.port]),
    sharedDicts: {
      requestPath: env[WORKER_ENV.shdictRequest] ?? "",
      responsePath: env[WORKER_ENV.shdictResponse] ?? "",
    },
  };
}

/** What the worker reports when the primary gathers a scrape. */
export interface WorkerStats {
  /** Its registry, rendered (Prometheus text). */
  readonly metrics: string;
  readonly connections: number;
  readonly stopping: boolean;
}

/** The whole server's figures, gathered by the primary. */
export interface ServerStats {
  /** Every worker's metrics merged (metrics-merge.ts), plus the primary's. */
  readonly metrics: string;
  /** Each worker's health, by worker number. */
  readonly health: readonly WorkerHealth[];
}

/** The supervisor's side of a worker process. */
export class WorkerProcess {
  readonly identity: WorkerIdentity;
  readonly channel: PrimaryChannel;
  readonly #scrapes = new Map<
    number,
    { resolve(stats: ServerStats): void; reject(error: Error): void }
  >();
  #scrapeSeq = 0;
  #stats: () => WorkerStats = () => ({ metrics: "", connections: 0, stopping: false });
  #stopRequested: ((why: string) => void) | null = null;
  #stopReason: string | null = null;

  constructor(identity: WorkerIdentity, channel: PrimaryChannel = processChannel()) {
    this.identity = identity;
    this.channel = channel;
    channel.onMessage((message) => this.#onMessage(message));
    channel.onDisconnect(() => this.#requestStop("the primary process is gone"));
    process.on("SIGTERM", () => this.#requestStop("SIGTERM"));
    process.on("SIGINT", () => this.#requestStop("SIGINT"));
  }

  /** Where the worker's figures come from when the primary asks. */
  reportStats(stats: () => WorkerStats): void {
    this.#stats = stats;
  }

  /** Tells the primary this worker listens; `banners` are the lines the primary may print. */
  announce(banners: readonly string[]): void {
    this.channel.send({ ms: "listening", banners });
  }

  /**
   * Calls `stop` once, with the reason, when the worker must shut down (the primary asked, a
   * signal, or the primary is gone). A request that came before is passed on at once.
   */
  onStop(stop: (why: string) => void): void {
    this.#stopRequested = stop;
    if (this.#stopReason !== null) stop(this.#stopReason);
  }

  /**
   * Asks the primary for the whole server's metrics and health.
   * @throws {Error} (rejects) once the primary is gone.
   */
  scrape(): Promise<ServerStats> {
    if (!process.connected) return Promise.reject(new Error("the primary process is gone"));
    const seq = ++this.#scrapeSeq;
    const reply = new Promise<ServerStats>((resolve, reject) =>
      this.#scrapes.set(seq, { resolve, reject }),
    );
    this.channel.send({ ms: "scrape", seq });
    return reply;
  }

  /** Lets the process end: closes the IPC channel (call once the server has shut down). */
  finish(): void {
    if (process.connected) process.disconnect();
  }

  #requestStop(why: string): void {
    if (!process.connected) {
      for (const { reject } of this.#scrapes.values()) {
        reject(new Error("the primary process is gone"));
      }
      this.#scrapes.clear();
    }
    if (this.#stopReason !== null) return;
    this.#stopReason = why;
    this.#stopRequested?.(why);
  }

  #onMessage(message: PrimaryToWorker): void {
    switch (message.ms) {
      case "shutdown":
        this.#requestStop("asked by the primary");
        return;
      case "collect": {
        const stats = this.#stats();
        this.channel.send({
          ms: "stats",
          seq: message.seq,
          metrics: stats.metrics,
          health: {
            worker: this.identity.worker,
            pid: process.pid,
            connections: stats.connections,
            status: stats.stopping ? "stopping" : "ok",
          },
        });
        return;
      }
      case "scrape-reply": {
        const pending = this.#scrapes.get(message.seq);
        this.#scrapes.delete(message.seq);
        pending?.resolve({ metrics: message.metrics, health: message.health });
        return;
      }
      default:
        return; // the bus's messages (worker-bus.ts)
    }
  }
}
