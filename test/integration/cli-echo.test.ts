/**
 * `moonsocket echo` as a user runs it: a child process, its banner, its exit codes, and its
 * behaviour with a `ws` client.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { afterEach, describe, it } from "node:test";
import WebSocket from "ws";
import { type CliRun, runCli } from "../helpers/cli-process.js";
import {
  httpRequest,
  PATIENCE_MS,
  Resources,
  WsPeer,
  waitUntil,
  withTimeout,
} from "../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

type Run = CliRun;

function run(args: string[]): Run {
  return runCli(resources, args);
}

/** Starts the echo server and waits for its banner; resolves with the port. */
async function startEcho(extra: string[] = []): Promise<{ proc: Run; port: number; url: string }> {
  const proc = run(["echo", "--port", "0", "--log-level", "warn", ...extra]);
  const port = await withTimeout(
    new Promise<number>((resolve, reject) => {
      const check = () => {
        const match = /listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(proc.stdout());
        if (match) resolve(Number(match[1]));
      };
      proc.child.stdout!.on("data", check);
      void proc.exited.then((code) =>
        reject(new Error(`exited ${code} before listening: ${proc.stderr()}`)),
      );
    }),
    5000,
    "the echo server's banner",
  );
  return { proc, port, url: `ws://127.0.0.1:${port}/` };
}

function openWs(url: string, options: WebSocket.ClientOptions = {}): Promise<WsPeer> {
  const peer = new WsPeer(new WebSocket(url, options));
  resources.add(peer, (p) => p.ws.terminate());
  return peer.opened();
}

describe("moonsocket echo", () => {
  it("prints 'listening on ws://127.0.0.1:PORT/' and echoes text and binary on any path", async () => {
    const { proc, url } = await startEcho();
    assert.match(
      proc.stdout(),
      /^moonsocket echo listening on ws:\/\/127\.0\.0\.1:\d+\/ \(open http:\/\/127\.0\.0\.1:\d+\/ for a console\)\n$/,
    );
    for (const path of ["", "any/path", "x?y=1"]) {
      const peer = await openWs(url + path);
      peer.ws.send("héllo ✓");
      const text = await peer.next();
      assert.equal(text.isBinary, false);
      assert.equal(text.data.toString(), "héllo ✓");
      const bytes = Buffer.from([0, 1, 254, 255]);
      peer.ws.send(bytes);
      const binary = await peer.next();
      assert.equal(binary.isBinary, true);
      assert.ok(binary.data.equals(bytes));
    }
    assert.equal(proc.stderr(), "", "nothing logged at warn level for normal traffic");
  });

  it("--max-payload 1KiB closes a bigger message with 1009", async () => {
    const { url } = await startEcho(["--max-payload", "1KiB"]);
    const peer = await openWs(url);
    peer.ws.send("x".repeat(1024));
    assert.equal((await peer.next()).data.length, 1024);
    peer.ws.send("x".repeat(1025));
    const info = await peer.waitClosed();
    assert.equal(info.code, 1009);
  });

  it("--deflate negotiates permessage-deflate", async () => {
    const { url } = await startEcho(["--deflate"]);
    const peer = await openWs(url, { perMessageDeflate: true });
    assert.match(peer.extensions, /^permessage-deflate/);
    const big = "compress me ".repeat(10_000);
    peer.ws.send(big);
    assert.equal((await peer.next()).data.toString(), big);
  });

  it("without --deflate, compression is not negotiated", async () => {
    const { url } = await startEcho();
    const peer = await openWs(url, { perMessageDeflate: true });
    assert.equal(peer.extensions, "");
  });

  it("--help exits 0 and lists the flags", async () => {
    const proc = run(["echo", "--help"]);
    assert.equal(await withTimeout(proc.exited, PATIENCE_MS, "exit"), 0);
    for (const flag of [
      "--port",
      "--host",
      "--deflate",
      "--max-payload",
      "--max-connections",
      "--idle-timeout",
      "--origin",
      "--log-level",
    ]) {
      assert.ok(proc.stdout().includes(flag), `help mentions ${flag}`);
    }
    assert.match(proc.stdout(), /^Usage: moonsocket echo/);
  });

  it("an unknown flag exits 2 with a message naming it", async () => {
    const proc = run(["echo", "--bogus"]);
    assert.equal(await withTimeout(proc.exited, PATIENCE_MS, "exit"), 2);
    assert.match(proc.stderr(), /unknown option --bogus/);
    assert.match(proc.stderr(), /--help/);
    assert.equal(proc.stdout(), "");
  });

  it("a bad flag value exits 2 with a message", async () => {
    const proc = run(["echo", "--max-payload", "lots"]);
    assert.equal(await withTimeout(proc.exited, PATIENCE_MS, "exit"), 2);
    assert.match(proc.stderr(), /--max-payload/);
  });

  it("SIGTERM closes clients with 1001 and exits 0", async () => {
    const { proc, url } = await startEcho();
    const peers = [await openWs(url), await openWs(url)];
    proc.child.kill("SIGTERM");
    for (const peer of peers) {
      const info = await peer.waitClosed();
      assert.equal(info.code, 1001);
      assert.equal(info.wasClean, true);
    }
    assert.equal(await withTimeout(proc.exited, PATIENCE_MS, "exit after SIGTERM"), 0);
  });

  it("SIGINT also shuts down with exit code 0", async () => {
    const { proc } = await startEcho();
    proc.child.kill("SIGINT");
    assert.equal(await withTimeout(proc.exited, PATIENCE_MS, "exit after SIGINT"), 0);
  });

  it("a port in use exits 1 with a clear message", async () => {
    const blocker = net.createServer();
    resources.add(blocker, (s) => new Promise((resolve) => s.close(resolve)));
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", () => resolve()));
    const { port } = blocker.address() as net.AddressInfo;
    const proc = run(["echo", "--port", String(port)]);
    assert.equal(await withTimeout(proc.exited, PATIENCE_MS, "exit"), 1);
    assert.match(proc.stderr(), new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));
    assert.match(proc.stderr(), /--port/);
  });
});

