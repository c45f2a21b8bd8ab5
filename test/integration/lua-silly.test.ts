/**
 * The coroutine style (silly): the reference document's scripts run unmodified (server
 * echo, client, broadcast through a channel, WSS with a certificate made by openssl), and
 * test/fixtures/silly/api.lua exercises the rest of the API over real sockets with `ws` peers.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net, { type AddressInfo } from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { WebSocketServer as WsServer } from "ws";
import { LuaHost } from "../../src/lua/host/lua-host.js";
import {
  CoroutineStyle,
  type CoroutineStyleOptions,
} from "../../src/lua/styles/coroutine/coroutine-style.js";
import { parseAddress } from "../../src/lua/styles/coroutine/http-helpers.js";
import { MetricsRegistry } from "../../src/observability/metrics.js";
import type { ServerOptions } from "../../src/server/server-options.js";
import {
  captureLogger,
  httpRequest,
  type LogCapture,
  PATIENCE_MS,
  rawHttp,
  upgradeRequest,
  waitUntil,
  withTimeout,
} from "../helpers/net-helpers.js";
import { openClient, startScript, TestClient } from "../helpers/script-server.js";
import { makeCertificate } from "../helpers/tls-cert.js";

const fixture = (name: string) =>
  fileURLToPath(new URL(`../../../test/fixtures/silly/${name}`, import.meta.url));

/** A coroutine-style script on port 0 with its log captured. */
interface Silly {
  style: CoroutineStyle;
  host: LuaHost;
  log: LogCapture;
  port: number;
  url: string;
  stop(): Promise<void>;
}

async function startSilly(
  scriptPath: string,
  options: {
    cpuBudgetMs?: number;
    maxOutgoing?: number;
    extra?: CoroutineStyleOptions;
    server?: ServerOptions;
    listen?: boolean;
  } = {},
): Promise<Silly> {
  const log = captureLogger("debug");
  const metrics = new MetricsRegistry();
  const host = await LuaHost.create({
    scriptPath,
    logger: log.logger,
    metrics,
    ...(options.cpuBudgetMs !== undefined ? { cpuBudgetMs: options.cpuBudgetMs } : {}),
    ...(options.maxOutgoing !== undefined ? { maxOutgoing: options.maxOutgoing } : {}),
  });
  const style = new CoroutineStyle(
    host,
    {
      port: 0,
      host: "127.0.0.1",
      closeTimeout: 1000,
      logger: log.logger,
      metrics,
      ...options.server,
    },
    options.extra,
  );
  style.load();
  if (options.listen !== false) for (const server of style.servers) await server.listen();
  const first = options.listen !== false ? style.servers[0] : undefined;
  const port = first === undefined ? 0 : first.address().port;
  return {
    style,
    host,
    log,
    port,
    url: first === undefined ? "" : first.url,
    async stop() {
      await Promise.all(style.servers.map((server) => server.close()));
      style.dispose();
      host.close();
    },
  };
}

/** A `ws` server on a free port for the scripts' client side. */
async function startWsServer(
  options: { server?: https.Server } = {},
): Promise<{ wss: WsServer; port: number; close(): Promise<void> }> {
  let wss: WsServer;
  let port: number;
  if (options.server !== undefined) {
    const server = options.server;
    wss = new WsServer({ server });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  } else {
    wss = new WsServer({ host: "127.0.0.1", port: 0 });
    await new Promise<void>((resolve) => wss.once("listening", resolve));
    port = (wss.address() as AddressInfo).port;
  }
  return {
    wss,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => {
          options.server?.close();
          resolve();
        });
      }),
  };
}

/** Sends a command to /ws/api and returns the text answer. */
function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

async function command(client: TestClient, line: string, ms = PATIENCE_MS): Promise<string> {
  client.send(line);
  return client.next(ms);
}

// ---- the reference document ------------------------------------------------------------

