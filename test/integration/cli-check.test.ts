/**
 * `moonsocket check` as a user runs it: it must report what `serve` would, for each style,
 * without opening a socket.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

/** Runs the CLI to its end: exit code and output. */
async function moonsocket(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number>((resolve) => child.on("exit", (c) => resolve(c ?? -1)));
  return { code, stdout, stderr };
}

/** Writes `source` as app.lua (or `name`) in a fresh folder; returns its path. */
function script(source: string, name = "app.lua"): string {
  const path = join(mkdtempSync(join(tmpdir(), "moonsocket-check-")), name);
  writeFileSync(path, source);
  return path;
}

/** Every line of `output` starts with one of `paths` followed by ':'. */
function assertPrefixed(output: string, paths: string[]): void {
  const lines = output.split("\n").filter((line) => line !== "");
  assert.ok(lines.length > 0);
  for (const line of lines)
    assert.ok(
      paths.some((path) => line.startsWith(`${path}:`)),
      `not prefixed by its path: ${line}`,
    );
}

const COROUTINE = 'local task = require "silly.task"\n';
const OPENRESTY = 'local server = require "resty.websocket.server"\n';

/** Scripts serve refuses at load, by style (the OpenResty style only compiles at load). */
const REFUSED: Array<[string, string, RegExp]> = [
  ["callback", 'os.execute("ls")\n', /app\.lua:1: attempt to call a nil value \(field 'execute'\)/],
  [
    "callback",
    'local f = io.open("x")\n',
    /app\.lua:1: attempt to index a nil value \(global 'io'\)/,
  ],
  [
    "callback",
    "local t = nil; print(t.field)\n",
    /app\.lua:1: attempt to index a nil value \(local 't'\)/,
  ],
  [
    "coroutine",
    `${COROUTINE}os.execute("ls")\n`,
    /app\.lua:2: attempt to call a nil value \(field 'execute'\)/,
  ],
  [
    "coroutine",
    `${COROUTINE}local f = io.open("x")\n`,
    /app\.lua:2: attempt to index a nil value \(global 'io'\)/,
  ],
  [
    "coroutine",
    `${COROUTINE}local t = nil; print(t.field)\n`,
    /app\.lua:2: attempt to index a nil value \(local 't'\)/,
  ],
];

describe("moonsocket check reports what serve would", () => {
  for (const [style, source, expected] of REFUSED) {
    it(`${style} style: ${source.trim().split("\n").at(-1)} → exit 1 with serve's error text, never OK`, async () => {
      const path = script(source);
      const [check, serve] = await Promise.all([
        moonsocket(["check", path]),
        moonsocket(["serve", path, "--port", "0"]),
      ]);
      assert.equal(serve.code, 1, "serve refuses it");
      const serveError = /^moonsocket serve: (error while loading the script: .*)$/m.exec(
        serve.stderr,
      )?.[1];
      assert.ok(serveError !== undefined, serve.stderr);
      assert.match(serveError, expected);
      assert.equal(check.code, 1, check.stdout);
      assert.ok(check.stdout.includes(`${path}: ${serveError}\n`), check.stdout);
      assert.match(check.stdout, new RegExp(`${path}: FAILED \\(${style} style`));
      assert.doesNotMatch(check.stdout, /: OK/);
      assertPrefixed(check.stdout, [path]);
    });
  }

  it("a syntax error in each style: exit 1 with file and line", async () => {
    for (const prefix of ["", COROUTINE, OPENRESTY]) {
      const { code, stdout } = await moonsocket(["check", script(`${prefix}local x = = 1\n`)]);
      assert.equal(code, 1);
      assert.match(stdout, /: syntax error: app\.lua:\d: unexpected symbol near '='/);
      assert.doesNotMatch(stdout, /: OK/);
    }
  });

  it("a warning names the function with its line", async () => {
    const path = script('function main(id, m)\n  if m == "x" then os.execute("ls") end\nend\n');
    const { code, stdout } = await moonsocket(["check", path]);
    assert.equal(code, 0);
    assert.ok(
      stdout.includes(
        `${path}:2: warning: os.execute is not available in the sandbox (os keeps only clock, date, difftime and time)\n`,
      ),
      stdout,
    );
    assert.ok(stdout.endsWith(`${path}: OK (callback style, 1 warning)\n`), stdout);
  });

  it("OpenResty style: the script runs per connection, so a top-level os.execute is a warning; --strict fails it without saying OK", async () => {
    const path = script(`${OPENRESTY}os.execute("ls")\nlocal wb = server:new()\nwb:recv_frame()\n`);
    const plain = await moonsocket(["check", path]);
    assert.equal(plain.code, 0);
    assert.match(plain.stdout, /app\.lua:2: warning: os\.execute is not available/);
    assert.match(plain.stdout, /app\.lua: OK \(openresty style, 1 warning\)\n$/);
    const strict = await moonsocket(["check", "--strict", path]);
    assert.equal(strict.code, 1);
    assert.match(
      strict.stdout,
      /app\.lua: FAILED \(openresty style, 1 warning; --strict treats warnings as errors\)\n$/,
    );
    assert.doesNotMatch(strict.stdout, /: OK/);
  });

  it("what serve logs as a warning while loading is a warning: a callback script without main", async () => {
    const path = script("function on_connect(id) end\n");
    const plain = await moonsocket(["check", path]);
    assert.equal(plain.code, 0);
    assert.ok(
      plain.stdout.includes(
        `${path}: warning: the script defines no main(clientId, message): messages are ignored\n`,
      ),
      plain.stdout,
    );
    const strict = await moonsocket(["check", path, "--strict"]);
    assert.equal(strict.code, 1);
    assert.doesNotMatch(strict.stdout, /: OK/);
  });

  it("a script that puts an erroring __index on _G passes, as serve serves it", async () => {
    const path = script(
      'setmetatable(_G, {__index = function(_, k) error("poisoned global lookup: " .. k) end})\n' +
        "function main(id, m) _send(id, m) end\n",
    );
    const { code, stdout } = await moonsocket(["check", path]);
    assert.equal(code, 0, stdout);
    assert.equal(stdout, `${path}: OK (callback style)\n`);
  });
});

