/**
 * `moonsocket serve` and `moonsocket check` as a user runs them: child processes, banners,
 * exit codes, script errors with line numbers, and --watch.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { PATIENCE_MS } from "../helpers/net-helpers.js";
import { openClient } from "../helpers/script-server.js";

const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

function run(args: string[]) {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number>((resolve) => child.on("exit", (code) => resolve(code ?? -1)));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

async function waitFor(
  predicate: () => boolean,
  what: string,
  timeoutMs = PATIENCE_MS,
): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function script(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), "moonsocket-serve-"));
  const path = join(dir, "app.lua");
  writeFileSync(path, source);
  return path;
}

async function serve(path: string, extra: string[] = []) {
  const proc = run(["serve", path, "--port", "0", ...extra]);
  let url = "";
  await waitFor(() => {
    const match = /listening on (ws:\/\/127\.0\.0\.1:\d+\/)/.exec(proc.stdout());
    if (match) url = match[1]!;
    return url !== "" || proc.child.exitCode !== null;
  }, "the serve banner");
  assert.notEqual(url, "", `serve exited: ${proc.stderr()}`);
  return { proc, url };
}

describe("moonsocket serve", () => {
  it("serves a callback-style script and exits 0 on SIGTERM, closing clients with 1001", async () => {
    const { proc, url } = await serve(
      script('function main(id, m) _send(id, "You said: " .. m) end\n'),
    );
    const client = await openClient(url);
    client.send("hi");
    assert.equal(await client.next(), "You said: hi");
    proc.child.kill("SIGTERM");
    assert.equal((await client.closed).code, 1001);
    assert.equal(await proc.exited, 0);
  });

  it("a missing script: exit 2 with a message", async () => {
    const proc = run(["serve", "/nonexistent/app.lua"]);
    assert.equal(await proc.exited, 2);
    assert.match(proc.stderr(), /no such script '\/nonexistent\/app\.lua'/);
  });

  it("a missing or non-folder --static: exit 2 with a one-line message", async () => {
    const app = script("function main(id, m) end\n");
    for (const [dir, problem] of [
      ["/nonexistent-static", "does not exist"],
      [app, "is not a folder"],
    ] as const) {
      const proc = run(["serve", app, "--port", "0", "--static", dir]);
      // "close" rather than "exit": stderr has then been read to its end.
      const [code] = await once(proc.child, "close");
      assert.equal(code, 2, dir);
      assert.equal(proc.stderr(), `moonsocket serve: static folder ${dir} ${problem}\n`);
    }
  });

  it("a syntax error: exit 1 naming the file and line", async () => {
    const proc = run([
      "serve",
      script("function main(id, m)\n  _send(id, m\nend\n"),
      "--port",
      "0",
    ]);
    assert.equal(await proc.exited, 1);
    assert.match(proc.stderr(), /syntax error: .*app\.lua:3:/);
  });

  it("a port in use: exit 1 saying so", async () => {
    const first = await serve(script("function main() end\n"));
    const port = new URL(first.url).port;
    const second = run(["serve", script("function main() end\n"), "--port", port]);
    assert.equal(await second.exited, 1);
    assert.match(second.stderr(), new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));
  });

  it("a coroutine-style script listening twice on one port: exit 1 naming that port", async () => {
    const first = await serve(script("function main() end\n"));
    const port = new URL(first.url).port;
    const source = [
      'local task = require "silly.task"',
      'local http = require "silly.net.http"',
      "task.fork(function()",
      `  http.listen { addr = "127.0.0.1:${port}", handler = function() end }`,
      "end)",
      "",
    ].join("\n");
    const second = run(["serve", script(source)]);
    assert.equal(await second.exited, 1);
    assert.match(second.stderr(), new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));
  });

  it("--watch swaps an edited callback script in place, keeping connections", async () => {
    const path = script('function main(id, m) _send(id, "v1 " .. m) end\n');
    const { proc, url } = await serve(path, ["--watch"]);
    const client = await openClient(url);
    client.send("a");
    assert.equal(await client.next(), "v1 a");
    writeFileSync(
      path,
      'function main(id, m) _send(id, "v2 " .. m) end\nfunction on_connect(id) _send(id, "welcome back " .. id) end\n',
    );
    assert.equal(await client.next(), "welcome back 0");
    client.send("b");
    assert.equal(await client.next(), "v2 b");
    // A broken edit keeps the running script.
    writeFileSync(path, "function main(id, m\n");
    await waitFor(() => /reload failed/.test(proc.stderr()), "the reload failure");
    client.send("c");
    assert.equal(await client.next(), "v2 c");
    client.close();
  });
});

describe("moonsocket serve --watch and modules", () => {
  /** A folder with app.lua and the given modules; returns the folder. */
  function project(files: Record<string, string>): string {
    const dir = mkdtempSync(join(tmpdir(), "moonsocket-watch-"));
    for (const [name, source] of Object.entries(files)) writeFileSync(join(dir, name), source);
    return dir;
  }
  const tagger = (version: string) =>
    `return { tag = function(m) return "${version} " .. m end }\n`;

  it("reloads when a module required at startup changes, naming the file", async () => {
    const dir = project({
      "app.lua": 'local util = require "util"\nfunction main(id, m) _send(id, util.tag(m)) end\n',
      "util.lua": tagger("v1"),
    });
    const { proc, url } = await serve(join(dir, "app.lua"), ["--watch"]);
    const client = await openClient(url);
    client.send("a");
    assert.equal(await client.next(10_000), "v1 a");
    writeFileSync(join(dir, "util.lua"), tagger("v2"));
    await waitFor(() => /script reloaded/.test(proc.stderr()), "the reload", 15_000);
    assert.match(proc.stderr(), /INFO {2}util\.lua changed, reloading/);
    client.send("b");
    assert.equal(await client.next(10_000), "v2 b");
    client.close();
  });

  it("reloads when a module first required after startup changes", async () => {
    const dir = project({
      "app.lua": 'function main(id, m) _send(id, require("late").tag(m)) end\n',
      "late.lua": tagger("v1"),
    });
    const { proc, url } = await serve(join(dir, "app.lua"), ["--watch"]);
    const client = await openClient(url);
    client.send("a");
    assert.equal(await client.next(10_000), "v1 a");
    writeFileSync(join(dir, "late.lua"), tagger("v2"));
    await waitFor(() => /script reloaded/.test(proc.stderr()), "the reload", 15_000);
    assert.match(proc.stderr(), /late\.lua changed, reloading/);
    client.send("b");
    assert.equal(await client.next(10_000), "v2 b");
    client.close();
  });
});

