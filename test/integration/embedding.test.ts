import assert from "node:assert/strict";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { afterEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { WebSocket, WebSocketServer as WsServer } from "ws";
import { connect } from "../../src/client/client.js";
import { ScriptApp, SendStatus, type ServerClient, WebSocketServer } from "../../src/index.js";
import { MetricsRegistry } from "../../src/observability/metrics.js";
import {
  captureLogger,
  httpRequest,
  metricValue,
  PATIENCE_MS,
  Resources,
  rawHttp,
  upgradeRequest,
  WsPeer,
  waitUntil,
  withTimeout,
} from "../helpers/net-helpers.js";
import { makeCertificate } from "../helpers/tls-cert.js";

// The embedding modes ws users know: attach to an http server you own (`{ server }`), or hand
// upgrades over yourself (`{ noServer: true }` + `handleUpgrade`); and a Lua script joining
// TypeScript hooks on a server you built (ScriptApp with `server`).

const resources = new Resources();
afterEach(() => resources.closeAll());

/** An http server of the test's own on 127.0.0.1:0 that answers every plain request itself. */
async function startHttpServer(
  onRequest: http.RequestListener = (_req, res) => res.end("the user's page"),
): Promise<{ httpServer: http.Server; port: number }> {
  const httpServer = http.createServer(onRequest);
  resources.add(httpServer, (server) => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  await new Promise<void>((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
  return { httpServer, port: (httpServer.address() as AddressInfo).port };
}

function quietServer(options: ConstructorParameters<typeof WebSocketServer>[0]) {
  const server = new WebSocketServer({ logger: captureLogger().logger, ...options });
  resources.add(server, (s) => s.close());
  return server;
}

async function openWs(url: string, origin?: string): Promise<WsPeer> {
  const peer = new WsPeer(new WebSocket(url, origin === undefined ? {} : { origin }));
  resources.add(peer, (p) => p.ws.terminate());
  return peer.opened();
}

const echo = {
  onMessage: (client: ServerClient, data: Buffer, isBinary: boolean) => client.send(data, isBinary),
};

describe("embedding: { server } attaches to your http server", () => {
  it("WebSocket upgrades are ours, plain requests stay yours", async () => {
    const { httpServer, port } = await startHttpServer();
    const server = quietServer({ server: httpServer }).addHooks(echo);
    const address = await server.listen();
    assert.equal(address.port, port, "listen() reports the attached server's address");
    assert.equal(server.url, `ws://127.0.0.1:${port}/`);
    const peer = await openWs(server.url);
    peer.ws.send("hello");
    assert.equal((await peer.next()).data.toString(), "hello");
    const page = await httpRequest(port, "/healthz");
    assert.equal(page.body.toString(), "the user's page", "our routes answer only if asked");
  });

  it("handleRequest answers our routes from your handler when you ask, and leaves the rest", async () => {
    let server: WebSocketServer | null = null;
    const { httpServer, port } = await startHttpServer((req, res) => {
      void server!.handleRequest(req, res).then((answered) => {
        if (!answered) res.end("yours");
      });
    });
    server = quietServer({ server: httpServer });
    await server.listen();
    const health = await httpRequest(port, "/healthz");
    assert.equal(health.status, 200);
    assert.equal(JSON.parse(health.body.toString()).status, "ok");
    assert.equal((await httpRequest(port, "/elsewhere")).body.toString(), "yours");
  });

  it("listen() waits for your server to listen; close() closes our clients and leaves your server up", async () => {
    const httpServer = http.createServer((_req, res) => res.end("still here"));
    resources.add(httpServer, (s) => new Promise<void>((resolve) => s.close(() => resolve())));
    const disconnects: number[] = [];
    const server = quietServer({ server: httpServer }).addHooks({
      onDisconnect: (_client, code) => disconnects.push(code),
    });
    const listening = server.listen();
    httpServer.listen(0, "127.0.0.1");
    const { port } = await withTimeout(listening, PATIENCE_MS, "listen on the attached server");
    const peer = await openWs(`ws://127.0.0.1:${port}/`);
    await server.close();
    assert.equal((await peer.closed).code, 1001);
    assert.deepEqual(disconnects, [1001]);
    assert.equal(httpServer.listening, true, "your server is yours to close");
    assert.equal((await httpRequest(port, "/")).body.toString(), "still here");
  });

  it("an upgrade outside our paths is left to your other upgrade listener", async () => {
    const { httpServer, port } = await startHttpServer();
    const server = quietServer({ server: httpServer, path: "/ours" }).addHooks(echo);
    const theirs = new WsServer({ noServer: true });
    resources.add(theirs, (s) => s.close());
    httpServer.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
      if (req.url === "/theirs")
        theirs.handleUpgrade(req, socket, head, (ws) => ws.send("from ws"));
    });
    await server.listen();
    const other = await openWs(`ws://127.0.0.1:${port}/theirs`);
    assert.equal((await other.next()).data.toString(), "from ws");
    const ours = await openWs(`ws://127.0.0.1:${port}/ours`);
    ours.ws.send("ours");
    assert.equal((await ours.next()).data.toString(), "ours");
    assert.equal(server.clientCount, 1);
  });

  it("an upgrade outside our paths with no other listener is refused with 404", async () => {
    const { httpServer, port } = await startHttpServer();
    quietServer({ server: httpServer, path: "/ours" });
    const result = await rawHttp(port, upgradeRequest({ path: "/nowhere" }));
    assert.equal(result.status, 404);
  });

  const made = makeCertificate();
  it("on an https server: wss:// URLs, and TLS clients connect", {
    skip: typeof made === "string" ? made : false,
  }, async () => {
    if (typeof made === "string") return;
    const httpsServer = https.createServer({ cert: made.cert, key: made.key });
    resources.add(httpsServer, (s) => new Promise<void>((resolve) => s.close(() => resolve())));
    httpsServer.listen(0, "127.0.0.1");
    const server = quietServer({ server: httpsServer }).addHooks(echo);
    const { port } = await server.listen();
    assert.equal(server.url, `wss://127.0.0.1:${port}/`);
    const client = resources.add(
      await connect(`wss://localhost:${port}/`, { ca: made.cert }),
      (c) => c.terminate(),
    );
    client.send("secret");
    assert.equal((await client.receive()).text(), "secret");
  });

  it("refuses options that contradict each other with a clear error", () => {
    const httpServer = http.createServer();
    assert.throws(() => new WebSocketServer({ server: httpServer, noServer: true }), {
      code: "ERR_WS_OPTIONS",
      message: /either server or noServer/,
    });
    assert.throws(() => new WebSocketServer({ server: httpServer, tls: { cert: "", key: "" } }), {
      code: "ERR_WS_OPTIONS",
      message: /https/,
    });
  });
});

describe("embedding: { noServer: true } + handleUpgrade", () => {
  /** Your http server, handing every upgrade to `server`; the clients it returned. */
  async function handOver(server: WebSocketServer) {
    const accepted: Array<ServerClient | null> = [];
    const callbacks: ServerClient[] = [];
    const { httpServer, port } = await startHttpServer();
    httpServer.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) =>
      accepted.push(server.handleUpgrade(req, socket, head, (client) => callbacks.push(client))),
    );
    return { port, accepted, callbacks };
  }

  it("an accepted upgrade returns the client, calls back with it, and it talks", async () => {
    const connects: ServerClient[] = [];
    const server = quietServer({ noServer: true }).addHooks({
      ...echo,
      onConnect: (client) => connects.push(client),
    });
    await server.start();
    const { port, accepted, callbacks } = await handOver(server);
    const peer = await openWs(`ws://127.0.0.1:${port}/room?x=1`);
    peer.ws.send("hi");
    assert.equal((await peer.next()).data.toString(), "hi");
    assert.equal(accepted.length, 1);
    assert.equal(accepted[0], connects[0], "the same client the onConnect hooks saw");
    assert.equal(callbacks[0], connects[0]);
    assert.equal(accepted[0]!.path, "/room");
    assert.equal(accepted[0]!.query, "x=1");
  });

  it("every check still applies: bad handshake 400, path 404, origin 403, each counted", async () => {
    const metrics = new MetricsRegistry();
    const server = quietServer({
      noServer: true,
      path: "/ws",
      allowedOrigins: ["https://good.example"],
      metrics,
    });
    const { port, accepted } = await handOver(server);
    const noKey = await rawHttp(
      port,
      upgradeRequest({ path: "/ws", headers: { "Sec-WebSocket-Key": null } }),
    );
    assert.equal(noKey.status, 400);
    assert.equal((await rawHttp(port, upgradeRequest({ path: "/other" }))).status, 404);
    const origin = await rawHttp(
      port,
      upgradeRequest({ path: "/ws", headers: { Origin: "https://evil.example" } }),
    );
    assert.equal(origin.status, 403);
    assert.deepEqual(accepted, [null, null, null], "handleUpgrade returns null when refused");
    const text = metrics.render();
    for (const status of ["400", "403", "404"])
      assert.equal(metricValue(text, "moonsocket_handshake_failures_total", { status }), 1);
    await openWs(`ws://127.0.0.1:${port}/ws`, "https://good.example");
    assert.equal(server.clientCount, 1);
  });

  it("maxConnections: one over the limit is accepted, closed with 1013, and null is returned", async () => {
    const server = quietServer({ noServer: true, maxConnections: 1 });
    const { port, accepted } = await handOver(server);
    await openWs(`ws://127.0.0.1:${port}/`);
    const second = await openWs(`ws://127.0.0.1:${port}/`);
    assert.equal((await second.closed).code, 1013);
    assert.equal(accepted.length, 2);
    assert.notEqual(accepted[0], null);
    assert.equal(accepted[1], null);
  });

  it("a server shutting down refuses with 503", async () => {
    const server = quietServer({ noServer: true });
    const { port } = await handOver(server);
    await server.close();
    assert.equal((await rawHttp(port, upgradeRequest())).status, 503);
  });

  it("listen() and address() say there is no port of our own", async () => {
    const server = quietServer({ noServer: true });
    await assert.rejects(server.listen(), { code: "ERR_WS_NO_SERVER", message: /start\(\)/ });
    assert.throws(() => server.address(), { code: "ERR_WS_NO_SERVER" });
  });

  it("start() runs the startup hooks once", async () => {
    let startups = 0;
    const server = quietServer({ noServer: true }).addHooks({ onStartup: () => void startups++ });
    await Promise.all([server.start(), server.start()]);
    assert.equal(startups, 1);
  });
});