describe("silly.net.websocket reference: server-side upgrade and echo", () => {
  it("runs through moonsocket serve's path: upgrade, 'Echo: ' on text, plain HTTP answered", async () => {
    const script = await startScript(fixture("upgrade-echo.lua"));
    try {
      assert.equal(script.app.style, "coroutine");
      assert.match(script.log(), /WebSocket server listening on :8080/);
      const client = await openClient(script.url);
      client.send("Hello");
      assert.equal(await client.next(), "Echo: Hello");
      // Binary messages get no answer in the example; the next text still does.
      client.send(Buffer.from([0, 1, 2]), true);
      client.send("again");
      assert.equal(await client.next(), "Echo: again");
      client.close();
      assert.equal((await client.closed).code, 1000);
      const port = new URL(script.url).port;
      const res = await httpRequest(Number(port), "/some/page");
      assert.equal(res.status, 200);
      assert.equal(res.headers["content-type"], "text/plain");
      assert.equal(res.body.toString(), "Not a WebSocket request");
    } finally {
      await script.stop();
    }
  });
});

describe("silly.net.websocket reference: client side", () => {
  it("connect, write text, read the answer, close", async () => {
    const peer = await startWsServer();
    const received: string[] = [];
    const closed = new Promise<number>((resolve) => {
      peer.wss.on("connection", (ws) => {
        ws.on("message", (data) => {
          received.push(data.toString());
          ws.send(`Echo: ${data.toString()}`);
        });
        ws.on("close", (code) => resolve(code));
      });
    });
    const silly = await startSilly(fixture("client.lua"), {
      extra: { resolveUrl: (url) => url.replace("127.0.0.1:8080", `127.0.0.1:${peer.port}`) },
    });
    try {
      // print writes its arguments separated by spaces.
      await silly.log.waitForLine(/Received: Echo: Hello, Server!/);
      assert.deepEqual(received, ["Hello, Server!"]);
      assert.equal(await withTimeout(closed, PATIENCE_MS, "the script's close"), 1000);
      assert.match(silly.log.lines().join("\n"), /Connected to WebSocket server/);
    } finally {
      await silly.stop();
      await peer.close();
    }
  });

  it("the read loop prints text, answers pings with pongs and stops at close", async () => {
    const peer = await startWsServer();
    const pongs: string[] = [];
    peer.wss.on("connection", (ws) => {
      ws.on("pong", (data) => pongs.push(data.toString()));
      ws.send("one");
      ws.send("two");
      ws.ping("p1");
      setTimeout(() => ws.close(1000, "done"), 100);
    });
    const silly = await startSilly(fixture("client-read-loop.lua"), {
      extra: { resolveUrl: (url) => url.replace("127.0.0.1:8080", `127.0.0.1:${peer.port}`) },
    });
    try {
      await silly.log.waitForLine(/Text:\s*one/);
      await silly.log.waitForLine(/Text:\s*two/);
      await waitUntil(() => pongs.length >= 1, PATIENCE_MS, "a pong");
      assert.ok(pongs.every((p) => p === "p1"));
      await waitUntil(() => peer.wss.clients.size === 0, PATIENCE_MS, "the connection to end");
    } finally {
      await silly.stop();
      await peer.close();
    }
  });

  it("reports connection failures as nil, err", async () => {
    const silly = await startSilly(fixture("client.lua"), {
      extra: { resolveUrl: () => "ws://127.0.0.1:1/" },
    });
    try {
      await silly.log.waitForLine(/Connect failed:.*ECONNREFUSED/);
    } finally {
      await silly.stop();
    }
  });
});

describe("silly.net.websocket reference: broadcast server with a channel", () => {
  it("every client receives every client's messages", async () => {
    const silly = await startSilly(fixture("broadcast.lua"));
    try {
      const clients = [
        await openClient(silly.url),
        await openClient(silly.url),
        await openClient(silly.url),
      ];
      // Wait until all three are registered (the handler runs after the 101 went out).
      clients[0]!.send("ready?");
      for (const client of clients) assert.equal(await client.next(), "ready?");
      for (const [i, client] of clients.entries()) client.send(`from ${i}`);
      for (const client of clients) {
        const got = [await client.next(), await client.next(), await client.next()].sort();
        assert.deepEqual(got, ["from 0", "from 1", "from 2"]);
      }
      clients[2]!.close();
      await clients[2]!.closed;
      clients[0]!.send("after leave");
      assert.equal(await clients[0]!.next(), "after leave");
      assert.equal(await clients[1]!.next(), "after leave");
      const res = await httpRequest(silly.port, "/");
      assert.equal(res.status, 404);
      clients[0]!.close();
      clients[1]!.close();
    } finally {
      await silly.stop();
    }
  });
});

