/**
 * RedisBus against a real redis-server: two (or three) nodes in this test process, each with its
 * own connections, metrics and log, as two servers sharing one Redis would have.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { createClient } from "@redis/client";
import { RedisBus } from "../../src/cluster/redis-bus.js";
import { MetricsRegistry } from "../../src/observability/metrics.js";
import type { BusMessage, BusReceiver } from "../../src/server/bus.js";
import {
  captureLogger,
  type LogCapture,
  PATIENCE_MS,
  Resources,
  waitUntil,
} from "../helpers/net-helpers.js";
import { REDIS_MISSING, TestRedis } from "../helpers/redis-server.js";

/** What a node's hub was given by the bus. */
class RecordingReceiver implements BusReceiver {
  readonly to: Array<{ id: number; text: string }> = [];
  readonly all: string[] = [];
  readonly topics: Array<{ topic: string; text: string; binary: boolean }> = [];
  readonly revoked: number[] = [];

  deliverTo(id: number, message: BusMessage): void {
    this.to.push({ id, text: text(message) });
  }
  deliverAll(message: BusMessage): void {
    this.all.push(text(message));
  }
  deliverTopic(topic: string, message: BusMessage): void {
    this.topics.push({ topic, text: text(message), binary: message.binary });
  }
  revokeId(id: number): void {
    this.revoked.push(id);
  }
}

interface TestNode {
  bus: RedisBus;
  receiver: RecordingReceiver;
  log: LogCapture;
  metrics: MetricsRegistry;
}

function text(message: BusMessage): string {
  return typeof message.data === "string" ? message.data : Buffer.from(message.data).toString();
}

function message(data: string, binary = false): BusMessage {
  return { data: binary ? Buffer.from(data) : data, binary };
}

/** Lease of the test nodes: short, so ghosts go quickly, but far above an event-loop stall. */
const LEASE_MS = 2_000;

