/**
 * The hub with and without a bus, over real sockets (LocalBus is the in-process bus: no fake).
 */
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import WebSocket from "ws";
import { LocalBus } from "../../../src/cluster/local-bus.js";
import type { BusMessage } from "../../../src/server/bus.js";
import { SendStatus } from "../../../src/server/server-client.js";
import { TopicHistory } from "../../../src/server/topic-history.js";
import { PATIENCE_MS, Resources, startServer, waitUntil } from "../../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

interface Peer {
  socket: WebSocket;
  messages: string[];
  closed?: number;
}

async function connect(url: string): Promise<Peer> {
  const socket = new WebSocket(url);
  resources.add(socket, (s) => s.terminate());
  const peer: Peer = { socket, messages: [] };
  socket.on("message", (data) => peer.messages.push(data.toString()));
  socket.on("close", (code) => {
    peer.closed = code;
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    socket.once("error", reject);
  });
  return peer;
}

const text = (messages: readonly BusMessage[]) =>
  messages.map((m) => Buffer.from(m.data).toString());

test("with a bus, ids come from it and go back to it when the client leaves", async () => {
  const bus = new LocalBus();
  const { server, url } = await startServer(resources, { bus });
  const first = await connect(url);
  await connect(url);
  await waitUntil(() => server.clientCount === 2, PATIENCE_MS, "two clients");
  assert.deepEqual(bus.clients(), [0, 1]);
  assert.deepEqual(server.hub.clientIds(), [0, 1]);
  first.socket.close();
  await waitUntil(() => bus.clients().length === 1, PATIENCE_MS, "the id given back");
  assert.deepEqual(bus.clients(), [1]);
  assert.equal(bus.acquireId(), 0, "the lowest free id again");
});

test("a bus that cannot give an id: the upgrade is refused with 503 and the server stays up", async () => {
  const bus = new LocalBus();
  const { server, url, log } = await startServer(resources, { bus });
  await bus.stop(); // its acquireId now throws BusError "stopped"
  await assert.rejects(connect(url), /HTTP 503/);
  assert.ok(log.lines().some((line) => /handshake refused.*cluster unavailable/.test(line)));
  assert.equal(server.clientCount, 0);
});

test("an id no node holds: sendTo drops; a local one is sent", async () => {
  const { server, url } = await startServer(resources, { bus: new LocalBus() });
  const peer = await connect(url);
  await waitUntil(() => server.clientCount === 1, PATIENCE_MS, "the client");
  assert.equal(server.sendTo(7, "nobody"), SendStatus.Dropped);
  assert.equal(server.sendTo(0, "you"), SendStatus.Success);
  await waitUntil(() => peer.messages.includes("you"), PATIENCE_MS, "the message");
});

test("revokeId closes that client with 1012", async () => {
  const { server, url } = await startServer(resources, { bus: new LocalBus() });
  const peer = await connect(url);
  await waitUntil(() => server.clientCount === 1, PATIENCE_MS, "the client");
  server.hub.revokeId(0);
  await waitUntil(() => peer.closed !== undefined, PATIENCE_MS, "the close");
  assert.equal(peer.closed, 1012);
});

test("deliveries from other nodes are framed for the local receivers", async () => {
  const { server, url } = await startServer(resources, { bus: new LocalBus() });
  const [a, b] = [await connect(url), await connect(url)];
  await waitUntil(() => server.clientCount === 2, PATIENCE_MS, "two clients");
  server.subscribe(server.getClient(1)!, "room");
  server.hub.deliverAll({ data: "to all", binary: false });
  server.hub.deliverTo(0, { data: new TextEncoder().encode("to a"), binary: false });
  server.hub.deliverTopic("room", { data: "to room", binary: false });
  await waitUntil(() => b.messages.length === 2 && a.messages.length === 2, PATIENCE_MS, "all");
  assert.deepEqual(a.messages, ["to all", "to a"]);
  assert.deepEqual(b.messages, ["to all", "to room"]);
});

test("history without a bus: the last N of each topic, local and delivered", async () => {
  const { server } = await startServer(resources, { historyLength: 2 });
  for (const message of ["one", "two", "three"]) server.publish("news", message);
  server.hub.deliverTopic("news", { data: "four", binary: false });
  server.publish("other", "x");
  assert.deepEqual(text(server.hub.history("news")), ["three", "four"]);
  assert.deepEqual(text(server.hub.history("none")), []);
});

test("history is off by default", async () => {
  const { server } = await startServer(resources);
  server.publish("news", "one");
  assert.deepEqual(server.hub.history("news"), []);
});

test("script-level listeners hear every publication and are counted as receivers", async () => {
  const { server } = await startServer(resources);
  const heard: string[] = [];
  const stop = server.hub.listen("news", (message, topic) =>
    heard.push(`${topic}:${Buffer.from(message.data).toString()}`),
  );
  assert.equal(server.publish("news", "local"), 1);
  server.hub.deliverTopic("news", { data: "remote", binary: false });
  stop();
  assert.equal(server.publish("news", "after"), 0);
  assert.deepEqual(heard, ["news:local", "news:remote"]);
});

test("a loaded history goes before what arrived since, the overlap kept once", () => {
  const history = new TopicHistory(4);
  const m = (data: string): BusMessage => ({ data, binary: false });
  history.append("t", m("c"));
  history.append("t", m("d"));
  history.prepend("t", [m("a"), m("b"), m("c")]);
  assert.deepEqual(text(history.get("t")), ["a", "b", "c", "d"]);
  history.prepend("u", [m("x")]);
  assert.deepEqual(text(history.get("u")), ["x"]);
});
