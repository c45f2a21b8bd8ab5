/**
 * wss:// with a self-signed certificate generated at test time by openssl: our server with a
 * `ws` client, a `ws` server with our client, and our client with our server.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, describe, it } from "node:test";
import tls from "node:tls";
import WebSocket, { WebSocketServer as WsServer } from "ws";
import { connect } from "../../src/client/client.js";
import {
  metricValue,
  PATIENCE_MS,
  Resources,
  rawHttp,
  startEchoServer,
  WsPeer,
  withTimeout,
} from "../helpers/net-helpers.js";
import { makeCertificate } from "../helpers/tls-cert.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

/** GET /metrics over https, trusting any certificate (the test's own). */
function httpsMetrics(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: "127.0.0.1", port, path: "/metrics", rejectUnauthorized: false, agent: false },
      (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => (body += chunk.toString()));
        res.on("end", () => resolve(body));
      },
    );
    req.on("error", reject);
  });
}

const made = makeCertificate();
const skip = typeof made === "string" ? made : false;

describe("wss:// with a self-signed certificate", { skip }, () => {
  let cert: Buffer;
  let key: Buffer;
  before(() => {
    if (typeof made === "string") return;
    ({ cert, key } = made);
  });
  after(() => {
    if (typeof made !== "string") rmSync(made.dir, { recursive: true, force: true });
  });

  it("our server serves wss:// to a ws client that trusts the certificate", async () => {
    const { server, port } = await startEchoServer(resources, { tls: { cert, key } });
    assert.match(server.url, /^wss:\/\/127\.0\.0\.1:\d+\/$/);
    const peer = new WsPeer(new WebSocket(`wss://localhost:${port}/`, { ca: cert }));
    resources.add(peer, (p) => p.ws.terminate());
    await peer.opened();
    peer.ws.send("over TLS ✓");
    assert.equal((await peer.next()).data.toString(), "over TLS ✓");
    peer.ws.close(1000, "done");
    assert.equal((await peer.waitClosed()).wasClean, true);
  });

  it("our client connects to our wss:// server with ca and echoes text and binary", async () => {
    const { port } = await startEchoServer(resources, {
      tls: { cert, key },
      perMessageDeflate: true,
    });
    const client = resources.add(
      await connect(`wss://localhost:${port}/`, { ca: cert, perMessageDeflate: true }),
      (c) => c.terminate(),
    );
    client.send("secure");
    assert.equal((await client.receive()).text(), "secure");
    const big = Buffer.alloc(200_000, 3);
    client.send(big);
    assert.ok((await client.receive()).data.equals(big));
    assert.deepEqual(await withTimeout(client.close(1000, "done"), PATIENCE_MS, "close"), {
      code: 1000,
      reason: "done",
      wasClean: true,
    });
  });

  it("our client connects to a ws server over https", async () => {
    const httpsServer = https.createServer({ cert, key });
    const wss = new WsServer({ server: httpsServer });
    wss.on("connection", (socket) =>
      socket.on("message", (data, isBinary) => socket.send(data as Buffer, { binary: isBinary })),
    );
    resources.add(httpsServer, (s) => {
      for (const client of wss.clients) client.terminate();
      return new Promise<void>((resolve) => s.close(() => resolve()));
    });
    await new Promise<void>((resolve) => httpsServer.listen(0, "127.0.0.1", () => resolve()));
    const { port } = httpsServer.address() as AddressInfo;
    const client = resources.add(await connect(`wss://localhost:${port}/`, { ca: cert }), (c) =>
      c.terminate(),
    );
    client.send(Buffer.from([0, 255, 1]));
    assert.deepEqual([...(await client.receive()).data], [0, 255, 1]);
  });

  it("cuts a connection that never starts TLS after handshakeTimeout, logged and counted", async () => {
    const { port, log } = await startEchoServer(resources, {
      tls: { cert, key },
      handshakeTimeout: 300,
    });
    const res = await rawHttp(port, "", 2500);
    assert.ok(res.closed, "the server closed the silent connection");
    assert.ok(res.elapsed >= 250, `closed after ${res.elapsed} ms`);
    await log.waitForLine(/WARN {2}bad HTTP request status=408 error=ERR_TLS_HANDSHAKE_TIMEOUT/);
    const metrics = await httpsMetrics(port);
    assert.equal(
      metricValue(metrics, "moonsocket_limit_closes_total", { limit: "handshake_timeout" }),
      1,
    );
  });

  it("cuts a client that finishes TLS but stalls in the HTTP request (408)", async () => {
    const { port } = await startEchoServer(resources, {
      tls: { cert, key },
      handshakeTimeout: 300,
    });
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca: cert });
    resources.add(socket, (s) => s.destroy());
    let response = "";
    socket.on("data", (chunk: Buffer) => (response += chunk.toString("latin1")));
    await new Promise<void>((resolve) => socket.once("secureConnect", () => resolve()));
    socket.write("GET / HTTP/1.1\r\nHost: localhost\r\n");
    await withTimeout(
      new Promise((resolve) => socket.once("close", resolve)),
      10_000,
      "the server to cut the stalled request",
    );
    assert.match(response, /^HTTP\/1\.1 408/);
  });

  it("our client refuses an untrusted certificate", async () => {
    const { port } = await startEchoServer(resources, { tls: { cert, key } });
    await assert.rejects(connect(`wss://localhost:${port}/`), /self[- ]signed|certificate/i);
  });
});
