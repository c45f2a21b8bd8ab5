/**
 * ngx.shared.DICT across worker PROCESSES: the test process is the primary (it owns the store and
 * serves it over FIFOs), real child processes are the workers, calling it synchronously.
 */
import assert from "node:assert/strict";
import { type ChildProcess, fork } from "node:child_process";
import { afterEach, beforeEach, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { MemorySharedDictStore } from "../../src/cluster/shared-dict-memory.js";
import {
  type SharedDictChannel,
  SharedDictPipeServer,
} from "../../src/cluster/shared-dict-pipe-server.js";
import { PATIENCE_MS, Resources, withTimeout } from "../helpers/net-helpers.js";

const WORKER = fileURLToPath(new URL("./cluster-shdict-worker.js", import.meta.url));

/** A worker process attached to the primary's store. */
class Worker {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  readonly ready: Promise<void>;
  #seq = 0;

  constructor(
    readonly channel: SharedDictChannel,
    private readonly server: SharedDictPipeServer,
  ) {
    this.#child = fork(WORKER, {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // Keeps Infinity (capacity of an unbounded dictionary) intact on the way back to the test.
      serialization: "advanced",
      env: {
        ...process.env,
        SHDICT_REQUEST: channel.requestPath,
        SHDICT_RESPONSE: channel.responsePath,
      },
    });
    let ready!: () => void;
    this.ready = withTimeout(
      new Promise<void>((r) => (ready = r)),
      PATIENCE_MS,
      "a worker to start",
    );
    this.#child.on(
      "message",
      (reply: { seq?: number; result?: unknown; error?: string; ready?: true }) => {
        if (reply.ready) return ready();
        const pending = this.#pending.get(reply.seq!);
        this.#pending.delete(reply.seq!);
        if (reply.error !== undefined) pending?.reject(new Error(reply.error));
        else pending?.resolve(reply.result);
      },
    );
    // As the primary of --workers does: a worker that exits is detached.
    this.#child.on("exit", () => this.server.detach(channel));
  }

  request<T>(op: string, fields: Record<string, unknown> = {}): Promise<T> {
    const seq = ++this.#seq;
    const reply = new Promise<T>((resolve, reject) => {
      this.#pending.set(seq, { resolve: resolve as (v: unknown) => void, reject });
    });
    this.#child.send({ seq, op, dict: "d", ...fields });
    return withTimeout(reply, PATIENCE_MS, `a worker to answer ${op}`);
  }

  call<T = unknown[]>(name: string, ...args: unknown[]): Promise<T> {
    return this.request<T>("call", { name, args });
  }

  async kill(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once("exit", resolve));
    this.#child.kill("SIGKILL");
    await exited;
  }
}

