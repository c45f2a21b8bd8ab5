/**
 * Server features over real sockets: lowest free client ids, broadcast, topics, hooks order
 * and error isolation, graceful shutdown.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { afterEach, describe, it } from "node:test";
import WebSocket from "ws";
import type { ServerHooks } from "../../src/server/server.js";
import type { ServerClient } from "../../src/server/server-client.js";
import {
  fetchMetrics,
  metricValue,
  PATIENCE_MS,
  Resources,
  sleep,
  startServer,
  WsPeer,
  waitUntil,
} from "../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

function openWs(url: string, options: WebSocket.ClientOptions = {}): Promise<WsPeer> {
  const peer = new WsPeer(new WebSocket(url, options));
  resources.add(peer, (p) => p.ws.terminate());
  return peer.opened();
}

describe("client ids", () => {
  it("gives the lowest free id: 0, 1, 2, then 1 again after client 1 left, then 3", async () => {
    const ids: number[] = [];
    const left: number[] = [];
    const { url } = await startServer(resources, {}, (server) =>
      server.addHooks({
        onConnect: (client) => {
          ids.push(client.id);
          client.send(String(client.id));
        },
        onDisconnect: (client) => left.push(client.id),
      }),
    );
    const peers: WsPeer[] = [];
    for (let i = 0; i < 3; i++) {
      const peer = await openWs(url);
      assert.equal((await peer.next()).data.toString(), String(i));
      peers.push(peer);
    }
    assert.deepEqual(ids, [0, 1, 2]);
    peers[1]!.ws.close(1000);
    await waitUntil(() => left.includes(1), PATIENCE_MS, "client 1 to leave");
    const again = await openWs(url);
    assert.equal((await again.next()).data.toString(), "1");
    const fourth = await openWs(url);
    assert.equal((await fourth.next()).data.toString(), "3");
    assert.deepEqual(ids, [0, 1, 2, 1, 3]);
  });
});

describe("broadcast", () => {
  it("reaches every client once and returns the number of receivers", async () => {
    const { server, url, port } = await startServer(resources, { perMessageDeflate: true });
    // A mix of compressing and plain clients: the plain ones share one prebuilt frame.
    const peers = [
      await openWs(url),
      await openWs(url, { perMessageDeflate: true }),
      await openWs(url),
    ];
    await waitUntil(() => server.clientCount === 3, PATIENCE_MS, "3 clients");
    const before = metricValue(await fetchMetrics(port), "moonsocket_messages_sent_total");
    assert.equal(server.broadcast("news for all ✓"), 3);
    const big = Buffer.alloc(50_000, 1);
    assert.equal(server.broadcast(big), 3);
    for (const peer of peers) {
      const text = await peer.next();
      assert.equal(text.isBinary, false);
      assert.equal(text.data.toString(), "news for all ✓");
      const binary = await peer.next();
      assert.equal(binary.isBinary, true);
      assert.ok(binary.data.equals(big));
    }
    assert.equal(
      metricValue(await fetchMetrics(port), "moonsocket_messages_sent_total") - before,
      6,
    );
  });

  it("skips the excepted client", async () => {
    const clients: ServerClient[] = [];
    const { server, url } = await startServer(resources, {}, (s) =>
      s.addHooks({ onConnect: (c) => clients.push(c) }),
    );
    const a = await openWs(url);
    const b = await openWs(url);
    await waitUntil(() => clients.length === 2, PATIENCE_MS, "2 clients");
    assert.equal(server.broadcast("not for a", false, clients[0]), 1);
    assert.equal((await b.next()).data.toString(), "not for a");
    await a.expectNoMessage(200);
  });

  it("sendTo reaches one client by id and drops for an unknown id", async () => {
    const { server, url } = await startServer(resources);
    const a = await openWs(url);
    const b = await openWs(url);
    await waitUntil(() => server.clientCount === 2, PATIENCE_MS, "2 clients");
    assert.equal(server.sendTo(1, "to b"), 0 /* SendStatus.Success */);
    assert.equal(server.sendTo(7, "nobody"), 2 /* SendStatus.Dropped */);
    assert.equal((await b.next()).data.toString(), "to b");
    await a.expectNoMessage(200);
  });
});