describe("onDrain", () => {
  it("after a send reports Backpressure, onDrain follows once the buffer is empty", async () => {
    const statuses: SendStatus[] = [];
    const drained: Array<{ id: number; buffered: number }> = [];
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const server = quietServer({ port: 0, maxBufferedBytes: 1024 * 1024 }).addHooks({
      onMessage(client) {
        // Send until told to back off, as a well-behaved producer does.
        let status: SendStatus = SendStatus.Success;
        while (status === SendStatus.Success) statuses.push((status = client.send(chunk)));
      },
      onDrain: (client) => drained.push({ id: client.id, buffered: client.bufferedAmount }),
    });
    await server.listen();
    const peer = await openWs(server.url);
    peer.ws.pause();
    peer.ws.send("go");
    await waitUntil(() => statuses.at(-1) === SendStatus.Backpressure, PATIENCE_MS, "backpressure");
    peer.ws.resume();
    await waitUntil(() => drained.length === 1, PATIENCE_MS, "onDrain");
    assert.deepEqual(drained, [{ id: 0, buffered: 0 }]);
    for (let i = 0; i < statuses.length; i++) await peer.next();
  });

  it("no onDrain without backpressure", async () => {
    let drains = 0;
    const server = quietServer({ port: 0 }).addHooks({ ...echo, onDrain: () => void drains++ });
    await server.listen();
    const peer = await openWs(server.url);
    for (let i = 0; i < 3; i++) {
      peer.ws.send(`m${i}`);
      await peer.next();
    }
    assert.equal(drains, 0);
  });
});

describe("ScriptApp: a Lua script and TypeScript hooks on one server you built", () => {
  const script = fileURLToPath(
    new URL("../../../test/fixtures/callback/echo.lua", import.meta.url),
  );

  it("both act on the same connection", async () => {
    const seen: Array<{ id: number; text: string }> = [];
    const server = quietServer({ port: 0 }).addHooks({
      onMessage: (client, data) => seen.push({ id: client.id, text: data.toString() }),
    });
    const app = await ScriptApp.create({ scriptPath: script, server });
    resources.add(app, (a) => a.dispose());
    assert.deepEqual(app.servers, [server]);
    await server.listen();
    const client = resources.add(await connect(server.url), (c) => c.terminate());
    client.send("moon");
    assert.equal((await client.receive()).text(), "You said: moon", "the script answered");
    assert.deepEqual(seen, [{ id: 0, text: "moon" }], "the TypeScript hook saw it too");
  });
});