describe("moonsocket echo --broadcast", () => {
  it("relays every message to every connected client, the sender included", async () => {
    const { url } = await startEcho(["--broadcast"]);
    const peers = [await openWs(url), await openWs(`${url}other/path`), await openWs(url)];
    peers[1]!.ws.send("to everyone");
    for (const peer of peers) {
      const message = await peer.next(10_000);
      assert.equal(message.isBinary, false);
      assert.equal(message.data.toString(), "to everyone");
    }
    const bytes = Buffer.from([0, 1, 2, 255]);
    peers[2]!.ws.send(bytes);
    for (const peer of peers) {
      const message = await peer.next(10_000);
      assert.equal(message.isBinary, true);
      assert.ok(message.data.equals(bytes));
    }
  });

  it("is listed in --help", async () => {
    const proc = run(["echo", "--help"]);
    assert.equal(await withTimeout(proc.exited, 10_000, "echo --help"), 0);
    assert.match(proc.stdout(), /--broadcast/);
  });
});

describe("moonsocket echo: HTTP request log", () => {
  /** Requests /healthz, /metrics and a missing page; returns the status codes. */
  async function browse(port: number): Promise<number[]> {
    const statuses: number[] = [];
    for (const path of ["/healthz", "/metrics", "/missing"]) {
      statuses.push((await httpRequest(port, path)).status);
    }
    return statuses;
  }

  it("--log-level debug: one line per request with method, path, status and bytes", async () => {
    const { proc, port } = await startEcho(["--log-level", "debug"]);
    assert.deepEqual(await browse(port), [200, 200, 404]);
    await waitUntil(
      () => /path=\/missing/.test(proc.stderr()),
      10_000,
      "the log line of the last request",
    );
    const lines = proc.stderr().split("\n");
    for (const [path, status] of [
      ["/healthz", 200],
      ["/metrics", 200],
      ["/missing", 404],
    ] as const) {
      const line = lines.find((l) => l.includes(`path=${path} `));
      assert.ok(line !== undefined, `a line for ${path}: ${proc.stderr()}`);
      assert.match(
        line,
        new RegExp(`DEBUG http request method=GET path=${path} status=${status} bytes=[1-9]\\d*`),
      );
    }
  });

  it("at the default level (info), requests are not logged", async () => {
    const { proc, port } = await startEcho(["--log-level", "info"]);
    assert.deepEqual(await browse(port), [200, 200, 404]);
    // Everything logged before the shutdown line is on stderr once the process has exited.
    proc.child.kill("SIGTERM");
    assert.equal(await withTimeout(proc.exited, 10_000, "echo to exit"), 0);
    assert.match(proc.stderr(), /shutting down/);
    assert.doesNotMatch(proc.stderr(), /http request|\/healthz|\/missing/);
  });
});