describe("topics", () => {
  /** A server where a client sends "sub:NAME" / "unsub:NAME" to join or leave a topic. */
  async function startTopicServer() {
    return startServer(resources, {}, (server) =>
      server.addHooks({
        onMessage: (client, data) => {
          const text = data.toString();
          const [command, topic] = text.split(":") as [string, string];
          if (command === "sub") client.send(`sub ${client.subscribe(topic)}`);
          if (command === "unsub") client.send(`unsub ${client.unsubscribe(topic)}`);
        },
      }),
    );
  }

  it("publish reaches subscribers only, unsubscribe stops it, and leaving clients are removed", async () => {
    const { server, url, port } = await startTopicServer();
    const [a, b, c] = [await openWs(url), await openWs(url), await openWs(url)];
    for (const peer of [a, b]) {
      peer.ws.send("sub:news");
      assert.equal((await peer.next()).data.toString(), "sub true");
    }
    a.ws.send("sub:news");
    assert.equal((await a.next()).data.toString(), "sub false", "a second subscribe is a no-op");
    c.ws.send("sub:sport");
    assert.equal((await c.next()).data.toString(), "sub true");
    assert.equal(server.subscriberCount("news"), 2);
    assert.equal(metricValue(await fetchMetrics(port), "moonsocket_topics"), 2);

    assert.equal(server.publish("news", "headline"), 2);
    assert.equal((await a.next()).data.toString(), "headline");
    assert.equal((await b.next()).data.toString(), "headline");
    await c.expectNoMessage(150);

    b.ws.send("unsub:news");
    assert.equal((await b.next()).data.toString(), "unsub true");
    assert.equal(server.publish("news", Buffer.from([7])), 1);
    assert.deepEqual([...(await a.next()).data], [7]);
    await b.expectNoMessage(150);

    c.ws.close();
    await waitUntil(
      () => server.subscriberCount("sport") === 0,
      2000,
      "the leaving subscriber to be removed",
    );
    assert.equal(server.publish("sport", "nobody"), 0);
    assert.equal(server.publish("no-such-topic", "nobody"), 0);
    assert.equal(metricValue(await fetchMetrics(port), "moonsocket_topics"), 1);
  });
});

describe("hooks", () => {
  function recorder(name: string, events: string[]): ServerHooks {
    return {
      onStartup: () => void events.push(`${name}.startup`),
      onShutdown: () => void events.push(`${name}.shutdown`),
      onConnect: (client) => void events.push(`${name}.connect ${client.id}`),
      onMessage: (client, data) =>
        void events.push(`${name}.message ${client.id} ${data.toString()}`),
      onDisconnect: (client, code) => void events.push(`${name}.disconnect ${client.id} ${code}`),
    };
  }

  it("run in the order their sets were added, through a client's whole life", async () => {
    const events: string[] = [];
    const { server, url } = await startServer(resources, {}, (s) =>
      s.addHooks(recorder("A", events)).addHooks(recorder("B", events)),
    );
    const peer = await openWs(url);
    peer.ws.send("hi");
    await waitUntil(() => events.length >= 6, PATIENCE_MS, "the message hooks");
    peer.ws.close(4000);
    await waitUntil(() => events.length >= 8, PATIENCE_MS, "the disconnect hooks");
    await server.close();
    assert.deepEqual(events, [
      "A.startup",
      "B.startup",
      "A.connect 0",
      "B.connect 0",
      "A.message 0 hi",
      "B.message 0 hi",
      "A.disconnect 0 4000",
      "B.disconnect 0 4000",
      "A.shutdown",
      "B.shutdown",
    ]);
  });

  it("onDisconnect is not called for a client refused with 1013 (it never had onConnect)", async () => {
    const events: string[] = [];
    const { url } = await startServer(resources, { maxConnections: 1 }, (s) =>
      s.addHooks(recorder("A", events)),
    );
    await openWs(url);
    const refused = await openWs(url);
    assert.equal((await refused.waitClosed()).code, 1013);
    await sleep(50);
    assert.deepEqual(events, ["A.startup", "A.connect 0"]);
  });

  it("a throwing onMessage closes only that client with 1011; others keep working", async () => {
    const { url, port, log } = await startServer(resources, {}, (server) =>
      server.addHooks({
        onMessage: (client, data) => {
          if (data.toString() === "boom") throw new Error("hook exploded");
          client.send(data, false);
        },
      }),
    );
    const victim = await openWs(url);
    const bystander = await openWs(url);
    victim.ws.send("boom");
    const info = await victim.waitClosed();
    assert.equal(info.code, 1011);
    assert.equal(info.wasClean, true);
    await log.waitForLine(
      /ERROR onMessage hook failed; closing the client with 1011 id=0 err="Error: hook exploded"/,
    );
    bystander.ws.send("still here");
    assert.equal((await bystander.next()).data.toString(), "still here");
    const third = await openWs(url);
    third.ws.send("new client");
    assert.equal((await third.next()).data.toString(), "new client");
    assert.equal(metricValue(await fetchMetrics(port), "moonsocket_hook_errors_total"), 1);
  });

  it("a throwing onConnect closes that client with 1011; later sets' hooks never hear of it", async () => {
    const events: string[] = [];
    let thrown = false;
    const { url, log } = await startServer(resources, {}, (server) =>
      server
        .addHooks({
          onConnect: (client) => {
            events.push(`A.connect ${client.id}`);
            if (!thrown) {
              thrown = true;
              throw new Error("refused by A");
            }
          },
          onDisconnect: (client) => void events.push(`A.disconnect ${client.id}`),
        })
        .addHooks({
          onConnect: (client) => void events.push(`B.connect ${client.id}`),
          onDisconnect: (client) => void events.push(`B.disconnect ${client.id}`),
          onMessage: (client, data) => void client.send(data, false),
        }),
    );
    const first = await openWs(url);
    assert.equal((await first.waitClosed()).code, 1011);
    await log.waitForLine(
      /ERROR onConnect hook failed; closing the client with 1011 id=0 err="Error: refused by A"/,
    );
    await waitUntil(() => events.includes("A.disconnect 0"), PATIENCE_MS, "A.disconnect 0");
    const second = await openWs(url);
    second.ws.send("ok");
    assert.equal((await second.next()).data.toString(), "ok");
    // B's onConnect never ran for the first client, so neither does its onDisconnect.
    assert.deepEqual(events, ["A.connect 0", "A.disconnect 0", "A.connect 0", "B.connect 0"]);
  });

  it("a throwing onDisconnect is logged and does not disturb other clients", async () => {
    const { url, log } = await startServer(resources, {}, (server) =>
      server.addHooks({
        onDisconnect: () => {
          throw new Error("cleanup failed");
        },
        onMessage: (client, data) => void client.send(data, false),
      }),
    );
    const leaving = await openWs(url);
    const staying = await openWs(url);
    leaving.ws.close();
    await log.waitForLine(/onDisconnect hook failed/);
    staying.ws.send("fine");
    assert.equal((await staying.next()).data.toString(), "fine");
  });
});