describe("moonsocket serve logs", () => {
  it("the disconnect line carries the code and reason the script closed the client with", async () => {
    const path = script('function on_connect(id) _close(id, 4001, "invalid token") end\n');
    const { proc, url } = await serve(path, ["--log-level", "debug"]);
    const client = await openClient(url);
    const closed = await client.closed;
    assert.deepEqual(closed, { code: 4001, reason: "invalid token" });
    await waitFor(() => /client disconnected/.test(proc.stderr()), "the disconnect line");
    assert.match(
      proc.stderr(),
      /DEBUG client disconnected id=0 code=4001 reason="invalid token" closedBy=server clean=true/,
    );
  });

  it("the disconnect line carries the code and reason the client closed with", async () => {
    const { proc, url } = await serve(script("function main() end\n"), ["--log-level", "debug"]);
    const client = await openClient(url);
    client.ws.close(4100, "bye now");
    await client.closed;
    await waitFor(() => /client disconnected/.test(proc.stderr()), "the disconnect line");
    assert.match(proc.stderr(), /client disconnected id=0 code=4100 reason="bye now" clean=true/);
  });
});

describe("moonsocket check", () => {
  it("a good script: exit 0, its style", async () => {
    const proc = run([
      "check",
      script('local ws = require "resty.websocket.server"\nlocal wb = ws:new()\nwb:recv_frame()\n'),
    ]);
    assert.equal(await proc.exited, 0);
    assert.match(proc.stdout(), /app\.lua: OK \(openresty style\)/);
  });

  it("a syntax error: exit 1 with file and line", async () => {
    const proc = run(["check", script("function main(id, m)\n  if m then\nend\n")]);
    assert.equal(await proc.exited, 1);
    assert.match(proc.stdout(), /app\.lua:4: 'end' expected/);
  });

  it("unsupported features are warnings with line numbers; --strict makes them fatal", async () => {
    const path = script('function main(id, m)\n  local f = io.open("x")\nend\n');
    const proc = run(["check", path]);
    assert.equal(await proc.exited, 0);
    assert.match(proc.stdout(), /app\.lua:2: warning: the io library is not available/);
    const strict = run(["check", path, "--strict"]);
    assert.equal(await strict.exited, 1);
  });
});