describe("RedisBus with two nodes", { skip: REDIS_MISSING }, () => {
  let redis: TestRedis;
  const resources = new Resources();
  let prefix = 0;

  before(async () => {
    redis = await TestRedis.start();
  });
  after(async () => {
    await redis.stop();
  });
  afterEach(() => resources.closeAll());

  /** A node on the test Redis; every node of one test shares a fresh key prefix. */
  async function startNode(
    name: string,
    options: { historyLength?: number } = {},
  ): Promise<TestNode> {
    const log = captureLogger("debug");
    const metrics = new MetricsRegistry();
    const bus = new RedisBus({
      url: redis.url,
      metrics,
      logger: log.logger,
      nodeId: name,
      keyPrefix: `test${prefix}:`,
      leaseMs: LEASE_MS,
      maxBackoffMs: 200,
      ...options,
    });
    const receiver = new RecordingReceiver();
    await bus.start(receiver);
    resources.add(bus, (b) => b.stop());
    return { bus, receiver, log, metrics };
  }

  function nextPrefix(): void {
    prefix++;
  }

  test("ids are unique and the lowest free across nodes", async () => {
    nextPrefix();
    const a = await startNode("a");
    const b = await startNode("b");
    assert.equal(await a.bus.acquireId(), 0);
    assert.equal(await b.bus.acquireId(), 1);
    assert.equal(await a.bus.acquireId(), 2);
    a.bus.releaseId(0);
    // Released by a, handed out by b: the pool is the cluster's, not a node's.
    await waitUntil(() => !b.bus.clients().includes(0), PATIENCE_MS, "b to see 0 leave");
    assert.equal(await b.bus.acquireId(), 0);
    assert.equal(await b.bus.acquireId(), 3);
    await waitUntil(
      () => a.bus.clients().join() === "0,1,2,3",
      PATIENCE_MS,
      `a's presence list (${a.bus.clients().join()})`,
    );
    assert.deepEqual(b.bus.clients(), [0, 1, 2, 3]);
  });

  test("many concurrent allocations on two nodes hand out each id once", async () => {
    nextPrefix();
    const a = await startNode("a");
    const b = await startNode("b");
    const ids = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a.bus : b.bus).acquireId()),
    );
    assert.deepEqual(
      [...ids].sort((x, y) => x - y),
      Array.from({ length: 40 }, (_, i) => i),
    );
  });

  test("send to an id, broadcast and publish reach the other node, not the sender", async () => {
    nextPrefix();
    const a = await startNode("a");
    const b = await startNode("b");
    const idOnA = await a.bus.acquireId();
    const idOnB = await b.bus.acquireId();
    await waitUntil(() => a.bus.clients().includes(idOnB), PATIENCE_MS, "a to know b's client");

    assert.equal(a.bus.sendTo(idOnB, message("hello b")), true);
    assert.equal(a.bus.sendTo(idOnA, message("local ids are the hub's job")), false);
    assert.equal(a.bus.sendTo(99, message("nobody")), false);
    a.bus.broadcast(message("to all"));
    b.bus.subscribe("news");
    // A subscription takes a round trip; publish until one arrives, then check no duplicates.
    await waitUntil(
      () => {
        if (b.receiver.topics.length === 0) a.bus.publish("news", message("\u00e9t\u00e9", true));
        return b.receiver.topics.length > 0;
      },
      PATIENCE_MS,
      "b to receive a publication",
      50,
    );
    a.bus.publish("other", message("b has no subscriber here"));
    a.bus.broadcast(message("marker"));
    await waitUntil(() => b.receiver.all.includes("marker"), PATIENCE_MS, "the marker broadcast");

    assert.deepEqual(b.receiver.to, [{ id: idOnB, text: "hello b" }]);
    assert.deepEqual(b.receiver.all, ["to all", "marker"]);
    assert.ok(
      b.receiver.topics.every((t) => t.topic === "news" && t.text === "\u00e9t\u00e9" && t.binary),
    );
    assert.deepEqual(a.receiver.all, [], "a node does not receive its own broadcast");
    assert.deepEqual(a.receiver.to, []);
  });

  test("topic history keeps the last N messages, read from any node", async () => {
    nextPrefix();
    const a = await startNode("a", { historyLength: 3 });
    const b = await startNode("b", { historyLength: 3 });
    /** Reads a's view of the history until its last message is `last`. */
    async function historyEndingWith(last: string): Promise<readonly BusMessage[]> {
      const deadline = Date.now() + PATIENCE_MS;
      for (;;) {
        const history = await a.bus.history("chat");
        if (history.length > 0 && text(history.at(-1)!) === last) return history;
        if (Date.now() > deadline)
          assert.fail(`history never ended with ${last}: ${history.map(text)}`);
      }
    }
    for (const n of [1, 2, 3, 4, 5]) a.bus.publish("chat", message(`m${n}`));
    // One node's publications keep their order...
    assert.deepEqual((await historyEndingWith("m5")).map(text), ["m3", "m4", "m5"]);
    // ...and another node's come after what it could see.
    b.bus.publish("chat", message("m6", true));
    const history = await historyEndingWith("m6");
    assert.deepEqual(history.map(text), ["m4", "m5", "m6"]);
    assert.deepEqual(
      history.map((m) => m.binary),
      [false, false, true],
    );
    assert.deepEqual((await b.bus.history("chat")).map(text), ["m4", "m5", "m6"]);
    assert.deepEqual(await b.bus.history("empty"), []);
  });

  test("a stopped node leaves no ghost ids", async () => {
    nextPrefix();
    const a = await startNode("a");
    const b = await startNode("b");
    assert.equal(await a.bus.acquireId(), 0);
    assert.equal(await b.bus.acquireId(), 1);
    assert.equal(await b.bus.acquireId(), 2);
    await b.bus.stop();
    await waitUntil(() => a.bus.clients().join() === "0", PATIENCE_MS, "a to forget b's clients");
    assert.equal(await a.bus.acquireId(), 1);
    assert.deepEqual(
      (await a.bus.nodes()).map((n) => n.id),
      ["a"],
    );
  });

  test("a node cut off longer than its lease gets back the ids nobody took and gives up the others", async () => {
    nextPrefix();
    const a = await startNode("a");
    const b = await startNode("b");
    assert.equal(await a.bus.acquireId(), 0);
    assert.equal(await b.bus.acquireId(), 1);
    assert.equal(await a.bus.acquireId(), 2);
    // What Redis sees of a node cut off for longer than its lease: the lease is gone.
    const raw = createClient({ url: redis.url });
    await raw.connect();
    await raw.del(`test${prefix}:lease:a`);
    raw.destroy();
    // b's allocation frees a's ids as a dead node's, and takes the lowest.
    assert.equal(await b.bus.acquireId(), 0);
    await waitUntil(() => a.receiver.revoked.length > 0, PATIENCE_MS, "a to give up id 0");
    assert.deepEqual(a.receiver.revoked, [0], "only the id another node took is revoked");
    assert.match(
      a.log.lines().join("\n"),
      /client id taken by another node while cut off: closing its client .*id=0/,
    );
    // a holds 2 again, so the next id is 3.
    assert.equal(await b.bus.acquireId(), 3);
    await waitUntil(
      () => b.bus.clients().join() === "0,1,2,3",
      PATIENCE_MS,
      `presence (${b.bus.clients()})`,
    );
    assert.deepEqual(
      (await b.bus.nodes()).map((n) => [n.id, n.clients]),
      [
        ["a", 1],
        ["b", 3],
      ],
    );
  });

  test("nodes() lists the live nodes with their client counts", async () => {
    nextPrefix();
    const a = await startNode("a");
    const b = await startNode("b");
    await a.bus.acquireId();
    await b.bus.acquireId();
    await b.bus.acquireId();
    const nodes = await a.bus.nodes();
    assert.deepEqual(
      nodes.map((n) => [n.id, n.clients]),
      [
        ["a", 1],
        ["b", 2],
      ],
    );
    assert.ok(nodes.every((n) => n.startedAt > 0));
  });
});