const made = makeCertificate();
const skipTls = typeof made === "string" ? made : false;

describe("silly.net.websocket reference: secure WebSocket (WSS)", { skip: skipTls }, () => {
  let cert: Buffer;
  let key: Buffer;
  let dir: string;
  before(() => {
    if (typeof made === "string") return;
    ({ cert, key, dir } = made);
  });
  after(() => {
    if (typeof made !== "string") rmSync(made.dir, { recursive: true, force: true });
  });

  it("serves wss:// with the certs table holding real PEM text", async () => {
    const source = readFileSync(fixture("wss.lua"), "utf8")
      .replace('"-----BEGIN CERTIFICATE-----\\n..."', `[[${cert.toString()}]]`)
      .replace('"-----BEGIN PRIVATE KEY-----\\n..."', `[[${key.toString()}]]`);
    assert.notEqual(source, readFileSync(fixture("wss.lua"), "utf8"));
    const scriptPath = path.join(dir, "wss.lua");
    writeFileSync(scriptPath, source);
    const silly = await startSilly(scriptPath, {
      server: { staticDir: path.dirname(fixture("api.lua")) },
    });
    try {
      assert.match(silly.url, /^wss:/);
      const client = new TestClient(`wss://localhost:${silly.port}/`, { ca: cert });
      await client.opened();
      assert.equal(await client.next(), "Secure connection established");
      assert.equal((await client.closed).code, 1000);
      // A plain HTTPS request the handler leaves unanswered gets a static file (--static), else 404.
      const status = (target: string) =>
        new Promise<number>((resolve, reject) => {
          https
            .get(
              {
                host: "127.0.0.1",
                port: silly.port,
                path: target,
                ca: cert,
                servername: "localhost",
                agent: false,
              },
              (res) => {
                res.resume();
                resolve(res.statusCode ?? 0);
              },
            )
            .on("error", reject);
        });
      assert.equal(await status("/broadcast.lua"), 200);
      assert.equal(await status("/missing.txt"), 404);
    } finally {
      await silly.stop();
    }
  });

  it("the document's placeholder certificates make http.listen fail without breaking the script", async () => {
    const silly = await startSilly(fixture("wss.lua"));
    try {
      assert.equal(silly.style.servers.length, 0);
      await silly.log.waitForLine(/http\.listen at ':8443' failed: .*PEM/);
      await silly.log.waitForLine(/no server after startup/);
    } finally {
      await silly.stop();
    }
  });

  it("websocket.connect reaches a wss:// server", async () => {
    const server = https.createServer({ cert, key });
    const peer = await startWsServer({ server });
    peer.wss.on("connection", (ws) =>
      ws.on("message", (data) => ws.send(`Echo: ${data.toString()}`)),
    );
    const silly = await startSilly(fixture("client.lua"), {
      extra: { resolveUrl: () => `wss://localhost:${peer.port}/`, connect: { ca: cert } },
    });
    try {
      await silly.log.waitForLine(/Received:\s*Echo: Hello, Server!/);
    } finally {
      await silly.stop();
      await peer.close();
    }
  });
});

// ---- the whole API -----------------------------------------------------------------------

