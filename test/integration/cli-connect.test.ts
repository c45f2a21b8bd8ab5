/**
 * `moonsocket connect` as a user runs it: a child process with piped stdin against `ws` servers
 * and against `moonsocket echo`, its output, its error messages and exit codes; wss:// with a
 * self-signed certificate; and a terminal session through a pseudo-terminal (`script`).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { afterEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type WebSocket, WebSocketServer as WsServer } from "ws";
import { PATIENCE_MS, Resources, sleep, waitUntil, withTimeout } from "../helpers/net-helpers.js";
import { makeCertificate } from "../helpers/tls-cert.js";

const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
const resources = new Resources();
afterEach(() => resources.closeAll());

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stdoutBytes: () => Buffer;
  stderr: () => string;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  exited: Promise<number | string>;
}

/** Runs `moonsocket ARGS…` with `input` on its stdin (then closed), or stdin left open. */
function run(args: string[], input?: string | Buffer): Run {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  const out: Buffer[] = [];
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => out.push(chunk));
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin!.on("error", () => {
    // The child may exit before reading everything.
  });
  if (input !== undefined) child.stdin!.end(input);
  const exited = new Promise<number | string>((resolve) =>
    child.on("exit", (code, signal) => resolve(code ?? signal ?? -1)),
  );
  resources.add(child, (c) => {
    if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    return exited;
  });
  return {
    child,
    stdout: () => Buffer.concat(out).toString(),
    stdoutBytes: () => Buffer.concat(out),
    stderr: () => stderr,
    exited,
  };
}

async function finished(proc: Run, ms = PATIENCE_MS): Promise<number | string> {
  return withTimeout(proc.exited, ms, `moonsocket to exit (stderr: ${proc.stderr()})`);
}

interface WsTestServer {
  wss: WsServer;
  url: string;
  /** Close codes the server saw, in order. */
  closes: number[];
}

/** A `ws` server on a free port; `onConnection` sets up each socket (default: echo). */
async function startWsServer(
  onConnection?: (ws: WebSocket, request: http.IncomingMessage) => void,
  options: ConstructorParameters<typeof WsServer>[0] = {},
): Promise<WsTestServer> {
  const wss = new WsServer(
    options.server !== undefined ? options : { port: 0, host: "127.0.0.1", ...options },
  );
  const closes: number[] = [];
  resources.add(wss, (s) => {
    for (const client of s.clients) client.terminate();
    return new Promise((resolve) => s.close(() => resolve(undefined)));
  });
  wss.on("connection", (ws, request) => {
    ws.on("error", () => {});
    ws.on("close", (code) => closes.push(code));
    if (onConnection !== undefined) onConnection(ws, request);
    else ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  if (options.server === undefined)
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const { port } = (options.server?.address() ?? wss.address()) as AddressInfo;
  return { wss, url: `ws://127.0.0.1:${port}/`, closes };
}

/** Starts `moonsocket echo --port 0` and resolves with its URL. */
async function startMoonsocketEcho(): Promise<string> {
  const proc = run(["echo", "--port", "0", "--log-level", "warn"]);
  return withTimeout(
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const match = /listening on (ws:\/\/127\.0\.0\.1:\d+\/)/.exec(proc.stdout());
        if (match) resolve(match[1]!);
      };
      proc.child.stdout!.on("data", check);
      void proc.exited.then((code) => reject(new Error(`echo exited ${code}: ${proc.stderr()}`)));
    }),
    5000,
    "the echo server's banner",
  );
}

