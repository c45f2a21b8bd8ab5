import { PassThrough } from "node:stream";
import WebSocket from "ws";
import { ScriptApp } from "../../src/lua/script-app.js";
import { createLogger } from "../../src/observability/logger.js";
import { MetricsRegistry } from "../../src/observability/metrics.js";
import type { ServerOptions } from "../../src/server/server-options.js";
import { PATIENCE_MS } from "./net-helpers.js";

/** A script served on a free port, with its log captured. */
export interface RunningScript {
  app: ScriptApp;
  url: string;
  log: () => string;
  metrics: MetricsRegistry;
  stop: () => Promise<void>;
}

/** Loads `scriptPath` with `moonsocket serve` semantics on 127.0.0.1, port 0. */
export async function startScript(
  scriptPath: string,
  options: {
    serverOptions?: ServerOptions;
    cpuBudgetMs?: number;
    memoryLimitBytes?: number;
    maxOutgoing?: number;
  } = {},
): Promise<RunningScript> {
  const stream = new PassThrough();
  let output = "";
  stream.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const logger = createLogger({ stream, level: "debug" });
  const metrics = new MetricsRegistry();
  const app = await ScriptApp.create({
    scriptPath,
    serverOptions: { port: 0, ...options.serverOptions },
    logger,
    metrics,
    ...(options.cpuBudgetMs !== undefined ? { cpuBudgetMs: options.cpuBudgetMs } : {}),
    ...(options.memoryLimitBytes !== undefined
      ? { memoryLimitBytes: options.memoryLimitBytes }
      : {}),
    ...(options.maxOutgoing !== undefined ? { maxOutgoing: options.maxOutgoing } : {}),
  });
  for (const server of app.servers) await server.listen();
  return {
    app,
    url: app.servers[0]!.url,
    log: () => output,
    metrics,
    stop: async () => {
      await Promise.all(app.servers.map((server) => server.close()));
      app.dispose();
    },
  };
}

/** A `ws` client that queues messages, for step-by-step conversations. */
export class TestClient {
  readonly ws: WebSocket;
  private readonly messages: Array<{ data: Buffer; binary: boolean }> = [];
  private readonly waiters: Array<(message: { data: Buffer; binary: boolean }) => void> = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(url: string, options: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, options);
    this.ws.on("message", (data: Buffer, binary: boolean) => {
      const message = { data, binary };
      const waiter = this.waiters.shift();
      if (waiter) waiter(message);
      else this.messages.push(message);
    });
    this.closed = new Promise((resolve) =>
      this.ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    this.ws.on("error", () => {});
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState === WebSocket.OPEN) resolve();
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
  }

  /** Next message (text decoded), failing after `timeoutMs`. */
  async next(timeoutMs = PATIENCE_MS): Promise<string> {
    return (await this.nextRaw(timeoutMs)).data.toString();
  }

  nextRaw(timeoutMs = PATIENCE_MS): Promise<{ data: Buffer; binary: boolean }> {
    const queued = this.messages.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const waiter = (message: { data: Buffer; binary: boolean }) => {
        clearTimeout(timer);
        resolve(message);
      };
      const timer = setTimeout(() => {
        // Withdraw, so a message arriving later is not swallowed by this expired wait.
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  send(data: string | Buffer, binary = typeof data !== "string"): void {
    this.ws.send(data, { binary });
  }

  close(code = 1000): void {
    this.ws.close(code);
  }
}

/** Opens a client and waits until it is connected. */
export async function openClient(
  url: string,
  options: WebSocket.ClientOptions = {},
): Promise<TestClient> {
  const client = new TestClient(url, options);
  await client.opened();
  return client;
}