describe("coroutine style API (api.lua)", () => {
  let silly: Silly;
  before(async () => {
    silly = await startSilly(fixture("api.lua"), { cpuBudgetMs: 150 });
  });
  after(async () => {
    await silly.stop();
  });

  const api = (name: string) => `ws://127.0.0.1:${silly.port}/ws/${name}`;
  const get = (target: string, options: Parameters<typeof httpRequest>[2] = {}) =>
    httpRequest(silly.port, target, options);

  it("the main chunk runs as a task and may block", async () => {
    await silly.log.waitForLine(/api script started true\|nil/);
  });

  it("http streams: method, path, query, lower-case headers, version, respond/closewrite", async () => {
    const res = await get("/hello?name=J%C3%BCrgen&n=3", { headers: { "X-Test": "abc" } });
    assert.equal(res.status, 200);
    assert.equal(res.headers["x-reply"], "yes");
    assert.equal(res.body.toString(), "GET|/hello|Jürgen|3|abc|HTTP/1.1|string|http");
    const missing = await get("/nope");
    assert.equal(missing.status, 404);
    assert.equal(missing.body.toString(), "no route /nope");
    const started = await get("/started");
    assert.equal(started.status, 200);
    assert.equal(started.body.length, 0);
  });

  it("respond refuses a header or status the protocol forbids; the script answers otherwise", async () => {
    const res = await get("/bad-respond");
    assert.equal(res.status, 400);
    assert.equal(res.headers["set-cookie"], undefined);
    assert.equal(
      res.body.toString(),
      [
        "false",
        'invalid header: Invalid character in header content ["x-a"]',
        "false",
        'invalid header: Header name must be a valid HTTP token ["bad name"]',
        "false",
        "bad argument #1 to 'respond' (HTTP status expected (100..999))",
      ].join("|"),
    );
  });

  it("request bodies with readall, every byte value kept both ways", async () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const res = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
      const req = http.request(
        { host: "127.0.0.1", port: silly.port, path: "/body", method: "POST", agent: false },
        (r) => {
          const parts: Buffer[] = [];
          r.on("data", (c: Buffer) => parts.push(c));
          r.on("end", () => resolve({ status: r.statusCode ?? 0, body: Buffer.concat(parts) }));
        },
      );
      req.on("error", reject);
      req.end(all);
    });
    assert.equal(res.status, 201);
    assert.deepEqual(res.body, all);
    await silly.log.waitForLine(/body read: 256 nil\|\|end of file/);
  });

  it("write streams chunks; write after closewrite is false, 'write closed'", async () => {
    const res = await get("/chunks");
    assert.equal(res.body.toString(), "chunk1;chunk2;chunk3;end");
    await silly.log.waitForLine(/write after close: false\|write closed/);
  });

  it("a handler that answers nothing yields 404; a Lua error 500 with script, line and traceback", async () => {
    assert.equal((await get("/nothing")).status, 404);
    const res = await get("/error");
    assert.equal(res.status, 500);
    const line = await silly.log.waitForLine(/Lua error.*api\.lua:\d+: plain boom/);
    assert.match(line, /script=api\.lua/);
    assert.match(line, /traceback/);
    // After part of the body went out the connection is cut instead.
    const raw = await rawHttp(silly.port, "GET /error-after-write HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(raw.status, 200);
    assert.equal(raw.closed, true);
    assert.doesNotMatch(raw.text, /\r\n0\r\n\r\n$/);
    assert.equal((await get("/hello")).status, 200);
  });

  it("echo: text, binary with all 256 byte values, ping seen by the script, close code and reason", async () => {
    const client = await openClient(api("echo"));
    client.send("héllo ✓");
    const text = await client.nextRaw();
    assert.equal(text.binary, false);
    assert.equal(text.data.toString(), "héllo ✓");
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    client.send(all, true);
    const bin = await client.nextRaw();
    assert.equal(bin.binary, true);
    assert.deepEqual(bin.data, all);
    const pong = new Promise<Buffer>((resolve) => client.ws.once("pong", resolve));
    client.ws.ping("abc");
    assert.equal((await pong).toString(), "abc");
    assert.equal(await client.next(), "saw ping abc");
    client.ws.close(4001, "bye");
    assert.equal((await client.closed).code, 4001);
    await silly.log.waitForLine(/echo got close 4001 bye/);
  });

  it("sock:write(data) defaults to binary; write type errors; conn and stream fields", async () => {
    const client = await openClient(api("api"));
    client.send("default some bytes");
    const message = await client.nextRaw();
    assert.equal(message.binary, true);
    assert.equal(message.data.toString(), "some bytes");
    client.send("types");
    // write(nil, "text") sends an empty text message before the answer.
    assert.equal(await client.next(), "");
    const types = (await client.next()).split("\n");
    assert.deepEqual(types.slice(0, 4), [
      "false|all control frames MUST have a payload length of 125 bytes or less",
      "true",
      "true",
      "true",
    ]);
    assert.match(types[4]!, /^false\|text data is not valid UTF-8/);
    assert.match(types[5]!, /^false\|.*frame type expected, got bogus/);
    assert.equal(await command(client, "conn"), "table|true|/ws/api|GET|number");
    client.close();
    await client.closed;
    await silly.log.waitForLine(
      /api closed: (true|false)\|[^|]*\|false\|socket closed\|nil\|socket closed\|\|false\|socket closed\|nil/,
    );
  });

  it("write(payload, 'close') closes with the script's code and reason", async () => {
    const client = await openClient(api("api"));
    client.send("close_with 4002");
    const closed = await client.closed;
    assert.equal(closed.code, 4002);
    assert.equal(closed.reason, "bye");
  });

  it("channels between tasks: send/push, recv/pop, close, nil data", async () => {
    const client = await openClient(api("api"));
    assert.equal(
      await command(client, "chan"),
      "1,two,3,closed:channel closed;false|channel closed|nil|channel closed|false|nil data",
    );
    client.close();
  });

  it("time.after with session and userdata, cancel; sleep, now, monotonic", async () => {
    const client = await openClient(api("api"));
    assert.equal(await command(client, "after"), "b:ud,a:true;integer");
    assert.equal(await command(client, "sleep"), "true|integer|integer|true");
    client.close();
  });

  it("task.wait/wakeup/status/running, waitgroup, silly core, json", async () => {
    const client = await openClient(api("api"));
    assert.equal(
      await command(client, "wait"),
      "WAIT|hello|nil|false|BUG: wakeup on task stat:RUN",
    );
    assert.equal(await command(client, "wg"), "6");
    assert.equal(await command(client, "silly"), "true|integer|false|true|true");
    assert.equal(await command(client, "json"), '{"a":1}|2|nil|string');
    client.close();
  });

  it("logger levels and f variants go to the server log", async () => {
    const client = await openClient(api("api"));
    assert.equal(await command(client, "log"), "3|0|1");
    await silly.log.waitForLine(/INFO\s+info 1 true nil/);
    await silly.log.waitForLine(/INFO\s+fmt x-2/);
    await silly.log.waitForLine(/WARN\s+a warning/);
    await silly.log.waitForLine(/ERROR\s+an error/);
    await silly.log.waitForLine(/DEBUG\s+debug again/);
    assert.ok(!silly.log.lines().some((line) => line.includes("suppressed")));
    client.close();
  });

  it("two tasks on one socket through a channel; a socket handed to another task", async () => {
    const relay = await openClient(api("relay"));
    relay.send("a");
    relay.send("b");
    assert.equal(await relay.next(), "relayed a");
    assert.equal(await relay.next(), "relayed b");
    relay.close();
    const handoff = await openClient(api("handoff"));
    handoff.send("x");
    assert.equal(await handoff.next(), "handed off x");
    assert.equal((await handoff.closed).code, 1000);
  });

  it("a socket the script dropped is closed with 1001 once collected", async () => {
    const dropped = await openClient(api("drop"));
    assert.equal((await get("/api?cmd=gc")).body.toString(), "collected");
    // Collected sockets are looked for every few dozen requests.
    for (let i = 0; i < 40; i++) await get("/hello");
    assert.equal(
      (await withTimeout(dropped.closed, PATIENCE_MS, "the dropped socket to close")).code,
      1001,
    );
  });

  it("upgrading a plain request: nil, err and a 400", async () => {
    const res = await get("/ws/refuse");
    assert.equal(res.status, 400);
    await silly.log.waitForLine(/refused upgrade: nil\|header connection mismatch/);
  });

  it("upgrade refusals name the header at fault; header values compare case-insensitively", async () => {
    const cases: Array<[Parameters<typeof upgradeRequest>[0], string]> = [
      [{ headers: { Upgrade: "h2c" } }, "header upgrade mismatch"],
      [{ headers: { "Sec-WebSocket-Key": null } }, "sec-websocket-key not found"],
      [{ method: "POST" }, "method not GET"],
    ];
    for (const [request, reason] of cases) {
      const res = await rawHttp(silly.port, upgradeRequest({ ...request, path: "/ws/refuse" }));
      assert.equal(res.status, 400, reason);
      await silly.log.waitForLine(new RegExp(`refused upgrade: nil\\|${reason}`));
    }
    const mixedCase = await rawHttp(
      silly.port,
      upgradeRequest({
        path: "/ws/refuse",
        headers: { Upgrade: "WebSocket", Connection: "keep-alive, UPGRADE" },
      }),
      500,
    );
    assert.equal(mixedCase.status, 101);
  });

  it("a header value that is no text makes upgrade refuse with 400, not fail", async () => {
    const res = await rawHttp(silly.port, upgradeRequest({ path: "/ws/odd-header" }));
    assert.equal(res.status, 400);
    await silly.log.waitForLine(/odd header upgrade: nil\|header upgrade mismatch/);
  });

  it("stream.header of a WebSocket request still reads after the connection ended", async () => {
    const client = await openClient(api("header-later"), { headers: { "X-Test": "kept" } });
    client.close(1000);
    await client.closed;
    await silly.log.waitForLine(/header later: [^|]*\|close\|kept\|websocket/);
  });

  it("a second task reading a socket at once fails (1011); the first reads the close", async () => {
    const client = await openClient(api("two-readers"));
    assert.equal((await client.closed).code, 1011);
    await silly.log.waitForLine(/api\.lua:\d+: socket is already being read by another task/);
    await silly.log.waitForLine(/first reader: nil\|/);
  });

  it("many messages in a burst arrive whole and in order (reading pauses and resumes)", async () => {
    const client = await openClient(api("echo"));
    const count = 3000;
    for (let i = 0; i < count; i++) client.send(`m${i}`);
    for (let i = 0; i < count; i++) assert.equal(await client.next(), `m${i}`);
    client.close();
  });

  it("websocket.connect errors: scheme, refused, bad URL, non-101 status", async () => {
    const lines = (await get("/api?cmd=connect_errors")).body.toString().split("\n");
    assert.equal(lines[0], "nil|unsupported scheme 'http' (use ws:// or wss://)");
    assert.equal(lines[1], "nil|true");
    assert.equal(lines[2], "nil|invalid url: not a url");
    const peer = http.createServer((_req, res) => res.writeHead(404).end());
    peer.on("upgrade", (_req, socket) =>
      socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
    );
    await new Promise<void>((resolve) => peer.listen(0, "127.0.0.1", resolve));
    try {
      const port = (peer.address() as AddressInfo).port;
      const res = await get(
        `/api?cmd=connect_to&arg=${encodeURIComponent(`ws://127.0.0.1:${port}/x`)}`,
      );
      assert.equal(res.body.toString(), "nil|websocket.connect fail:404");
    } finally {
      peer.close();
    }
  });

  it("http.listen errors are nil, err; a listener opened later waits until it is bound", async () => {
    const res = await get("/api?cmd=listen_errors");
    const parts = res.body.toString().split("|");
    assert.equal(parts[0], "nil");
    assert.match(parts[1]!, /invalid address 'nonsense'/);
    assert.deepEqual(parts.slice(2), [
      "nil",
      "true",
      "nil",
      "tls needs certs = {{cert = PEM, key = PEM}}",
      "false",
      "true",
    ]);
    const addr = (await get("/api?cmd=late_listen")).body.toString();
    const parsed = parseAddress(addr, "x");
    assert.ok(typeof parsed !== "string" && parsed.port > 0, addr);
    const late = await httpRequest(parsed.port, "/x");
    assert.equal(late.body.toString(), "late /x");
  });

  it("a Lua error in a handler closes that client with 1011; the others go on", async () => {
    const bystander = await openClient(api("echo"));
    const victim = await openClient(api("boom"));
    victim.send("trigger");
    assert.equal((await victim.closed).code, 1011);
    await silly.log.waitForLine(/boom after upgrade/);
    // Errors whose value is no string are logged as the standalone lua shows them.
    for (const [kind, text] of [
      ["table", "(error object is a table value)"],
      ["tostring", "custom error text"],
      ["nil", "(error object is a nil value)"],
    ]) {
      const client = await openClient(api("boom-value"));
      client.send(kind!);
      assert.equal((await client.closed).code, 1011);
      await silly.log.waitForLine(new RegExp(`Lua error in a coroutine: ${escapeRegExp(text!)}`));
    }
    // A task forked by the handler belongs to its connection too.
    const forked = await openClient(api("api"));
    forked.send("fork_boom");
    assert.equal((await forked.closed).code, 1011);
    bystander.send("still here");
    assert.equal(await bystander.next(), "still here");
    bystander.close();
  });

  it("tasks made ready together each get a CPU budget of their own", async () => {
    const client = await openClient(api("api"));
    // 150 ms budget: 100 ms each is within it, 200 ms together is not.
    client.send("busy_pair 100");
    assert.equal(await client.next(), "2 done");
    client.close();
  });

  it("a runaway task is stopped by the CPU budget; the server keeps serving", async () => {
    const bystander = await openClient(api("echo"));
    const spinner = await openClient(api("api"));
    spinner.send("spin");
    assert.equal(
      (await withTimeout(spinner.closed, PATIENCE_MS, "the spinning client to be closed")).code,
      1011,
    );
    await silly.log.waitForLine(/cpu budget/i);
    assert.equal((await get("/spin")).status, 500);
    bystander.send("alive");
    assert.equal(await bystander.next(), "alive");
    assert.equal((await get("/hello")).status, 200);
    bystander.close();
  });
});