describe("moonsocket connect, stdin not a terminal", () => {
  it("sends each line and prints each echo undecorated, then closes with 1000 and exits 0", async () => {
    const server = await startWsServer();
    const proc = run(
      ["connect", "--wait", "1s", server.url],
      "hello\nwörld ✓\n\nlast line without newline",
    );
    assert.equal(await finished(proc), 0, proc.stderr());
    assert.equal(proc.stdout(), "hello\nwörld ✓\n\nlast line without newline\n");
    assert.equal(proc.stderr(), "");
    assert.deepEqual(server.closes, [1000]);
  });

  it("works against moonsocket echo", async () => {
    const url = await startMoonsocketEcho();
    const lines = Array.from({ length: 200 }, (_, i) => `message ${i}`);
    const proc = run(["connect", "--wait", "1s", url], `${lines.join("\n")}\n`);
    assert.equal(await finished(proc), 0, proc.stderr());
    assert.equal(proc.stdout(), `${lines.join("\n")}\n`);
  });

  it("waits for replies that come after the input ended (until --wait passes in silence)", async () => {
    const server = await startWsServer((ws) => {
      ws.on("message", (data) => {
        // Two replies, late and later: the second comes more than --wait after the input
        // ended, but less than --wait after the first, which restarted the quiet period.
        setTimeout(() => ws.send(`first ${data}`), 600);
        setTimeout(() => ws.send(`second ${data}`), 1200);
      });
    });
    const proc = run(["connect", "--wait", "1s", server.url], "x\n");
    assert.equal(await finished(proc), 0, proc.stderr());
    assert.equal(proc.stdout(), "first x\nsecond x\n");
  });

  it("prints binary messages as hex, or raw with --binary (which also sends lines as binary)", async () => {
    const server = await startWsServer((ws) => {
      ws.send(Buffer.from("hello"));
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
    const hex = run(["connect", "--wait", "1s", server.url], "text\n");
    assert.equal(await finished(hex), 0, hex.stderr());
    assert.equal(hex.stdout(), "68656c6c6f\ntext\n");

    const raw = run(["connect", "--binary", "--wait", "1s", server.url], "ab\ncd\n");
    assert.equal(await finished(raw), 0, raw.stderr());
    assert.deepEqual(raw.stdoutBytes(), Buffer.from("hello\nab\ncd\n"));
  });

  it("sends --header and offers --subprotocol", async () => {
    const server = await startWsServer(
      (ws, request) => {
        ws.send(
          `auth=${request.headers.authorization} x=${request.headers["x-test"]} protocol=${ws.protocol}`,
        );
      },
      { handleProtocols: (protocols) => (protocols.has("chat.v2") ? "chat.v2" : false) },
    );
    const proc = run(
      [
        "connect",
        "-H",
        "Authorization: Bearer abc",
        "--header",
        "X-Test:  spaced ",
        "--subprotocol",
        "chat.v1",
        "--subprotocol",
        "chat.v2",
        "--wait",
        "300ms",
        server.url,
      ],
      "",
    );
    assert.equal(await finished(proc), 0, proc.stderr());
    assert.equal(proc.stdout(), "auth=Bearer abc x=spaced protocol=chat.v2\n");
  });

  it("a server closing with a code other than 1000 is reported and exits 1", async () => {
    const server = await startWsServer((ws) => ws.on("message", () => ws.close(4001, "go away")));
    const proc = run(["connect", server.url], "hi\n");
    assert.equal(await finished(proc), 1);
    assert.match(proc.stderr(), /closed the connection with 4001 \(go away\)/);
  });

  it("a server closing with 1000 exits 0", async () => {
    const server = await startWsServer((ws) => ws.on("message", () => ws.close(1000, "done")));
    const ok = run(["connect", server.url], "hi\n");
    assert.equal(await finished(ok), 0, ok.stderr());
  });

  it("connection refused: a clear message and exit 1", async () => {
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", () => resolve()));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const proc = run(["connect", `ws://127.0.0.1:${port}/`], "");
    assert.equal(await finished(proc), 1);
    assert.equal(
      proc.stderr(),
      `moonsocket connect: cannot connect to ws://127.0.0.1:${port}/: connection refused — is the server running?\n`,
    );
    assert.equal(proc.stdout(), "");
  });

  it("a refused handshake (404) names the status and exits 1", async () => {
    const server = http.createServer((_request, response) => response.writeHead(404).end("no"));
    server.on("upgrade", (_request, socket) =>
      socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    );
    resources.add(server, (s) => new Promise((resolve) => s.close(resolve)));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const { port } = server.address() as AddressInfo;
    const proc = run(["connect", `ws://127.0.0.1:${port}/nowhere`], "");
    assert.equal(await finished(proc), 1);
    assert.match(
      proc.stderr(),
      /^moonsocket connect: cannot connect to ws:\/\/127\.0\.0\.1:\d+\/nowhere: server answered 404/,
    );
  });

  it("usage errors exit 2: a bad URL, a malformed header", async () => {
    const bad = run(["connect", "not a url"], "");
    assert.equal(await finished(bad), 2);
    assert.match(bad.stderr(), /is not a URL/);
    const scheme = run(["connect", "ftp://127.0.0.1/"], "");
    assert.equal(await finished(scheme), 2);
    assert.match(scheme.stderr(), /use ws:\/\/ or wss:\/\//);
    const header = run(["connect", "-H", "no colon here", "ws://127.0.0.1:1/"], "");
    assert.equal(await finished(header), 2);
    assert.match(header.stderr(), /--header expects "Name: value"/);
    const missing = run(["connect"], "");
    assert.equal(await finished(missing), 2);
    assert.match(missing.stderr(), /missing URL/);
  });

  it("--help exits 0 and documents the modes, flags and exit codes", async () => {
    const proc = run(["connect", "--help"]);
    assert.equal(await finished(proc), 0);
    const help = proc.stdout();
    assert.match(help, /^Usage: moonsocket connect \[options\] URL/);
    for (const flag of [
      "--header",
      "--subprotocol",
      "--deflate",
      "--insecure",
      "--binary",
      "--wait",
    ]) {
      assert.ok(help.includes(flag), `help mentions ${flag}`);
    }
    assert.match(help, /Exit status/);
    assert.match(help, /Examples:/);
  });
});

const certificate = makeCertificate();

describe("moonsocket connect over wss://", {
  skip: typeof certificate === "string" ? certificate : false,
}, () => {
  async function startWssEcho(): Promise<string> {
    if (typeof certificate === "string") throw new Error(certificate);
    const server = https.createServer({ cert: certificate.cert, key: certificate.key });
    resources.add(server, (s) => new Promise((resolve) => s.close(resolve)));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    await startWsServer(undefined, { server });
    return `wss://localhost:${(server.address() as AddressInfo).port}/`;
  }

  it("rejects a self-signed certificate with a hint, and accepts it with --insecure", async () => {
    const url = await startWssEcho();
    const strict = run(["connect", url], "x\n");
    assert.equal(await finished(strict), 1);
    assert.match(strict.stderr(), /certificate/);
    assert.match(strict.stderr(), /--insecure/);

    const insecure = run(["connect", "--insecure", "--wait", "1s", url], "over TLS ✓\n");
    assert.equal(await finished(insecure), 0, insecure.stderr());
    assert.equal(insecure.stdout(), "over TLS ✓\n");
  });
});

const hasScript = spawnSync("script", ["--version"], { stdio: "ignore" }).status === 0;

describe("moonsocket connect in a terminal", {
  skip: hasScript ? false : "util-linux 'script' is not installed: no pseudo-terminal to drive",
}, () => {
  /**
   * Runs connect in a pseudo-terminal and types into it: a string is typed, a RegExp waits until
   * the screen matches it, a number pauses (ms).
   */
  function runInTerminal(url: string, script: Array<string | RegExp | number>): Run {
    const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(MAIN)} connect ${url}; echo "EXIT=$?"`;
    const child = spawn("script", ["-q", "-e", "-c", command, "/dev/null"], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.stdin!.on("error", () => {});
    const exited = new Promise<number | string>((resolve) =>
      child.on("exit", (code, signal) => resolve(code ?? signal ?? -1)),
    );
    resources.add(child, (c) => {
      if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      return exited;
    });
    void (async () => {
      for (const step of script) {
        if (typeof step === "number") await sleep(step);
        else if (typeof step === "string") child.stdin!.write(step);
        else
          await waitUntil(
            () => step.test(plain(out)),
            PATIENCE_MS,
            `the screen to show ${step}`,
          ).catch(() => {});
      }
      // stdin stays open until the session ends: script stops when its input closes.
    })();
    return {
      child,
      stdout: () => out,
      stdoutBytes: () => Buffer.from(out),
      stderr: () => err,
      exited,
    };
  }

  /** The prompt after the banner: readline has the terminal in raw mode from then on. */
  const PROMPT = /Ctrl-C closes\n> /;

  /** Terminal output without escape sequences and carriage returns. */
  function plain(text: string): string {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping terminal escapes
    return text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "").replace(/\r/g, "");
  }

  it("shows a prompt and decorated messages, and Ctrl-D closes with 1000 and exits 0", async () => {
    const server = await startWsServer((ws) => {
      ws.on("message", (data, isBinary) => {
        ws.send(data, { binary: isBinary });
        ws.send(Buffer.from("hello"));
        ws.ping();
      });
    });
    const session = runInTerminal(server.url, [PROMPT, "hi there\r", /< ping/, "\x04"]);
    await withTimeout(session.exited, PATIENCE_MS, "the terminal session to end");
    const screen = plain(session.stdout());
    assert.match(screen, /connected to ws:\/\/127\.0\.0\.1:\d+\//);
    assert.match(screen, /> /);
    assert.match(screen, /< text: hi there/);
    assert.match(screen, /< binary \(5 bytes\): 68656c6c6f/);
    assert.match(screen, /< ping/);
    assert.match(screen, /closed 1000/);
    assert.match(screen, /EXIT=0/);
    assert.deepEqual(server.closes, [1000]);
  });

  it("Ctrl-C closes with 1000 too", async () => {
    const server = await startWsServer();
    const session = runInTerminal(server.url, [PROMPT, "\x03"]);
    await withTimeout(session.exited, PATIENCE_MS, "the terminal session to end");
    const screen = plain(session.stdout());
    assert.match(screen, /closed 1000/);
    assert.match(screen, /EXIT=0/);
    assert.deepEqual(server.closes, [1000]);
  });

  it("a server closing with 4000 shows the code and exits 1", async () => {
    const server = await startWsServer((ws) => ws.on("message", () => ws.close(4000, "kicked")));
    const session = runInTerminal(server.url, [PROMPT, "bye\r"]);
    await withTimeout(session.exited, PATIENCE_MS, "the terminal session to end");
    const screen = plain(session.stdout());
    assert.match(screen, /closed 4000 \(kicked\)/);
    assert.match(screen, /EXIT=1/);
  });
});

describe("moonsocket connect: what went wrong, in a sentence", () => {
  async function listen(server: http.Server): Promise<number> {
    resources.add(server, (s) => {
      s.closeAllConnections();
      return new Promise((resolve) => s.close(resolve));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    return (server.address() as AddressInfo).port;
  }

  it("wss:// to a server without TLS: says it does not speak TLS, and the ws:// URL", async () => {
    const port = await listen(http.createServer((_request, response) => response.end()));
    const proc = run(["connect", `wss://127.0.0.1:${port}/chat`], "");
    assert.equal(await finished(proc), 1);
    assert.equal(
      proc.stderr(),
      `moonsocket connect: cannot connect to wss://127.0.0.1:${port}/chat: ` +
        `the server at 127.0.0.1:${port} does not speak TLS: use ws://127.0.0.1:${port}/chat\n`,
    );
  });

  it("ws:// to a TLS server: says it seems to expect TLS, and the wss:// URL", {
    skip: typeof certificate === "string" ? certificate : false,
  }, async () => {
    if (typeof certificate === "string") return;
    const port = await listen(
      https.createServer({ cert: certificate.cert, key: certificate.key }, (_q, s) => s.end()),
    );
    const proc = run(["connect", `ws://127.0.0.1:${port}/`], "");
    assert.equal(await finished(proc), 1);
    assert.equal(
      proc.stderr(),
      `moonsocket connect: cannot connect to ws://127.0.0.1:${port}/: ` +
        `the server at 127.0.0.1:${port} seems to expect TLS: use wss://127.0.0.1:${port}/\n`,
    );
  });

  it("a refused handshake shows the status and the reason the server sent", async () => {
    const server = http.createServer();
    server.on("upgrade", (_request, socket) => {
      // The head first, the body in a later write: the reason must still be read.
      socket.write(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 26\r\n\r\n",
      );
      setImmediate(() => socket.end("token expired\nlog in again"));
    });
    const port = await listen(server);
    const proc = run(["connect", `ws://127.0.0.1:${port}/`], "");
    assert.equal(await finished(proc), 1);
    assert.equal(
      proc.stderr(),
      `moonsocket connect: cannot connect to ws://127.0.0.1:${port}/: server answered 403 Forbidden ` +
        "instead of 101 Switching Protocols: token expired log in again\n",
    );
  });

  it("moonsocket echo --origin: the 403 says which origin is not allowed", async () => {
    const echo = run(["echo", "--port", "0", "--origin", "http://good.example"]);
    await waitUntil(() => /listening on/.test(echo.stdout()), 10_000, "the echo banner");
    const url = /listening on (\S+)/.exec(echo.stdout())![1]!;
    const proc = run(["connect", "-H", "Origin: http://evil.example", url], "");
    assert.equal(await finished(proc), 1);
    assert.match(
      proc.stderr(),
      /server answered 403 Forbidden instead of 101 Switching Protocols: .*http:\/\/evil\.example/,
    );
  });

  it("http:// is refused as the help says: one line naming the ws:// URL, exit 2", async () => {
    for (const [given, meant] of [
      ["http://127.0.0.1:8085/chat", "ws://127.0.0.1:8085/chat"],
      ["https://example.com/", "wss://example.com/"],
    ] as const) {
      const proc = run(["connect", given], "");
      assert.equal(await finished(proc), 2);
      assert.equal(
        proc.stderr(),
        `moonsocket connect: ${given.split(":")[0]}:// is not a WebSocket URL; use ${meant}\n`,
      );
    }
  });
});
