/**
 * Two RedisBus nodes in two processes sharing a real redis-server: ids, cross-node delivery, and
 * the ghost ids of a node that is SIGKILLed (freed once its lease expires).
 */
import assert from "node:assert/strict";
import { type ChildProcess, fork } from "node:child_process";
import { after, afterEach, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { RedisBus } from "../../src/cluster/redis-bus.js";
import { MetricsRegistry } from "../../src/observability/metrics.js";
import type { BusMessage } from "../../src/server/bus.js";
import {
  captureLogger,
  PATIENCE_MS,
  Resources,
  waitUntil,
  withTimeout,
} from "../helpers/net-helpers.js";
import { REDIS_MISSING, TestRedis } from "../helpers/redis-server.js";

const NODE_PROCESS = fileURLToPath(new URL("./cluster-node-process.js", import.meta.url));
const LEASE_MS = 2_000;

interface Delivery {
  readonly event: string;
  readonly id?: number;
  readonly topic?: string;
  readonly text?: string;
}

/** A node process, driven by requests over IPC. */
class NodeProcess {
  readonly deliveries: Delivery[] = [];
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #seq = 0;

  constructor() {
    this.#child = fork(NODE_PROCESS, { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.#child.on(
      "message",
      (reply: { seq?: number; result?: unknown; error?: string } & Delivery) => {
        if (reply.seq === undefined) {
          this.deliveries.push(reply);
          return;
        }
        const pending = this.#pending.get(reply.seq);
        this.#pending.delete(reply.seq);
        if (reply.error !== undefined) pending?.reject(new Error(reply.error));
        else pending?.resolve(reply.result);
      },
    );
  }

  request<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const seq = ++this.#seq;
    const reply = new Promise<T>((resolve, reject) => {
      this.#pending.set(seq, { resolve: resolve as (v: unknown) => void, reject });
    });
    this.#child.send({ seq, op, ...args });
    return withTimeout(reply, PATIENCE_MS, `node process to answer ${op}`);
  }

  /** SIGKILLs the process (no goodbye to Redis) and waits for it to be gone. */
  async kill(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once("exit", resolve));
    this.#child.kill("SIGKILL");
    await exited;
  }
}

describe("RedisBus nodes in two processes", { skip: REDIS_MISSING }, () => {
  let redis: TestRedis;
  const resources = new Resources();
  let cluster = 0;

  before(async () => {
    redis = await TestRedis.start();
  });
  after(async () => {
    await redis.stop();
  });
  afterEach(() => resources.closeAll());

  /** Each test is its own cluster: a key prefix of its own. */
  const keyPrefix = () => `cluster${cluster}:`;

  async function startProcess(nodeId: string): Promise<NodeProcess> {
    const node = resources.add(new NodeProcess(), (n) => n.kill());
    await node.request("start", {
      url: redis.url,
      nodeId,
      leaseMs: LEASE_MS,
      keyPrefix: keyPrefix(),
    });
    return node;
  }

  /** A node in this process, to watch and allocate. */
  async function startLocal(
    nodeId: string,
  ): Promise<{ bus: RedisBus; all: string[]; to: string[] }> {
    const all: string[] = [];
    const to: string[] = [];
    const text = (m: BusMessage) =>
      typeof m.data === "string" ? m.data : Buffer.from(m.data).toString();
    const bus = new RedisBus({
      url: redis.url,
      nodeId,
      leaseMs: LEASE_MS,
      keyPrefix: keyPrefix(),
      metrics: new MetricsRegistry(),
      logger: captureLogger("warn").logger,
    });
    await bus.start({
      deliverTo: (id, m) => to.push(`${id}:${text(m)}`),
      deliverAll: (m) => all.push(text(m)),
      deliverTopic: () => {},
      revokeId: () => {},
    });
    resources.add(bus, (b) => b.stop());
    return { bus, all, to };
  }

  test("ids are unique and lowest-free across processes; messages cross them", async () => {
    cluster++;
    const here = await startLocal(`here${cluster}`);
    const there = await startProcess(`there${cluster}`);
    const ids = await Promise.all([
      here.bus.acquireId(),
      there.request<number>("acquire"),
      here.bus.acquireId(),
      there.request<number>("acquire"),
    ]);
    assert.deepEqual([...ids].sort(), [0, 1, 2, 3]);
    const [, thereId] = ids as [number, number, number, number];
    await waitUntil(
      () => here.bus.clients().length === 4,
      PATIENCE_MS,
      "presence from the process",
    );

    assert.equal(here.bus.sendTo(thereId, { data: "to you", binary: false }), true);
    here.bus.broadcast({ data: "to all", binary: false });
    await there.request("subscribe", { topic: "t" });
    await waitUntil(
      () => {
        here.bus.publish("t", { data: "on t", binary: false });
        return there.deliveries.some((d) => d.event === "topic");
      },
      PATIENCE_MS,
      "the publication in the other process",
      50,
    );
    await waitUntil(() => there.deliveries.length >= 3, PATIENCE_MS, "the other deliveries");
    assert.deepEqual(
      there.deliveries.find((d) => d.event === "to"),
      { event: "to", id: thereId, text: "to you" },
    );
    assert.deepEqual(
      there.deliveries.find((d) => d.event === "all"),
      { event: "all", text: "to all" },
    );

    const hereId = ids[0];
    assert.equal(await there.request("sendTo", { id: hereId, text: "back" }), true);
    await there.request("broadcast", { text: "from there" });
    await waitUntil(
      () => here.all.includes("from there") && here.to.length > 0,
      PATIENCE_MS,
      "replies",
    );
    assert.deepEqual(here.to, [`${hereId}:back`]);
  });

  test("a SIGKILLed node's ids are free again once its lease expires", async () => {
    cluster++;
    const here = await startLocal(`here${cluster}`);
    const doomed = await startProcess(`doomed${cluster}`);
    assert.equal(await doomed.request("acquire"), 0);
    assert.equal(await doomed.request("acquire"), 1);
    assert.equal(await here.bus.acquireId(), 2);
    await doomed.kill();
    // The lease runs out by itself; wait for it on the cluster's own view, not on a clock.
    const deadline = Date.now() + PATIENCE_MS + LEASE_MS;
    while ((await here.bus.nodes()).some((n) => n.id.startsWith("doomed"))) {
      assert.ok(Date.now() < deadline, "the killed node's lease never expired");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // Allocation frees the dead node's ids first: the lowest, 0, is handed out again.
    assert.equal(await here.bus.acquireId(), 0);
    await waitUntil(
      () => here.bus.clients().join() === "0,2",
      PATIENCE_MS,
      `presence (${here.bus.clients()})`,
    );
  });
});
