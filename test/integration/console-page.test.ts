/**
 * The built-in console page over real HTTP: served at `/` when `consolePage` is on and there
 * is no static folder, the folder winning when there is one, 404 elsewhere; and the CLI's
 * `serve` and `echo` turning it on (or not, with --static) and pointing to it in their banner.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import {
  httpRequest,
  Resources,
  startEchoServer,
  startServer,
  WsPeer,
  withTimeout,
} from "../helpers/net-helpers.js";
import { startScript } from "../helpers/script-server.js";

const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
const TITLE = "<title>moonsocket console</title>";
const resources = new Resources();
afterEach(() => resources.closeAll());

let dir: string;
let staticDir: string;
before(() => {
  dir = mkdtempSync(path.join(tmpdir(), "moonsocket-console-"));
  staticDir = path.join(dir, "public");
  mkdirSync(staticDir);
  writeFileSync(path.join(staticDir, "index.html"), "<!doctype html><title>mine</title>");
  writeFileSync(path.join(dir, "echo.lua"), "function main(id, m, bin) _send(id, m) end\n");
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** The endpoint path the page's URL field starts with. */
function endpointOf(html: string): string | undefined {
  return /<meta name="moonsocket-endpoint" content="([^"]*)">/.exec(html)?.[1];
}

describe("the console page (ServerOptions.consolePage)", () => {
  it("GET / and /index.html return the page as HTML, with a CSP that allows nothing external", async () => {
    const { port } = await startServer(resources, { consolePage: true });
    for (const urlPath of ["/", "/index.html", "/?debug=1"]) {
      const res = await httpRequest(port, urlPath);
      assert.equal(res.status, 200, urlPath);
      assert.equal(res.headers["content-type"], "text/html; charset=utf-8");
      const html = res.body.toString("utf8");
      assert.ok(html.includes(TITLE), urlPath);
      assert.equal(Number(res.headers["content-length"]), res.body.length);
      assert.match(String(res.headers["content-security-policy"]), /default-src 'none'/);
      // Nothing fetched from elsewhere: no http(s) URL in a src or href.
      assert.doesNotMatch(html, /(src|href)="https?:/);
    }
  });

  it("HEAD / has the headers and no body; POST / is 405", async () => {
    const { port } = await startServer(resources, { consolePage: true });
    const head = await httpRequest(port, "/", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.ok(Number(head.headers["content-length"]) > 1000);
    const post = await httpRequest(port, "/", { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, "GET, HEAD");
  });

  it("every other path stays a 404", async () => {
    const { port } = await startServer(resources, { consolePage: true });
    for (const urlPath of ["/favicon.ico", "/index.htm", "/console", "/ws"]) {
      const res = await httpRequest(port, urlPath);
      assert.equal(res.status, 404, urlPath);
      assert.equal(res.body.toString(), "Not Found\n");
    }
  });

  it("is off by default in the library: GET / is a 404", async () => {
    const { port } = await startServer(resources);
    assert.equal((await httpRequest(port, "/")).status, 404);
  });

  it("a static folder wins: its index.html is served at /", async () => {
    const { port } = await startServer(resources, { consolePage: true, staticDir });
    for (const urlPath of ["/", "/index.html"]) {
      const res = await httpRequest(port, urlPath);
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), "<!doctype html><title>mine</title>", urlPath);
    }
    assert.equal((await httpRequest(port, "/other")).status, 404);
  });

  it("the URL field starts at the first --path when paths are restricted, else at /", async () => {
    const open = await startServer(resources, { consolePage: true });
    assert.equal(endpointOf((await httpRequest(open.port, "/")).body.toString()), "/");
    const restricted = await startServer(resources, {
      consolePage: true,
      path: ["/ws", "/other"],
    });
    assert.equal(endpointOf((await httpRequest(restricted.port, "/")).body.toString()), "/ws");
    const quoted = await startServer(resources, { consolePage: true, path: '/a"<b' });
    assert.equal(
      endpointOf((await httpRequest(quoted.port, "/")).body.toString()),
      "/a&quot;&lt;b",
    );
  });

  it("/ still upgrades to a WebSocket beside the page", async () => {
    const { url, port } = await startEchoServer(resources, { consolePage: true });
    assert.equal((await httpRequest(port, "/")).status, 200);
    const peer = await new WsPeer(new WebSocket(url)).opened();
    resources.add(peer, (p) => p.ws.terminate());
    peer.ws.send("same path");
    assert.equal((await peer.next()).data.toString(), "same path");
  });

  it("a coroutine-style script: a request its handler leaves unanswered gets the page", async () => {
    const script = path.join(dir, "silly.lua");
    writeFileSync(
      script,
      [
        'local task = require "silly.task"',
        'local http = require "silly.net.http"',
        "task.fork(function()",
        '  http.listen { addr = ":8085", handler = function(stream)',
        '    if stream.path == "/answered" then',
        '      stream:respond(200, {["content-type"] = "text/plain"})',
        '      stream:close("from the script")',
        "    end",
        "  end }",
        "end)",
        "",
      ].join("\n"),
    );
    const running = await startScript(script, { serverOptions: { consolePage: true } });
    resources.add(running, (r) => r.stop());
    const port = Number(new URL(running.url).port);
    const page = await httpRequest(port, "/");
    assert.equal(page.status, 200);
    assert.ok(page.body.toString().includes(TITLE));
    assert.equal((await httpRequest(port, "/answered")).body.toString(), "from the script");
    assert.equal((await httpRequest(port, "/elsewhere")).status, 404);
  });
});

// ---- the CLI -----------------------------------------------------------------------------

interface Started {
  stdout: string;
  port: number;
}

/** Runs `moonsocket ARGS --port 0` and resolves with its banner once it printed one. */
function startCli(args: string[]): Promise<Started> {
  const child = spawn(process.execPath, [MAIN, ...args, "--port", "0", "--log-level", "warn"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  resources.add(child, (c: ChildProcess) => {
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((resolve) => c.once("exit", resolve));
    c.kill("SIGKILL");
    return exited;
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  return withTimeout(
    new Promise<Started>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        const match = /listening on ws:\/\/127\.0\.0\.1:(\d+)\/.*\n/.exec(stdout);
        if (match) resolve({ stdout, port: Number(match[1]) });
      });
      child.once("exit", (code) => reject(new Error(`exited ${code}: ${stderr}`)));
    }),
    10_000,
    `the banner of moonsocket ${args[0]}`,
  );
}

describe("the console page from the command line", () => {
  it("serve without --static: the banner points to the console, which / serves", async () => {
    const { stdout, port } = await startCli(["serve", path.join(dir, "echo.lua")]);
    assert.match(
      stdout,
      new RegExp(
        `^moonsocket serve listening on ws://127\\.0\\.0\\.1:${port}/ \\(open http://127\\.0\\.0\\.1:${port}/ for a console\\)$`,
        "m",
      ),
    );
    const res = await httpRequest(port, "/");
    assert.equal(res.status, 200);
    assert.ok(res.body.toString().includes(TITLE));
    assert.equal((await httpRequest(port, "/missing")).status, 404);
  });

  it("serve --path /ws: the page's URL field starts at /ws", async () => {
    const { port } = await startCli(["serve", path.join(dir, "echo.lua"), "--path", "/ws"]);
    assert.equal(endpointOf((await httpRequest(port, "/")).body.toString()), "/ws");
  });

  it("serve --static DIR: the folder's index is served at /, and the banner says so", async () => {
    const { stdout, port } = await startCli([
      "serve",
      path.join(dir, "echo.lua"),
      "--static",
      staticDir,
    ]);
    assert.match(stdout, /\(open http:\/\/127\.0\.0\.1:\d+\/ in a browser\)\n/);
    const res = await httpRequest(port, "/");
    assert.equal(res.body.toString(), "<!doctype html><title>mine</title>");
  });

  it("echo: the banner points to the console, which / serves", async () => {
    const { stdout, port } = await startCli(["echo"]);
    assert.equal(
      stdout,
      `moonsocket echo listening on ws://127.0.0.1:${port}/ (open http://127.0.0.1:${port}/ for a console)\n`,
    );
    const res = await httpRequest(port, "/");
    assert.equal(res.status, 200);
    assert.ok(res.body.toString().includes(TITLE));
  });
});
