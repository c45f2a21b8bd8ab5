/**
 * A real Redis for the cluster tests: Debian's `redis-server`, started by the test on a free
 * port of 127.0.0.1 with persistence off, stopped (or SIGKILLed) by its PID, restarted empty on
 * the same port. No mock.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import { PATIENCE_MS, waitUntil } from "./net-helpers.js";

/** Where Debian puts it; `REDIS_SERVER` overrides. */
export const REDIS_SERVER_PATH = process.env.REDIS_SERVER ?? "/usr/bin/redis-server";

/**
 * Why the cluster tests cannot run here, or undefined when they can. Pass it as `skip` to
 * `describe`/`test` so a machine without Redis says how to get it instead of failing.
 */
export const REDIS_MISSING: string | undefined = existsSync(REDIS_SERVER_PATH)
  ? undefined
  : `${REDIS_SERVER_PATH} not found: install it with \`apt-get install redis-server\` (as .ci/run does) or set REDIS_SERVER`;

/** A redis-server process of a test. */
export class TestRedis {
  #process: ChildProcess | undefined;
  #output = "";

  private constructor(readonly port: number) {}

  /** Starts a redis-server on a free port; resolves once it accepts connections. */
  static async start(): Promise<TestRedis> {
    const redis = new TestRedis(await freePort());
    await redis.#launch();
    return redis;
  }

  /** `redis://127.0.0.1:PORT`. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** The PID of the running server, if any. */
  get pid(): number | undefined {
    return this.#process?.pid;
  }

  /** Kills the server with SIGKILL (as a crash would) and waits for it to be gone. */
  async kill(): Promise<void> {
    await this.#signal("SIGKILL");
  }

  /** Stops the server (SIGTERM) and waits for it to exit. Idempotent. */
  async stop(): Promise<void> {
    await this.#signal("SIGTERM");
  }

  /** Starts a new, EMPTY server on the same port (the previous one must be stopped). */
  async restart(): Promise<void> {
    if (this.#process !== undefined) await this.kill();
    await this.#launch();
  }

  async #signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.#process;
    if (child === undefined) return;
    this.#process = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    await exited;
  }

  async #launch(): Promise<void> {
    const args = [
      "--port",
      String(this.port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
    ];
    const child = spawn(REDIS_SERVER_PATH, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.#process = child;
    this.#output = "";
    const collect = (chunk: Buffer) => {
      this.#output += chunk.toString();
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    let exited = false;
    child.once("exit", () => {
      exited = true;
    });
    await waitUntil(
      () => exited || this.#output.includes("Ready to accept connections"),
      PATIENCE_MS,
      `redis-server on port ${this.port} to start`,
    );
    if (exited) throw new Error(`redis-server exited at start:\n${this.#output}`);
  }
}

/** A TCP port free on 127.0.0.1 at the time of the call. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
