/**
 * Every limit of the server, as a user sees it: the close code or HTTP status, the log line,
 * and the counter on /metrics.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import WebSocket from "ws";
import type { ServerClient } from "../../src/server/server-client.js";
import {
  buildFrame,
  closePayload,
  fetchMetrics,
  metricValue,
  OP,
  PATIENCE_MS,
  RawClient,
  Resources,
  rawHttp,
  sleep,
  startEchoServer,
  startServer,
  upgradeRequest,
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

async function limitCount(port: number, limit: string): Promise<number> {
  return metricValue(await fetchMetrics(port), "moonsocket_limit_closes_total", { limit });
}

describe("maxPayload", () => {
  it("accepts a message of exactly maxPayload bytes", async () => {
    const { url } = await startEchoServer(resources, { maxPayload: 64 * 1024 });
    const peer = await openWs(url);
    peer.ws.send(Buffer.alloc(64 * 1024, 1));
    assert.equal((await peer.next()).data.length, 64 * 1024);
  });

  it("closes with 1009 for one byte more, logs it and counts it", async () => {
    const { url, port, log } = await startEchoServer(resources, { maxPayload: 64 * 1024 });
    const peer = await openWs(url);
    peer.ws.send(Buffer.alloc(64 * 1024 + 1, 1));
    const info = await peer.waitClosed();
    assert.equal(info.code, 1009);
    assert.match(info.reason, /65536-byte limit/);
    await log.waitForLine(
      /INFO {2}protocol error, closing id=0 code=1009 reason="message exceeds the 65536-byte limit"/,
    );
    const metrics = await fetchMetrics(port);
    assert.equal(
      metricValue(metrics, "moonsocket_limit_closes_total", { limit: "max_payload" }),
      1,
    );
    assert.equal(metricValue(metrics, "moonsocket_protocol_errors_total", { code: "1009" }), 1);
  });

  it("counts fragments together: a fragmented message over the limit gets 1009", async () => {
    const { url } = await startEchoServer(resources, { maxPayload: 10_000 });
    const peer = await openWs(url);
    for (let i = 0; i < 3; i++) peer.ws.send(Buffer.alloc(4000), { fin: i === 2 });
    assert.equal((await peer.waitClosed()).code, 1009);
  });

  it("with permessage-deflate, measures the inflated size: a tiny compressed frame over the limit gets 1009", async () => {
    const { url, port, log } = await startEchoServer(resources, {
      maxPayload: 1024 * 1024,
      perMessageDeflate: true,
    });
    const peer = await openWs(url, { perMessageDeflate: true });
    assert.match(peer.extensions, /permessage-deflate/);
    // Within the limit: goes through (and is compressed on the wire to a few hundred bytes).
    peer.ws.send(Buffer.alloc(1024 * 1024));
    assert.equal((await peer.next()).data.length, 1024 * 1024);
    peer.ws.send(Buffer.alloc(1024 * 1024 + 1));
    const info = await peer.waitClosed();
    assert.equal(info.code, 1009);
    await log.waitForLine(/protocol error, closing id=0 code=1009/);
    assert.equal(await limitCount(port, "max_payload"), 1);
  });
});

describe("maxConnections", () => {
  it("closes the client over the limit with 1013, logs it and counts it; a slot freed is usable again", async () => {
    const { server, url, port, log } = await startEchoServer(resources, { maxConnections: 2 });
    const a = await openWs(url);
    await openWs(url);
    const third = await openWs(url);
    const info = await third.waitClosed();
    assert.equal(info.code, 1013);
    assert.equal(info.reason, "server is full, try again later");
    await log.waitForLine(/WARN {2}connection refused: server full limit=2 remote=127\.0\.0\.1/);
    assert.equal(await limitCount(port, "max_connections"), 1);
    a.ws.close();
    await waitUntil(() => server.clientCount === 1, PATIENCE_MS, "a slot to free up");
    const again = await openWs(url);
    again.ws.send("in");
    assert.equal((await again.next()).data.toString(), "in");
  });
});

describe("allowedOrigins", () => {
  it("refuses another origin with 403, logs it and counts it; allowed and absent origins connect", async () => {
    const { url, port, log } = await startEchoServer(resources, {
      allowedOrigins: ["https://good.example"],
    });
    const bad = new WsPeer(new WebSocket(url, { origin: "https://evil.example" }));
    await assert.rejects(bad.opened(), { status: 403 });
    await log.waitForLine(
      /WARN {2}handshake refused status=403 reason="origin https:\/\/evil\.example is not allowed"/,
    );
    const metrics = await fetchMetrics(port);
    assert.equal(metricValue(metrics, "moonsocket_limit_closes_total", { limit: "origin" }), 1);
    assert.equal(metricValue(metrics, "moonsocket_handshake_failures_total", { status: "403" }), 1);
    await openWs(url, { origin: "https://good.example" });
    await openWs(url);
  });
});

describe("request head limits", () => {
  it("answers 431 to a header block over maxHeaderBytes, logs it and counts it", async () => {
    const { port, log } = await startEchoServer(resources, { maxHeaderBytes: 4096 });
    const res = await rawHttp(port, upgradeRequest({ headers: { "X-Padding": "p".repeat(8000) } }));
    assert.equal(res.status, 431, res.text);
    await log.waitForLine(/WARN {2}bad HTTP request status=431 error=HPE_HEADER_OVERFLOW/);
    const metrics = await fetchMetrics(port);
    assert.equal(
      metricValue(metrics, "moonsocket_limit_closes_total", { limit: "header_size" }),
      1,
    );
    assert.equal(metricValue(metrics, "moonsocket_handshake_failures_total", { status: "431" }), 1);
  });

  it("answers 431 to more than maxHeaderCount headers, logs it and counts it", async () => {
    const { port, log } = await startEchoServer(resources, { maxHeaderCount: 20 });
    const many: Record<string, string> = {};
    for (let i = 0; i < 30; i++) many[`X-H${i}`] = String(i);
    const res = await rawHttp(port, upgradeRequest({ headers: many }));
    assert.equal(res.status, 431, res.text);
    await log.waitForLine(
      /WARN {2}handshake refused status=431 reason="more than 20 request headers"/,
    );
    assert.equal(await limitCount(port, "header_count"), 1);
  });

  it("accepts exactly maxHeaderCount headers", async () => {
    const { port } = await startEchoServer(resources, { maxHeaderCount: 10 });
    const extra: Record<string, string> = {};
    for (let i = 0; i < 5; i++) extra[`X-H${i}`] = String(i); // 5 standard + 5 extra = 10
    const res = await rawHttp(port, upgradeRequest({ headers: extra }), 300);
    assert.equal(res.status, 101, res.text);
  });
});

describe("handshakeTimeout", () => {
  it("cuts a client that sends half a request and stalls (408), logs it and counts it", async () => {
    const { port, log, url } = await startEchoServer(resources, { handshakeTimeout: 300 });
    const request = upgradeRequest();
    const res = await rawHttp(port, request.slice(0, request.length >> 1), 2500);
    assert.ok(res.closed, "the server closed the stalled connection");
    assert.ok(res.elapsed >= 250, `closed after ${res.elapsed} ms`);
    assert.ok(res.status === 408 || res.status === 0, res.text);
    await log.waitForLine(/WARN {2}bad HTTP request status=408 error=ERR_HTTP_REQUEST_TIMEOUT/);
    assert.equal(await limitCount(port, "handshake_timeout"), 1);
    // A prompt client is unaffected.
    const peer = await openWs(url);
    await sleep(500);
    peer.ws.send("still open");
    assert.equal((await peer.next()).data.toString(), "still open");
  });

  it("cuts many half-open connections and keeps serving", async () => {
    const { port, url } = await startEchoServer(resources, { handshakeTimeout: 300 });
    const stalled = Array.from({ length: 100 }, () =>
      rawHttp(port, "GET / HTTP/1.1\r\nHost: x\r\n", 3000),
    );
    const peer = await openWs(url);
    peer.ws.send("served");
    assert.equal((await peer.next()).data.toString(), "served");
    const results = await Promise.all(stalled);
    assert.ok(
      results.every((r) => r.closed),
      "every stalled connection was closed",
    );
  });
});

describe("idle timeout and automatic pings", () => {
  it("keeps a ws client that answers pings, across several idle timeouts", async () => {
    // An idle timeout far above the ping interval: the pong has 1.1 s to come back, even on a
    // busy machine where this process (server and peer alike) waits for a core.
    const { url, port } = await startEchoServer(resources, {
      pingInterval: 100,
      idleTimeout: 1200,
    });
    const peer = await openWs(url);
    let pings = 0;
    peer.ws.on("ping", () => pings++);
    await sleep(3000);
    assert.equal(peer.closeInfo, null, "still connected");
    assert.ok(pings >= 2, `got ${pings} pings`);
    peer.ws.send("alive");
    assert.equal((await peer.next()).data.toString(), "alive");
    assert.equal(await limitCount(port, "idle"), 0);
  });

  it("does not count a long stall of the server's event loop as the peers' idle time", async () => {
    const { url, port } = await startEchoServer(resources, {
      pingInterval: 100,
      idleTimeout: 1200,
    });
    const peer = await openWs(url);
    await new Promise<void>((resolve) => peer.ws.once("ping", () => resolve()));
    await sleep(30); // the server reads the pong: nothing is left in flight
    // Twice the idle timeout with the loop blocked (a long handler, a process starved of CPU):
    // nobody, server or peer, could say anything meanwhile.
    const until = Date.now() + 2500;
    while (Date.now() < until);
    await sleep(400);
    assert.equal(peer.closeInfo, null, "still connected");
    peer.ws.send("after the stall");
    assert.equal((await peer.next()).data.toString(), "after the stall");
    assert.equal(await limitCount(port, "idle"), 0);
  });

  it("does not close a client for idleness when it was the server that stalled", async () => {
    const { port } = await startEchoServer(resources, { pingInterval: 0, idleTimeout: 200 });
    const raw = resources.add(await RawClient.connect(port), (r) => r.destroy());
    // A message reaches the server's socket buffer; then the event loop is blocked past the idle
    // timeout (a long handler, a starved process), so the expired sweep runs before the read.
    raw.socket.write(buildFrame({ opcode: OP.text, payload: Buffer.from("here") }));
    const until = Date.now() + 400;
    while (Date.now() < until);
    const frame = await raw.nextFrame();
    assert.equal(frame.opcode, OP.text);
    assert.equal(frame.payload.toString(), "here");
    assert.equal(await limitCount(port, "idle"), 0);
  });

  it("pings a silent raw client, then closes it with 1008; logged and counted", async () => {
    const { port, log } = await startServer(resources, { pingInterval: 150, idleTimeout: 450 });
    // From before the connection: the server's idle clock cannot have started earlier.
    const started = Date.now();
    const raw = resources.add(await RawClient.connect(port), (r) => r.destroy());
    const result = await raw.readUntilClose();
    const elapsed = Date.now() - started;
    assert.ok(
      result.frames.some((f) => f.opcode === OP.ping),
      "a ping came first",
    );
    assert.equal(result.code, 1008);
    assert.match(result.reason, /idle for 450 ms/);
    assert.ok(elapsed >= 400, `closed after ${elapsed} ms`);
    await log.waitForLine(/WARN {2}limit exceeded, closing id=0 limit=idle/);
    assert.equal(await limitCount(port, "idle"), 1);
  });
});

describe("closeTimeout", () => {
  it("cuts a raw client that never answers the server's close, logged and counted", async () => {
    const clients: ServerClient[] = [];
    const { port, log } = await startServer(resources, { closeTimeout: 300 }, (server) =>
      server.addHooks({ onConnect: (client) => clients.push(client) }),
    );
    const raw = resources.add(await RawClient.connect(port), (r) => r.destroy());
    await waitUntil(() => clients.length === 1, PATIENCE_MS, "the client");
    // From before the close: the server's close timer cannot have started earlier.
    const started = Date.now();
    clients[0]!.close(1000, "bye");
    const result = await raw.readUntilClose();
    assert.equal(result.code, 1000);
    await raw.waitForSocketClose();
    assert.ok(Date.now() - started >= 250, "cut before the close timeout");
    await log.waitForLine(
      /WARN {2}limit exceeded, closing id=0 limit=close-timeout detail="peer did not finish closing within 300 ms"/,
    );
    assert.equal(await limitCount(port, "close_timeout"), 1);
  });

  it("a raw client that answers the close is closed cleanly and promptly (server closes TCP first)", async () => {
    const clients: ServerClient[] = [];
    // A close timeout far longer than the wait below: the TCP close must not wait for it.
    const { port, log } = await startServer(resources, { closeTimeout: 60_000 }, (server) =>
      server.addHooks({ onConnect: (client) => clients.push(client) }),
    );
    const raw = resources.add(await RawClient.connect(port), (r) => r.destroy());
    await waitUntil(() => clients.length === 1, PATIENCE_MS, "the client");
    clients[0]!.close(4001, "done");
    assert.equal((await raw.readUntilClose()).code, 4001);
    await raw.write(buildFrame({ opcode: OP.close, payload: closePayload(4001) }));
    await raw.waitForSocketClose();
    assert.equal(await limitCount(port, "close_timeout"), 0);
    await log.waitForLine(/client disconnected id=0 code=4001 .*clean=true/);
  });
});

describe("backpressure (maxBufferedBytes)", () => {
  it("closes a client that never reads with 1008, logged and counted, with the send buffer bounded", async () => {
    const maxBufferedBytes = 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let maxSeen = 0;
    let sent = 0;
    const statuses = new Set<number>();
    const { server, port, log } = await startServer(resources, {
      maxBufferedBytes,
      closeTimeout: 3000,
    });
    const raw = resources.add(await RawClient.connect(port), (r) => r.destroy());
    raw.pause();
    await waitUntil(() => server.clientCount === 1, PATIENCE_MS, "the client");
    const client = server.getClient(0)!;
    const memoryBefore = process.memoryUsage().arrayBuffers;
    // The application keeps sending as fast as it can, ignoring the Backpressure status.
    await new Promise<void>((resolve) => {
      const pump = () => {
        for (let i = 0; i < 16; i++) {
          const status = client.send(chunk);
          statuses.add(status);
          if (status === 2 /* Dropped */) return resolve();
          sent += chunk.length;
          maxSeen = Math.max(maxSeen, client.bufferedAmount);
        }
        setImmediate(pump);
      };
      pump();
    });
    const grown = process.memoryUsage().arrayBuffers - memoryBefore;
    await log.waitForLine(
      /WARN {2}limit exceeded, closing id=0 limit=backpressure detail="send buffer over 1048576 bytes: the peer is not reading"/,
    );
    assert.equal(await limitCount(port, "backpressure"), 1);
    // Bounded: the unsent data never exceeded the limit by more than one burst of sends.
    assert.ok(maxSeen < maxBufferedBytes + 17 * chunk.length, `buffered up to ${maxSeen} bytes`);
    assert.ok(grown < 64 * 1024 * 1024, `memory grew by ${grown} bytes`);
    assert.ok(sent > maxBufferedBytes, "the kernel buffers filled first");
    assert.deepEqual(
      [...statuses].sort(),
      [0, 1, 2],
      "send said Success, then Backpressure, then Dropped",
    );
    // The client now reads: everything already handed to the socket, then the close frame 1008.
    raw.resume();
    const result = await raw.readUntilClose();
    assert.equal(result.code, 1008);
    assert.match(result.reason, /send buffer over/);
  });
});
