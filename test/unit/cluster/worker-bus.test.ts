/**
 * WorkerBus (a worker's side) against WorkerBusBroker (the primary's), linked in one process by
 * channels that deliver asynchronously, in order, as node:cluster's IPC does.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WorkerBus } from "../../../src/cluster/worker-bus.js";
import { WorkerBusBroker, type WorkerPort } from "../../../src/cluster/worker-bus-broker.js";
import type {
  PrimaryChannel,
  PrimaryToWorker,
  WorkerToPrimary,
} from "../../../src/cluster/worker-messages.js";
import type { BusMessage, BusReceiver } from "../../../src/server/bus.js";

/** What a worker's hub was given by the bus. */
class Inbox implements BusReceiver {
  readonly got: string[] = [];
  deliverTo(id: number, message: BusMessage): void {
    this.got.push(`to ${id}: ${String(message.data)}`);
  }
  deliverAll(message: BusMessage): void {
    this.got.push(`all: ${String(message.data)}`);
  }
  deliverTopic(topic: string, message: BusMessage): void {
    this.got.push(`${topic}: ${String(message.data)}`);
  }
  revokeId(): void {}
}

/** Lets every message in flight arrive (each hop is one macrotask). */
const settle = async () => {
  for (let i = 0; i < 4; i++) await new Promise((resolve) => setImmediate(resolve));
};

function link(broker: WorkerBusBroker, worker: number) {
  const toWorker: ((message: PrimaryToWorker) => void)[] = [];
  const disconnects: (() => void)[] = [];
  let connected = true;
  const port: WorkerPort = {
    worker,
    send: (message) => {
      if (!connected) return;
      setImmediate(() => {
        for (const listen of toWorker) listen(message);
      });
    },
  };
  const channel: PrimaryChannel = {
    send: (message: WorkerToPrimary) => {
      if (connected) setImmediate(() => broker.handle(port, message));
    },
    onMessage: (listener) => toWorker.push(listener),
    onDisconnect: (listener) => disconnects.push(listener),
  };
  broker.attach(port);
  const bus = new WorkerBus(worker, channel);
  const inbox = new Inbox();
  return {
    bus,
    inbox,
    started: bus.start(inbox),
    /** The worker dies: the primary detaches it, its channel closes. */
    die() {
      connected = false;
      broker.detach(port);
      for (const listener of disconnects) listener();
    },
  };
}

describe("WorkerBus over the primary's broker", () => {
  it("hands out the lowest free id across workers and lists every client on each", async () => {
    const broker = new WorkerBusBroker();
    const a = link(broker, 1);
    const b = link(broker, 2);
    await Promise.all([a.started, b.started]);
    assert.equal(await a.bus.acquireId(), 0);
    assert.equal(await b.bus.acquireId(), 1);
    assert.equal(await a.bus.acquireId(), 2);
    a.bus.releaseId(0);
    await settle();
    assert.equal(await b.bus.acquireId(), 0);
    await settle();
    assert.deepEqual(a.bus.clients(), [0, 1, 2]);
    assert.deepEqual(b.bus.clients(), [0, 1, 2]);
  });

  it("frees a dead worker's ids at once: the others stop listing them and the next id is the lowest", async () => {
    const broker = new WorkerBusBroker();
    const a = link(broker, 1);
    const b = link(broker, 2);
    await Promise.all([a.started, b.started]);
    await a.bus.acquireId(); // 0
    await b.bus.acquireId(); // 1
    await a.bus.acquireId(); // 2
    await settle();
    a.die();
    await settle();
    assert.deepEqual(b.bus.clients(), [1]);
    assert.equal(broker.clientCount, 1);
    assert.equal(await b.bus.acquireId(), 0);
    await assert.rejects(a.bus.acquireId(), { name: "BusError", code: "down" });
  });

  it("relays _send to the holder only, broadcasts to the other workers, topics to subscribed workers", async () => {
    const broker = new WorkerBusBroker();
    const a = link(broker, 1);
    const b = link(broker, 2);
    const c = link(broker, 3);
    await Promise.all([a.started, b.started, c.started]);
    const held = await b.bus.acquireId();
    await settle();
    assert.equal(a.bus.sendTo(held, { data: "hello", binary: false }), true);
    assert.equal(
      b.bus.sendTo(held, { data: "own", binary: false }),
      false,
      "a local id is the hub's",
    );
    assert.equal(a.bus.sendTo(99, { data: "nobody", binary: false }), false);
    a.bus.broadcast({ data: "news", binary: false });
    c.bus.subscribe("chat");
    c.bus.subscribe("chat"); // idempotent
    await settle();
    a.bus.publish("chat", { data: "hi", binary: false });
    await settle();
    assert.deepEqual(a.inbox.got, []);
    assert.deepEqual(b.inbox.got, [`to ${held}: hello`, "all: news"]);
    assert.deepEqual(c.inbox.got, ["all: news", "chat: hi"]);
  });

  it("with history on: every worker gets every publication, and a new worker loads the history", async () => {
    const broker = new WorkerBusBroker({ historyLength: 2 });
    const a = link(broker, 1);
    const b = link(broker, 2);
    await Promise.all([a.started, b.started]);
    for (const text of ["one", "two", "three"])
      a.bus.publish("room", { data: text, binary: false });
    await settle();
    assert.deepEqual(b.inbox.got, ["room: one", "room: two", "room: three"]);
    const late = link(broker, 3);
    await late.started;
    const histories = await late.bus.histories();
    assert.deepEqual(
      histories.get("room")?.map((m) => m.data),
      ["two", "three"],
    );
  });
});
