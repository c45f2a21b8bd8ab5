/**
 * What `moonsocket serve --workers N` changes in serve: the process started by the user becomes
 * the primary (cluster/workers.ts) and serves nothing itself; each worker it forks runs serve as
 * usual, with the pieces below in place of the single-process ones.
 *
 * @module
 */

import { PipeSharedDictStore } from "../cluster/shared-dict-pipe-client.js";
import { WorkerBus } from "../cluster/worker-bus.js";
import { type WorkerIdentity, WorkerProcess } from "../cluster/worker-process.js";
import { superviseWorkers } from "../cluster/workers.js";
import type { ScriptAppOptions } from "../lua/script-app.js";
import type { Logger } from "../observability/logger.js";
import type { WebSocketServer } from "../server/server.js";
import type { ServerOptions } from "../server/server-options.js";

/** Runs the primary of `--workers count`; resolves with the exit code. */
export function runWorkersPrimary(
  count: number,
  serverOptions: ServerOptions,
  logger: Logger,
): Promise<number> {
  return superviseWorkers({
    count,
    host: serverOptions.host ?? "127.0.0.1",
    port: serverOptions.port ?? 8085,
    historyLength: serverOptions.historyLength ?? 0,
    logger,
    onListening: (banners) => {
      for (const line of banners) process.stdout.write(`${line} with ${count} workers\n`);
    },
  });
}

/** A worker's serve: its logger, bus, shared dictionaries, banner and stop requests. */
export class ServeWorker {
  readonly #process: WorkerProcess;
  readonly #servers: () => readonly WebSocketServer[];
  #stopping = false;

  /**
   * @param identity Who this worker is (cluster/worker-process.ts `currentWorker()`).
   * @param servers The serving app's servers, as they are now (they change on a restart).
   */
  constructor(identity: WorkerIdentity, servers: () => readonly WebSocketServer[]) {
    this.#process = new WorkerProcess(identity);
    this.#servers = servers;
    this.#process.reportStats(() => {
      const all = this.#servers();
      return {
        metrics: all[0]?.metricsRegistry.render() ?? "",
        connections: all.reduce((sum, server) => sum + server.clientCount, 0),
        stopping: this.#stopping,
      };
    });
  }

  /** The worker's place, as ngx.worker numbers it. */
  get identity(): WorkerIdentity {
    return this.#process.identity;
  }

  /**
   * Adapts serve's options: log lines carry `worker=N`, the port is the one every worker
   * shares, the bus is the workers', /metrics and /healthz are the whole server's.
   */
  adapt(serverOptions: ServerOptions, logger: Logger): Logger {
    const { worker, port } = this.identity;
    const workerLogger = logger.child({ worker });
    serverOptions.logger = workerLogger;
    serverOptions.port = port;
    serverOptions.bus = new WorkerBus(worker, this.#process.channel);
    serverOptions.wholeServer = {
      metrics: async () => (await this.#process.scrape()).metrics,
      health: async () => {
        const { health } = await this.#process.scrape();
        return {
          connections: health.reduce((sum, w) => sum + w.connections, 0),
          workers: health,
        };
      },
    };
    return workerLogger;
  }

  /** What the Lua side needs: ngx.worker's numbers and the primary's shared dictionaries. */
  appOptions(): Pick<ScriptAppOptions, "worker" | "sharedDicts"> {
    const { worker, count, sharedDicts } = this.identity;
    return {
      worker: { id: worker - 1, count },
      sharedDicts: new PipeSharedDictStore(sharedDicts),
    };
  }

  /** Tells the primary this worker listens (the primary prints the banner). */
  announce(banners: readonly string[]): void {
    this.#process.announce(banners);
  }

  /** Calls `stop` once when the worker must shut down (see WorkerProcess.onStop). */
  onStop(stop: () => void): void {
    this.#process.onStop(() => {
      this.#stopping = true;
      stop();
    });
  }

  /** Lets the process end once the server has shut down. */
  finish(): void {
    this.#process.finish();
  }
}