describe("ping and pong", () => {
  it("server pings reach the ws client, whose automatic pongs reach onPong", async () => {
    const pongs: string[] = [];
    const clients: ServerClient[] = [];
    const { url } = await startServer(resources, {}, (server) =>
      server.addHooks({
        onConnect: (client) => clients.push(client),
        onPong: (_client, payload) => void pongs.push(payload.toString()),
      }),
    );
    const peer = await openWs(url);
    const pings: string[] = [];
    peer.ws.on("ping", (payload: Buffer) => pings.push(payload.toString()));
    await waitUntil(() => clients.length === 1, PATIENCE_MS, "the client");
    assert.equal(clients[0]!.ping("hello?"), 0 /* Success */);
    await waitUntil(() => pongs.length === 1, PATIENCE_MS, "the pong");
    assert.deepEqual(pings, ["hello?"]);
    assert.deepEqual(pongs, ["hello?"]);
  });

  it("client pings reach onPing and are answered with a pong automatically", async () => {
    const pings: string[] = [];
    const { url } = await startServer(resources, {}, (server) =>
      server.addHooks({ onPing: (_client, payload) => void pings.push(payload.toString()) }),
    );
    const peer = await openWs(url);
    const pong = new Promise<string>((resolve) =>
      peer.ws.once("pong", (payload: Buffer) => resolve(payload.toString())),
    );
    peer.ws.ping("ping ✓");
    assert.equal(await pong, "ping ✓");
    assert.deepEqual(pings, ["ping ✓"]);
  });
});

describe("graceful shutdown", () => {
  it("server.close() runs onShutdown, then closes every client with 1001, and stops listening", async () => {
    const events: string[] = [];
    const { server, url, port, log } = await startServer(resources, {}, (s) =>
      s.addHooks({
        onShutdown: (srv) => {
          events.push("shutdown");
          // Clients are still open while the shutdown hook runs.
          srv.broadcast("goodbye");
        },
        onDisconnect: (client, code) => void events.push(`disconnect ${client.id} ${code}`),
      }),
    );
    const peers = [await openWs(url), await openWs(url), await openWs(url)];
    await waitUntil(() => server.clientCount === 3, PATIENCE_MS, "3 clients");
    const started = Date.now();
    await server.close();
    // Every peer answers the close: nothing to wait for, least of all the 5 s close timeout.
    assert.ok(Date.now() - started < 4000, "shutdown waited for the close timeout");
    for (const peer of peers) {
      assert.equal((await peer.next()).data.toString(), "goodbye");
      const info = await peer.waitClosed();
      assert.equal(info.code, 1001);
      assert.equal(info.reason, "server shutting down");
      assert.equal(info.wasClean, true);
    }
    assert.equal(events[0], "shutdown");
    assert.deepEqual(events.slice(1).sort(), [
      "disconnect 0 1001",
      "disconnect 1 1001",
      "disconnect 2 1001",
    ]);
    await log.waitForLine(/INFO {2}shutting down clients=3/);
    await assert.rejects(
      new Promise((resolve, reject) => {
        const socket = net.connect({ host: "127.0.0.1", port });
        socket.on("connect", () => {
          socket.destroy();
          resolve(undefined);
        });
        socket.on("error", reject);
      }),
      /ECONNREFUSED/,
    );
  });

  it("cuts a client that does not answer the close after closeTimeout", async () => {
    const { server, url } = await startServer(resources, { closeTimeout: 300 });
    const peer = await openWs(url);
    // Stop ws from reading, so it never answers the server's close frame.
    (peer.ws as unknown as { _socket: net.Socket })._socket.pause();
    const started = Date.now();
    await server.close();
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 250, `shutdown took ${elapsed} ms`);
  });
});
