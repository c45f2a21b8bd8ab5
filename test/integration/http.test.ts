/**
 * The plain-HTTP side of the server's port: static files (with no way out of the folder),
 * `/healthz`, `/metrics`, 404s, and refused upgrade requests with their status, log line and
 * counter.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import WebSocket from "ws";
import {
  fetchMetrics,
  httpRequest,
  metricValue,
  PATIENCE_MS,
  Resources,
  rawHttp,
  startEchoServer,
  startServer,
  upgradeRequest,
  WsPeer,
  waitUntil,
} from "../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

describe("static files", () => {
  let root: string;
  let staticDir: string;
  before(() => {
    root = mkdtempSync(path.join(tmpdir(), "moonsocket-static-"));
    staticDir = path.join(root, "public");
    mkdirSync(path.join(staticDir, "js"), { recursive: true });
    writeFileSync(path.join(staticDir, "index.html"), "<!doctype html><title>chat</title>");
    writeFileSync(path.join(staticDir, "style.css"), "body { color: red }");
    writeFileSync(path.join(staticDir, "js", "app.js"), "console.log('hi')");
    writeFileSync(path.join(staticDir, "data.json"), '{"a":1}');
    writeFileSync(path.join(staticDir, "logo.png"), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    writeFileSync(path.join(staticDir, ".env"), "SECRET=1");
    writeFileSync(path.join(root, "secret.txt"), "TOP SECRET outside the static folder");
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const types: Array<[string, string, string]> = [
    ["/", "text/html; charset=utf-8", "<!doctype html><title>chat</title>"],
    ["/index.html", "text/html; charset=utf-8", "<!doctype html><title>chat</title>"],
    ["/style.css", "text/css; charset=utf-8", "body { color: red }"],
    ["/js/app.js", "text/javascript; charset=utf-8", "console.log('hi')"],
    ["/data.json", "application/json; charset=utf-8", '{"a":1}'],
    ["/logo.png", "image/png", "\x89PNG"],
  ];
  for (const [urlPath, type, body] of types) {
    it(`serves ${urlPath} as ${type}`, async () => {
      const { port } = await startServer(resources, { staticDir });
      const res = await httpRequest(port, urlPath);
      assert.equal(res.status, 200);
      assert.equal(res.headers["content-type"], type);
      assert.equal(res.body.toString("latin1"), body);
    });
  }

  it("redirects a directory without its trailing slash", async () => {
    const { port } = await startServer(resources, { staticDir });
    const res = await httpRequest(port, "/js");
    assert.equal(res.status, 301);
    assert.equal(res.headers.location, "/js/");
  });

  const hostile = [
    "/../secret.txt",
    "/js/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/..%2fsecret.txt",
    "/%2e%2e%2fsecret.txt",
    "/js/..%5c..%5csecret.txt",
    "/.env",
    "/%2eenv",
    "/index.html%00.png",
  ];
  for (const urlPath of hostile) {
    it(`never serves ${urlPath} (400 or 404)`, async () => {
      const { port } = await startServer(resources, { staticDir });
      // Raw HTTP, so that no client library normalises the path first.
      const res = await rawHttp(
        port,
        `GET ${urlPath} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      assert.ok(res.status === 400 || res.status === 404, `status ${res.status}`);
      assert.doesNotMatch(res.text, /TOP SECRET|SECRET=1/);
    });
  }

  it("answers 404 for a missing file", async () => {
    const { port } = await startServer(resources, { staticDir });
    const res = await httpRequest(port, "/nope.html");
    assert.equal(res.status, 404);
  });

  it("still accepts WebSocket upgrades on the same port", async () => {
    const { url } = await startEchoServer(resources, { staticDir });
    const peer = new WsPeer(new WebSocket(url));
    resources.add(peer, (p) => p.ws.terminate());
    await peer.opened();
    peer.ws.send("alongside static files");
    assert.equal((await peer.next()).data.toString(), "alongside static files");
  });
});

describe("health, metrics and 404", () => {
  it("/healthz answers JSON with the status and the connection count", async () => {
    const { server, port, url } = await startServer(resources);
    const peer = new WsPeer(new WebSocket(url));
    resources.add(peer, (p) => p.ws.terminate());
    await peer.opened();
    await waitUntil(() => server.clientCount === 1, PATIENCE_MS, "the client");
    const res = await httpRequest(port, "/healthz");
    assert.equal(res.status, 200);
    assert.equal(res.headers["content-type"], "application/json");
    const body = JSON.parse(res.body.toString()) as {
      status: string;
      connections: number;
      uptimeSeconds: number;
    };
    assert.equal(body.status, "ok");
    assert.equal(body.connections, 1);
    assert.equal(typeof body.uptimeSeconds, "number");
  });

  it("/metrics answers Prometheus text with the server's counters", async () => {
    const { server, port, url } = await startEchoServer(resources);
    const peer = new WsPeer(new WebSocket(url));
    resources.add(peer, (p) => p.ws.terminate());
    await peer.opened();
    peer.ws.send("12345");
    await peer.next();
    const res = await httpRequest(port, "/metrics");
    assert.equal(res.status, 200);
    assert.equal(res.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    const text = res.body.toString();
    assert.match(text, /^# HELP moonsocket_connections /m);
    assert.match(text, /^# TYPE moonsocket_connections gauge$/m);
    assert.match(text, /^# TYPE moonsocket_connections_total counter$/m);
    assert.equal(metricValue(text, "moonsocket_connections"), 1);
    assert.equal(metricValue(text, "moonsocket_connections_total"), 1);
    assert.equal(metricValue(text, "moonsocket_messages_received_total"), 1);
    assert.equal(metricValue(text, "moonsocket_received_bytes_total"), 5);
    assert.equal(
      metricValue(text, "moonsocket_messages_sent_total"),
      1,
      "the echo counts as a message sent",
    );
    peer.ws.close();
    await peer.waitClosed();
    await waitUntil(() => server.clientCount === 0, PATIENCE_MS, "the server to see the close");
    const after = await fetchMetrics(port);
    assert.equal(metricValue(after, "moonsocket_connections"), 0);
    assert.equal(metricValue(after, "moonsocket_connections_total"), 1);
  });

  it("answers 404 for an unknown path", async () => {
    const { port } = await startServer(resources);
    const res = await httpRequest(port, "/no/such/page");
    assert.equal(res.status, 404);
    assert.equal(res.body.toString(), "Not Found\n");
  });

  it("answers 404 to an upgrade to a path that is not a WebSocket endpoint, logged and counted", async () => {
    const { port, url, log } = await startEchoServer(resources, { path: ["/ws", "/chat"] });
    const refused = new WsPeer(new WebSocket(`${url}elsewhere`));
    await assert.rejects(refused.opened(), { status: 404 });
    await log.waitForLine(
      /WARN {2}handshake refused status=404 reason="no WebSocket endpoint at \/elsewhere"/,
    );
    assert.equal(
      metricValue(await fetchMetrics(port), "moonsocket_handshake_failures_total", {
        status: "404",
      }),
      1,
    );
    for (const endpoint of ["ws", "chat?room=1"]) {
      const peer = new WsPeer(new WebSocket(`${url}${endpoint}`));
      resources.add(peer, (p) => p.ws.terminate());
      await peer.opened();
      peer.ws.send(endpoint);
      assert.equal((await peer.next()).data.toString(), endpoint);
    }
  });
});

describe("refused handshakes", () => {
  const cases: Array<{
    name: string;
    request: string;
    status: number;
    reason: RegExp;
    header?: RegExp;
  }> = [
    {
      name: "a POST",
      request: upgradeRequest({ method: "POST" }),
      status: 405,
      reason: /must use GET/,
      header: /^Allow: GET$/m,
    },
    {
      name: "a missing Sec-WebSocket-Key",
      request: upgradeRequest({ headers: { "Sec-WebSocket-Key": null } }),
      status: 400,
      reason: /Sec-WebSocket-Key/,
    },
    {
      name: "a Sec-WebSocket-Key that is not 16 bytes of base64",
      request: upgradeRequest({ headers: { "Sec-WebSocket-Key": "c2hvcnQ=" } }),
      status: 400,
      reason: /Sec-WebSocket-Key/,
    },
    {
      name: "Sec-WebSocket-Version 12",
      request: upgradeRequest({ headers: { "Sec-WebSocket-Version": "12" } }),
      status: 426,
      reason: /Sec-WebSocket-Version 12/,
      header: /^Sec-WebSocket-Version: 13$/m,
    },
    {
      name: "a missing Sec-WebSocket-Version",
      request: upgradeRequest({ headers: { "Sec-WebSocket-Version": null } }),
      status: 426,
      reason: /Sec-WebSocket-Version/,
      header: /^Sec-WebSocket-Version: 13$/m,
    },
    {
      name: "an Upgrade header other than websocket",
      request: upgradeRequest({ headers: { Upgrade: "h2c" } }),
      status: 400,
      reason: /Upgrade header/,
    },
    {
      name: "a missing Upgrade header",
      request: upgradeRequest({ headers: { Upgrade: null } }),
      status: 400,
      reason: /Upgrade header/,
    },
    {
      name: "a missing Connection: Upgrade",
      request: upgradeRequest({ headers: { Connection: "keep-alive" } }),
      status: 400,
      reason: /Connection header/,
    },
    {
      name: "HTTP/1.0",
      request: upgradeRequest().replace("HTTP/1.1", "HTTP/1.0"),
      status: 400,
      reason: /HTTP\/1\.1/,
    },
    {
      name: "a malformed Sec-WebSocket-Extensions header",
      request: upgradeRequest({
        headers: { "Sec-WebSocket-Extensions": 'permessage-deflate; x="unterminated' },
      }),
      status: 400,
      reason: /Sec-WebSocket-Extensions/,
    },
  ];
  for (const c of cases) {
    it(`answers ${c.status} to ${c.name}, logs it and counts it`, async () => {
      const { port, log } = await startEchoServer(resources, { perMessageDeflate: true });
      const res = await rawHttp(port, c.request);
      assert.equal(res.status, c.status, res.text);
      assert.ok(res.closed, "the server closes the connection");
      const [, body = ""] = res.text.split("\r\n\r\n");
      assert.match(body, c.reason);
      if (c.header) assert.match(res.text, c.header);
      await log.waitForLine(
        new RegExp(`WARN  (handshake refused|bad HTTP request) status=${c.status}`),
      );
      assert.equal(
        metricValue(await fetchMetrics(port), "moonsocket_handshake_failures_total", {
          status: String(c.status),
        }),
        1,
      );
    });
  }

  it("answers 400 to garbage bytes instead of a handshake and keeps serving", async () => {
    const { port, url, log } = await startEchoServer(resources);
    const res = await rawHttp(port, Buffer.from("\x00\x01\x02\xff garbage \r\n\r\n", "latin1"));
    assert.equal(res.status, 400);
    await log.waitForLine(/WARN {2}bad HTTP request status=400/);
    assert.equal(
      metricValue(await fetchMetrics(port), "moonsocket_handshake_failures_total", {
        status: "400",
      }),
      1,
    );
    const peer = new WsPeer(new WebSocket(url));
    resources.add(peer, (p) => p.ws.terminate());
    await peer.opened();
    peer.ws.send("ok");
    assert.equal((await peer.next()).data.toString(), "ok");
  });
});