describe("limits of a coroutine-style script", () => {
  it("listeners past --max-listeners are refused with nil, err, logged and counted", async () => {
    const silly = await startSilly(fixture("listeners.lua"), { extra: { maxListeners: 2 } });
    try {
      await silly.log.waitForLine(
        /listens: true nil, true nil, false too many listeners: 2 open \(--max-listeners\)/,
      );
      await silly.log.waitForLine(/WARN .*too many listeners: 2 open/);
      const metrics = await (await fetch(`http://127.0.0.1:${silly.port}/metrics`)).text();
      assert.match(metrics, /^moonsocket_lua_listeners 2$/m);
      assert.match(metrics, /^moonsocket_lua_errors_total 1$/m);
    } finally {
      await silly.stop();
    }
  });

  it("a response to a client that does not read stops at --max-buffered: write returns false", async () => {
    const silly = await startSilly(fixture("api.lua"), {
      server: { maxBufferedBytes: 1024 * 1024 },
    });
    const socket = net.connect(silly.port, "127.0.0.1");
    try {
      socket.write("GET /flood HTTP/1.1\r\nHost: x\r\n\r\n");
      socket.pause(); // never read: the kernel buffers fill, then Node's
      const line = await silly.log.waitForLine(
        /write refused after \d+ bytes: send buffer full/,
        10000,
      );
      const total = Number(/after (\d+) bytes/.exec(line)![1]);
      assert.ok(total > 0 && total < 64 * 1024 * 1024, `refused after ${total} bytes`);
    } finally {
      socket.destroy();
      await silly.stop();
    }
  });

  it("outgoing connections past --max-outgoing are refused with nil, err, logged and counted", async () => {
    const peer = await startWsServer();
    const silly = await startSilly(fixture("outgoing.lua"), {
      maxOutgoing: 2,
      extra: { resolveUrl: () => `ws://127.0.0.1:${peer.port}/` },
    });
    try {
      await silly.log.waitForLine(
        /connects: true nil, true nil, false too many outgoing connections: 2 open \(--max-outgoing\)/,
      );
      await silly.log.waitForLine(/WARN .*too many outgoing connections: 2 open/);
      const metrics = await (await fetch(`http://127.0.0.1:${silly.port}/metrics`)).text();
      assert.match(metrics, /^moonsocket_lua_outgoing 2$/m);
    } finally {
      await silly.stop();
      await peer.close();
    }
  });
});

describe("listen addresses", () => {
  it("':PORT' takes the configured host, 'IP:PORT' is used as given", () => {
    assert.deepEqual(parseAddress(":8080", "127.0.0.1"), { host: "127.0.0.1", port: 8080 });
    assert.deepEqual(parseAddress("0.0.0.0:9000", "127.0.0.1"), { host: "0.0.0.0", port: 9000 });
    assert.deepEqual(parseAddress("[::1]:80", "127.0.0.1"), { host: "::1", port: 80 });
    assert.equal(typeof parseAddress("8080", "h"), "string");
    assert.equal(typeof parseAddress(":99999", "h"), "string");
  });

  it("the script's port is kept unless the configured port is 0", async () => {
    const silly = await startSilly(fixture("upgrade-echo.lua"), {
      server: { port: 8085 },
      listen: false,
    });
    try {
      assert.equal(silly.style.servers[0]!.options.port, 8080);
      assert.equal(silly.style.servers[0]!.options.host, "127.0.0.1");
    } finally {
      await silly.stop();
    }
  });
});