describe("RedisBus when Redis goes away", { skip: REDIS_MISSING }, () => {
  const resources = new Resources();
  afterEach(() => resources.closeAll());

  async function startNode(redis: TestRedis, name: string): Promise<TestNode> {
    const log = captureLogger("debug");
    const metrics = new MetricsRegistry();
    const bus = new RedisBus({
      url: redis.url,
      metrics,
      logger: log.logger,
      nodeId: name,
      leaseMs: LEASE_MS,
      maxBackoffMs: 200,
    });
    const receiver = new RecordingReceiver();
    await bus.start(receiver);
    resources.add(bus, (b) => b.stop());
    return { bus, receiver, log, metrics };
  }

  function gauge(node: TestNode): string | undefined {
    return /^moonsocket_cluster_up (\d)$/m.exec(node.metrics.render())?.[1];
  }

  function dropped(node: TestNode): number {
    return Number(
      /^moonsocket_cluster_dropped_messages_total (\d+)$/m.exec(node.metrics.render())?.[1],
    );
  }

  test("killed: nodes stay up, say so once, drop instead of queueing; restarted empty: ids, leases and subscriptions come back", async () => {
    const redis = resources.add(await TestRedis.start(), (r) => r.stop());
    const a = await startNode(redis, "a");
    const b = await startNode(redis, "b");
    assert.equal(await a.bus.acquireId(), 0);
    assert.equal(await b.bus.acquireId(), 1);
    assert.equal(await a.bus.acquireId(), 2);
    b.bus.subscribe("room");
    await waitUntil(
      () => {
        a.bus.publish("room", message("before"));
        return b.receiver.topics.length > 0;
      },
      PATIENCE_MS,
      "the subscription before the outage",
      50,
    );
    assert.equal(gauge(a), "1");

    await redis.kill();
    await a.log.waitForLine(/cluster link lost/);
    await b.log.waitForLine(/cluster link lost/);
    assert.equal(a.bus.up, false);
    assert.equal(gauge(a), "0");
    // Several reconnection attempts fail while it is down...
    await waitUntil(
      () => a.log.lines().filter((l) => /redis link error/.test(l)).length >= 6,
      PATIENCE_MS,
      "reconnection attempts",
    );
    // ...and still one warning, not one per attempt.
    assert.equal(a.log.lines().filter((l) => /WARN/.test(l)).length, 1, a.log.lines().join("\n"));

    // Cross-node messages are dropped and counted, not queued for later.
    const droppedBefore = dropped(a);
    a.bus.broadcast(message("lost broadcast"));
    a.bus.publish("room", message("lost publication"));
    assert.equal(a.bus.sendTo(1, message("lost message")), false);
    assert.equal(dropped(a), droppedBefore + 3);
    await assert.rejects(a.bus.acquireId(), { name: "BusError", code: "down" });
    // The node's own books are unaffected: it still lists its clients.
    assert.ok(a.bus.clients().includes(0) && a.bus.clients().includes(2));

    await redis.restart();
    await a.log.waitForLine(/cluster link back/);
    await b.log.waitForLine(/cluster link back/);
    assert.equal(gauge(a), "1");
    assert.equal(a.log.lines().filter((l) => /cluster link back/.test(l)).length, 1);

    // The empty Redis was given the live ids again: a new node gets 3, not 0, 1 or 2.
    const c = await startNode(redis, "c");
    assert.equal(await c.bus.acquireId(), 3);
    await waitUntil(
      () => c.bus.clients().join() === "0,1,2,3",
      PATIENCE_MS,
      `c's presence (${c.bus.clients().join()})`,
    );

    // Subscriptions and delivery are back without a restart of the nodes.
    await waitUntil(
      () => {
        a.bus.publish("room", message("after"));
        return b.receiver.topics.some((t) => t.text === "after");
      },
      PATIENCE_MS,
      "a publication after the restart",
      50,
    );
    assert.equal(c.bus.sendTo(1, message("to b after")), true);
    c.bus.broadcast(message("all after"));
    await waitUntil(() => b.receiver.all.includes("all after"), PATIENCE_MS, "the broadcast after");
    await waitUntil(() => b.receiver.to.length > 0, PATIENCE_MS, "the message to id 1");
    const seen = [
      ...b.receiver.all,
      ...b.receiver.to.map((m) => m.text),
      ...b.receiver.topics.map((t) => t.text),
    ];
    assert.ok(!seen.some((t) => t.startsWith("lost")), `nothing sent while down arrives: ${seen}`);
    assert.deepEqual(a.receiver.revoked, []);
    assert.deepEqual(b.receiver.revoked, []);
  });

  test("a node started while Redis is unreachable fails with a clear error", async () => {
    const redis = await TestRedis.start();
    const url = redis.url;
    await redis.stop();
    const bus = new RedisBus({
      url,
      metrics: new MetricsRegistry(),
      logger: captureLogger().logger,
      connectTimeoutMs: 2_000,
    });
    await assert.rejects(bus.start(new RecordingReceiver()), (error: Error) => {
      assert.equal(error.name, "BusError");
      assert.match(
        error.message,
        /^cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/,
      );
      return true;
    });
  });
});