describe("moonsocket check's top-level run is bounded like serve's", () => {
  for (const [style, prefix] of [
    ["callback", ""],
    ["coroutine", COROUTINE],
  ]) {
    it(`${style} style: an endless loop at the top level is stopped by the CPU budget and reported`, async () => {
      const path = script(`${prefix}while true do end\n`);
      const { code, stdout } = await moonsocket(["check", path, "--cpu-budget", "100ms"]);
      assert.equal(code, 1);
      assert.match(stdout, /: error while loading the script: app\.lua:\d: cpu budget exceeded/);
      assert.doesNotMatch(stdout, /: OK/);
    });

    it(`${style} style: an allocation past the memory limit is reported`, async () => {
      const path = script(`${prefix}local big = string.rep("x", 20 * 1024 * 1024)\n`);
      const capped = await moonsocket(["check", path, "--memory-limit", "8MiB"]);
      assert.equal(capped.code, 1);
      assert.match(capped.stdout, /: error while loading the script: .*not enough memory/);
      const roomy = await moonsocket(["check", path]);
      assert.equal(roomy.code, 0, roomy.stdout);
    });
  }
});

describe("moonsocket check opens no socket", () => {
  /** A TCP server on a free port that counts the connections it gets. */
  async function countingServer(): Promise<{ server: Server; port: number; count: () => number }> {
    let connections = 0;
    const server = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    assert.ok(address !== null && typeof address === "object");
    return { server, port: address.port, count: () => connections };
  }

  it("coroutine style: a top-level http.listen is recorded, not listened on (its port may be busy)", async () => {
    const busy = await countingServer();
    try {
      const path = script(
        `local http = require "silly.net.http"\nlocal ok, err = http.listen { addr = "127.0.0.1:${busy.port}", handler = function() end }\nassert(ok, err)\n`,
      );
      const { code, stdout } = await moonsocket(["check", path]);
      assert.equal(code, 0, stdout);
      assert.equal(
        stdout,
        `${path}: would listen on 127.0.0.1:${busy.port} (check opens no port)\n${path}: OK (coroutine style)\n`,
      );
    } finally {
      busy.server.close();
    }
  });

  it("coroutine style: a top-level websocket.connect never connects", async () => {
    const peer = await countingServer();
    try {
      const path = script(
        `local websocket = require "silly.net.websocket"\nlocal sock, err = websocket.connect("ws://127.0.0.1:${peer.port}/")\nassert(sock, err)\n`,
      );
      const { code, stdout } = await moonsocket(["check", path]);
      assert.equal(code, 0, stdout);
      assert.match(stdout, /: OK \(coroutine style, 1 warning\)\n$/);
      // The check has exited, so a connection it made is in the accept queue: take it.
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(peer.count(), 0);
    } finally {
      peer.server.close();
    }
  });
});

describe("moonsocket check with several files", () => {
  it("checks each, every line prefixed by its path; exit 1 if any fails", async () => {
    const good = script("function main(id, m) _send(id, m) end\n", "good.lua");
    const bad = script('os.execute("ls")\n', "bad.lua");
    const missing = join(tmpdir(), "moonsocket-check-missing", "missing.lua");
    const { code, stdout } = await moonsocket(["check", good, bad, missing]);
    assert.equal(code, 1);
    assertPrefixed(stdout, [good, bad, missing]);
    assert.ok(stdout.includes(`${good}: OK (callback style)\n`), stdout);
    assert.match(stdout, /bad\.lua: FAILED \(callback style, 1 error, 1 warning\)\n/);
    assert.ok(stdout.endsWith(`${missing}: cannot read ${missing}: no such file\n`), stdout);
  });

  it("exit 0 when every file passes", async () => {
    const a = script("function main(id, m) _send(id, m) end\n", "a.lua");
    const b = script(`${OPENRESTY}local wb = server:new()\nwb:recv_frame()\n`, "b.lua");
    const { code, stdout } = await moonsocket(["check", a, b]);
    assert.equal(code, 0);
    assert.equal(stdout, `${a}: OK (callback style)\n${b}: OK (openresty style)\n`);
  });

  it("a missing file alone: one sentence, no raw error code, exit 1", async () => {
    const { code, stdout, stderr } = await moonsocket(["check", "missing.lua"]);
    assert.equal(code, 1);
    assert.equal(stdout, "missing.lua: cannot read missing.lua: no such file\n");
    assert.equal(stderr, "");
  });
});

describe("moonsocket check --help", () => {
  it("describes the load, several files, --strict and the limits", async () => {
    const { code, stdout } = await moonsocket(["check", "--help"]);
    assert.equal(code, 0);
    const text = stdout.replace(/\s+/g, " ");
    for (const expected of [
      "script.lua...",
      "exactly as 'serve' loads it",
      "http.listen is recorded",
      "websocket.connect never connects",
      "os.execute",
      "Every output line starts with the script's path",
      "--strict",
      "--cpu-budget",
      "--memory-limit",
      "cannot be read",
    ])
      assert.ok(text.includes(expected), `--help lacks: ${expected}`);
  });
});