describe("shared dictionaries across worker processes", () => {
  const resources = new Resources();
  let clock = 1_000;
  let store: MemorySharedDictStore;
  let server: SharedDictPipeServer;

  beforeEach(() => {
    clock = 1_000;
    store = new MemorySharedDictStore({ capacities: { small: 1_000 }, now: () => clock });
    server = resources.add(new SharedDictPipeServer(store), (s) => s.close());
  });
  afterEach(() => resources.closeAll());

  async function startWorkers(count: number): Promise<Worker[]> {
    const workers = Array.from({ length: count }, () =>
      resources.add(new Worker(server.attach(), server), (w) => w.kill()),
    );
    await Promise.all(workers.map((w) => w.ready));
    return workers;
  }

  test("three workers incrementing one key at once: the count is exact", async () => {
    const workers = await startWorkers(3);
    await Promise.all(workers.map((w) => w.request("incr-loop", { count: 2_000 })));
    assert.deepEqual(store.call("d", "get", ["n"]), [6_000]);
    assert.deepEqual(await workers[0]!.call("get", "n"), [6_000]);
  });

  test("add races: exactly one worker wins, the others see exists", async () => {
    const workers = await startWorkers(3);
    const results = await Promise.all(workers.map((w, i) => w.call("add", "owner", `w${i}`, 0, 0)));
    const winners = results.filter((r) => (r as unknown[])[0] === true);
    assert.equal(winners.length, 1);
    for (const r of results) if (r !== winners[0]) assert.deepEqual(r, [false, "exists", false]);
    const [owner] = (await workers[1]!.call("get", "owner")) as [string];
    assert.match(owner, /^w[012]$/);
    assert.deepEqual(await workers[2]!.call("replace", "nobody", 1, 0, 0), [
      false,
      "not found",
      false,
    ]);
  });

  test("what one worker sets with a time to live expires for all of them", async () => {
    const [a, b] = await startWorkers(2);
    assert.deepEqual(await a!.call("set", "session", "abc", 10, 7), [true, null, false]);
    assert.deepEqual(await b!.call("get", "session"), ["abc", 7]);
    assert.deepEqual(await b!.call("ttl", "session"), [10]);
    clock += 10_001;
    assert.deepEqual(await b!.call("get", "session"), []);
    assert.deepEqual(await a!.call("get_stale", "session"), ["abc", 7, true]);
    assert.deepEqual(await a!.call("ttl", "session"), [null, "not found"]);
  });

  test("a full dictionary: safe_set says no memory, set evicts and says forcible", async () => {
    const [a, b] = await startWorkers(2);
    const value = "x".repeat(300);
    const small = (w: Worker, name: string, ...args: unknown[]) =>
      w.request("call", { dict: "small", name, args });
    assert.deepEqual(await small(a!, "safe_set", "k1", value, 0, 0), [true, null, false]);
    assert.deepEqual(await small(b!, "safe_set", "k2", value, 0, 0), [true, null, false]);
    assert.deepEqual(await small(a!, "safe_set", "k3", value, 0, 0), [false, "no memory", false]);
    assert.deepEqual(await small(b!, "safe_add", "k3", value, 0, 0), [false, "no memory", false]);
    assert.deepEqual(await small(b!, "set", "k3", value, 0, 0), [true, null, true]);
    assert.deepEqual(await small(a!, "get", "k1"), [], "the least recently used item was evicted");
    assert.deepEqual(await small(a!, "get", "k2"), [value]);
    assert.deepEqual(await small(a!, "capacity"), [1_000]);
    const [free] = (await small(b!, "free_space")) as [number];
    assert.ok(free >= 0 && free < 1_000 - 2 * 300, `free_space ${free}`);
    // A dictionary without a configured size never fills up.
    assert.deepEqual(await a!.call("capacity"), [Number.POSITIVE_INFINITY]);
  });

  test("a worker killed in the middle of its calls wedges neither the others nor the primary", async () => {
    const [doomed, a, b] = await startWorkers(3);
    assert.equal(await doomed!.request("incr-forever"), "looping");
    // Let it get going (its counter moves), then kill it, whatever call it is in.
    while (((store.call("d", "get", ["forever"])[0] as number | undefined) ?? 0) < 100) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    await doomed!.kill();
    await Promise.all([
      a!.request("incr-loop", { count: 500 }),
      b!.request("incr-loop", { count: 500 }),
    ]);
    assert.deepEqual(await a!.call("get", "n"), [1_000]);
    // A new worker can still join (as a replaced worker would).
    const [late] = await startWorkers(1);
    assert.deepEqual(await late!.call("incr", "n", 1), [1_001, null]);
  });

  test("a worker whose primary stopped serving it gets a clear error, not a hang", async () => {
    const [worker] = await startWorkers(1);
    assert.deepEqual(await worker!.call("set", "k", 1, 0, 0), [true, null, false]);
    server.detach(worker!.channel);
    await assert.rejects(
      worker!.call("get", "k"),
      /SharedDictError: the shared dictionaries' primary process is gone/,
    );
  });
});
