/**
 * The close handshake with every valid close code and a reason, started from each side, for
 * our server with a `ws` client and for our client with a `ws` server: both ends report the
 * code and reason and the close is clean.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { afterEach, describe, it } from "node:test";
import WebSocket, { WebSocketServer as WsServer } from "ws";
import { connect } from "../../src/client/client.js";
import type { ServerClient } from "../../src/server/server-client.js";
import {
  PATIENCE_MS,
  Resources,
  startServer,
  WsPeer,
  waitUntil,
  withTimeout,
} from "../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

const CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999];
const REASON = "bye ✓ for now";

interface Disconnect {
  id: number;
  code: number;
  reason: string;
}

/** Our server recording disconnects; returns the latest connected client through `clients`. */
async function startRecordingServer() {
  const disconnects: Disconnect[] = [];
  const clients: ServerClient[] = [];
  const started = await startServer(resources, {}, (server) =>
    server.addHooks({
      onConnect: (client) => clients.push(client),
      onDisconnect: (client, code, reason) => disconnects.push({ id: client.id, code, reason }),
    }),
  );
  return { ...started, disconnects, clients };
}

async function openWs(url: string): Promise<WsPeer> {
  const peer = new WsPeer(new WebSocket(url));
  resources.add(peer, (p) => p.ws.terminate());
  return peer.opened();
}

describe("close handshake: our server ↔ ws client", () => {
  for (const code of CODES) {
    it(`ws client closes with ${code} and a reason: both ends see it, clean`, async () => {
      const { url, disconnects, log } = await startRecordingServer();
      const peer = await openWs(url);
      peer.ws.close(code, REASON);
      const info = await peer.waitClosed();
      // The initiator hears the server's reply: its own code and reason back (§5.5.1).
      assert.deepEqual(info, { code, reason: REASON, wasClean: true });
      await waitUntil(() => disconnects.length === 1, PATIENCE_MS, "onDisconnect");
      assert.deepEqual(disconnects[0], { id: 0, code, reason: REASON });
      await log.waitForLine(new RegExp(`client disconnected id=0 code=${code} .*clean=true`));
    });

    it(`our server closes with ${code} and a reason: both ends see it, clean`, async () => {
      const { url, disconnects, clients, log } = await startRecordingServer();
      const peer = await openWs(url);
      clients[0]!.close(code, REASON);
      const info = await peer.waitClosed();
      assert.deepEqual(info, { code, reason: REASON, wasClean: true });
      await waitUntil(() => disconnects.length === 1, PATIENCE_MS, "onDisconnect");
      // The server reports the code the client echoed (§5.5.1), with the reason it sent back.
      assert.equal(disconnects[0]!.code, code);
      await log.waitForLine(new RegExp(`client disconnected id=0 code=${code} .*clean=true`));
    });
  }

  it("a ws client closing without a code is reported as 1005", async () => {
    const { url, disconnects } = await startRecordingServer();
    const peer = await openWs(url);
    peer.ws.close();
    const info = await peer.waitClosed();
    assert.equal(info.code, 1005);
    assert.equal(info.wasClean, true);
    await waitUntil(() => disconnects.length === 1, PATIENCE_MS, "onDisconnect");
    assert.equal(disconnects[0]!.code, 1005);
  });

  it("a ws client that drops the TCP connection is reported as 1006", async () => {
    const { url, disconnects } = await startRecordingServer();
    const peer = await openWs(url);
    peer.ws.terminate();
    await waitUntil(() => disconnects.length === 1, PATIENCE_MS, "onDisconnect");
    assert.equal(disconnects[0]!.code, 1006);
  });
});

describe("close handshake: ws server ↔ our client", () => {
  async function startWs() {
    const wss = new WsServer({ host: "127.0.0.1", port: 0 });
    const peers: WsPeer[] = [];
    wss.on("connection", (socket) => peers.push(new WsPeer(socket)));
    resources.add(wss, (server) => {
      for (const client of server.clients) client.terminate();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    });
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, peers };
  }

  for (const code of CODES) {
    it(`our client closes with ${code} and a reason: both ends see it, clean`, async () => {
      const { url, peers } = await startWs();
      const client = resources.add(await connect(url), (c) => c.terminate());
      await waitUntil(() => peers.length === 1, PATIENCE_MS, "the ws server's connection");
      const info = await withTimeout(client.close(code, REASON), PATIENCE_MS, "our client's close");
      assert.deepEqual(info, { code, reason: REASON, wasClean: true });
      assert.deepEqual(await peers[0]!.waitClosed(), { code, reason: REASON, wasClean: true });
    });

    it(`the ws server closes with ${code} and a reason: both ends see it, clean`, async () => {
      const { url, peers } = await startWs();
      const client = resources.add(await connect(url), (c) => c.terminate());
      await waitUntil(() => peers.length === 1, PATIENCE_MS, "the ws server's connection");
      peers[0]!.ws.close(code, REASON);
      const info = await withTimeout(client.closed, PATIENCE_MS, "our client to see the close");
      assert.deepEqual(info, { code, reason: REASON, wasClean: true });
      const serverSide = await peers[0]!.waitClosed();
      // ws hears our client's reply: its own code and reason back.
      assert.deepEqual(serverSide, { code, reason: REASON, wasClean: true });
    });
  }

  it("our client refuses an invalid close code with a StateError", async () => {
    const { url } = await startWs();
    const client = resources.add(await connect(url), (c) => c.terminate());
    assert.throws(() => client.close(1005), { code: "ERR_WS_CLOSE_CODE" });
    assert.throws(() => client.close(2000), { code: "ERR_WS_CLOSE_CODE" });
  });

  it("a ws server that drops the TCP connection gives our client 1006, not clean", async () => {
    const { url, peers } = await startWs();
    const client = resources.add(await connect(url), (c) => c.terminate());
    await waitUntil(() => peers.length === 1, PATIENCE_MS, "the ws server's connection");
    peers[0]!.ws.terminate();
    const info = await withTimeout(client.closed, PATIENCE_MS, "our client to see the drop");
    assert.equal(info.code, 1006);
    assert.equal(info.wasClean, false);
  });
});
