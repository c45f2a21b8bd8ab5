import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Worker } from "node:worker_threads";
import {
  createStaticHandler,
  getContentType,
  type StaticHandlerOptions,
} from "../../../src/server/static-files.js";

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

let base: string;
let root: string;

/** Starts a server on 127.0.0.1:0 answering 404 "not found" when the handler declines. */
async function startServer(options: StaticHandlerOptions = {}) {
  const handle = createStaticHandler(root, options);
  const results: Promise<boolean>[] = [];
  const server = http.createServer((req, res) => {
    const result = handle(req, res);
    results.push(result);
    void result.then((handled) => {
      if (!handled) {
        res.writeHead(404, { "Content-Type": "text/plain" });
        res.end("not found");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { server, port, results };
}

function request(
  port: number,
  target: string,
  options: { method?: string; headers?: http.OutgoingHttpHeaders } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path: target,
        method: options.method ?? "GET",
        headers: options.headers ?? {},
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** Sends a request line byte for byte (the http client would normalise or refuse some paths). */
function rawRequest(port: number, target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    });
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => (text += chunk));
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
  });
}

function statusOf(raw: string): number {
  return Number(raw.split(" ")[1]);
}

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), "moonsocket-static-"));
  root = path.join(base, "public");
  const outside = path.join(base, "outside");
  await mkdir(path.join(root, "sub"), { recursive: true });
  await mkdir(path.join(root, "empty-dir"));
  await mkdir(path.join(root, ".git"));
  await mkdir(outside);
  await writeFile(path.join(root, "index.html"), "<h1>home</h1>");
  await writeFile(path.join(root, "app.js"), "console.log(1)");
  await writeFile(path.join(root, "style.css"), "body{}");
  await writeFile(path.join(root, "data.json"), "{}");
  await writeFile(path.join(root, "logo.png"), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
  await writeFile(path.join(root, "server.lua"), "print('hi')");
  await writeFile(path.join(root, "blob.bin"), "??");
  await writeFile(path.join(root, "empty.txt"), "");
  await writeFile(path.join(root, "file with space.txt"), "spaced");
  await writeFile(path.join(root, "ünï.txt"), "unicode");
  await writeFile(path.join(root, ".env"), "SECRET=1");
  await writeFile(path.join(root, ".git", "config"), "secret");
  await writeFile(path.join(root, "sub", "index.html"), "<h1>sub</h1>");
  await writeFile(path.join(root, "sub", "page.txt"), "page");
  await writeFile(path.join(root, "big.bin"), Buffer.alloc(8 * 1024 * 1024, 7));
  await writeFile(path.join(outside, "secret.txt"), "outside secret");
  await writeFile(path.join(base, "sibling.txt"), "sibling secret");
  await symlink(path.join(outside, "secret.txt"), path.join(root, "escape.txt"));
  await symlink(outside, path.join(root, "escape-dir"));
  await symlink(path.join(root, "app.js"), path.join(root, "alias.js"));
  await symlink(path.join(root, ".env"), path.join(root, "env-link.txt"));
  const old = new Date("2020-01-01T00:00:00Z");
  await utimes(path.join(root, "app.js"), old, old);
});

after(async () => {
  await rm(base, { recursive: true, force: true });
});

describe("serving files", () => {
  let server: http.Server;
  let port: number;
  before(async () => ({ server, port } = await startServer()));
  after(() => server.close());

  it("serves / and directories as index.html", async () => {
    const home = await request(port, "/");
    assert.equal(home.status, 200);
    assert.equal(home.body, "<h1>home</h1>");
    assert.equal(home.headers["content-type"], "text/html; charset=utf-8");
    assert.equal(home.headers["content-length"], "13");
    const sub = await request(port, "/sub/");
    assert.equal(sub.body, "<h1>sub</h1>");
  });

  it("redirects a directory without its trailing slash, keeping the query", async () => {
    const reply = await request(port, "/sub?x=1");
    assert.equal(reply.status, 301);
    assert.equal(reply.headers.location, "/sub/?x=1");
  });

  it("builds the redirect from the checked path, never a protocol-relative URL", async () => {
    const reply = await request(port, "//sub");
    assert.equal(reply.status, 301);
    assert.equal(reply.headers.location, "/sub/");
  });

  it("declines a directory without an index", async () => {
    assert.equal((await request(port, "/empty-dir/")).status, 404);
  });

  it("sends the right Content-Type per extension", async () => {
    const cases: [string, string][] = [
      ["/app.js", "text/javascript; charset=utf-8"],
      ["/style.css", "text/css; charset=utf-8"],
      ["/data.json", "application/json; charset=utf-8"],
      ["/logo.png", "image/png"],
      ["/server.lua", "text/plain; charset=utf-8"],
      ["/blob.bin", "application/octet-stream"],
    ];
    for (const [target, type] of cases) {
      const reply = await request(port, target);
      assert.equal(reply.status, 200, target);
      assert.equal(reply.headers["content-type"], type, target);
      assert.equal(reply.headers["x-content-type-options"], "nosniff");
    }
  });

  it("decodes percent-encoded names and ignores query strings and fragments", async () => {
    assert.equal((await request(port, "/file%20with%20space.txt")).body, "spaced");
    assert.equal((await request(port, `/${encodeURIComponent("ünï.txt")}`)).body, "unicode");
    assert.equal((await request(port, "/app.js?v=123&x=/../..")).body, "console.log(1)");
    assert.equal(statusOf(await rawRequest(port, "/app.js#frag")), 200);
  });

  it("serves an empty file", async () => {
    const reply = await request(port, "/empty.txt");
    assert.equal(reply.status, 200);
    assert.equal(reply.headers["content-length"], "0");
    assert.equal(reply.body, "");
  });

  it("streams a large file whole", async () => {
    const reply = await request(port, "/big.bin");
    assert.equal(reply.status, 200);
    assert.equal(reply.headers["content-length"], String(8 * 1024 * 1024));
    assert.equal(reply.body.length, 8 * 1024 * 1024);
  });

  it("answers HEAD with headers only", async () => {
    const reply = await request(port, "/app.js", { method: "HEAD" });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers["content-length"], "14");
    assert.equal(reply.body, "");
  });

  it("answers other methods on existing files with 405 and Allow", async () => {
    const reply = await request(port, "/app.js", { method: "POST" });
    assert.equal(reply.status, 405);
    assert.equal(reply.headers.allow, "GET, HEAD");
    assert.equal((await request(port, "/", { method: "DELETE" })).status, 405);
  });

  it("declines other methods on missing files", async () => {
    assert.equal((await request(port, "/nope.js", { method: "POST" })).status, 404);
  });

  it("declines missing files", async () => {
    assert.equal((await request(port, "/missing.html")).status, 404);
    assert.equal((await request(port, "/app.js/x")).status, 404);
    assert.equal((await request(port, "*")).status, 404);
  });

  it("follows symlinks that stay inside the root", async () => {
    const reply = await request(port, "/alias.js");
    assert.equal(reply.body, "console.log(1)");
    assert.equal(reply.headers["content-type"], "text/javascript; charset=utf-8");
  });
});

describe("path safety", () => {
  let server: http.Server;
  let port: number;
  before(async () => ({ server, port } = await startServer()));
  after(() => server.close());

  it("never serves dotfiles or files in dot folders", async () => {
    for (const target of ["/.env", "/%2eenv", "/.git/config", "/.git/", "/sub/../.env"]) {
      const raw = await rawRequest(port, target);
      assert.doesNotMatch(raw, /SECRET|secret/, target);
      assert.ok([400, 404].includes(statusOf(raw)), target);
    }
  });

  it("refuses symlinks to a dotfile inside the root", async () => {
    assert.equal((await request(port, "/env-link.txt")).status, 404);
  });

  it("refuses symlinks leading outside the root", async () => {
    assert.equal((await request(port, "/escape.txt")).status, 404);
    assert.equal((await request(port, "/escape-dir/secret.txt")).status, 404);
    assert.equal((await request(port, "/escape-dir/")).status, 404);
  });

  it("answers dot segments, encoded slashes, backslashes and NUL with 400", async () => {
    const targets = [
      "/../sibling.txt",
      "/../outside/secret.txt",
      "/sub/../../sibling.txt",
      "/%2e%2e/sibling.txt",
      "/%2E%2E/sibling.txt",
      "/.%2e/sibling.txt",
      "/sub/%2e%2e/%2e%2e/sibling.txt",
      "/..%2fsibling.txt",
      "/..%2Fsibling.txt",
      "/sub%2f..%2f..%2fsibling.txt",
      "/..\\sibling.txt",
      "/..%5csibling.txt",
      "/app.js%00.html",
      "/./app.js",
      "/%2e/app.js",
    ];
    for (const target of targets) {
      const raw = await rawRequest(port, target);
      assert.equal(statusOf(raw), 400, target);
      assert.doesNotMatch(raw, /secret/, target);
    }
  });

  it("answers malformed percent-encoding with 400", async () => {
    for (const target of ["/%", "/%zz", "/%e0%a4", "/a%2"]) {
      assert.equal((await request(port, target)).status, 400, target);
    }
  });

  it("refuses absolute-form targets", async () => {
    const raw = await rawRequest(port, `http://x${path.join(base, "sibling.txt")}`);
    assert.equal(statusOf(raw), 404);
  });
});

// Only Linux verifies after the open (/proc); elsewhere the documented fallback can lose this race.
describe("a folder swapped for a symlink while requests run", {
  skip: !existsSync("/proc/self/fd") && "no /proc here",
}, () => {
  /**
   * Swaps `folder` (a real folder inside the root) for a symlink to `outside` and back, in a
   * tight loop on its own thread, until `stop` is set or `maxSwaps` cycles have run. Each cycle
   * ends with the real folder back in place.
   */
  const SWAPPER = `
    const { renameSync, symlinkSync, unlinkSync } = require("node:fs");
    const { parentPort, workerData } = require("node:worker_threads");
    const { folder, saved, outside, stop, maxSwaps } = workerData;
    const flag = new Int32Array(stop);
    let swaps = 0;
    while (Atomics.load(flag, 0) === 0 && swaps < maxSwaps) {
      renameSync(folder, saved);
      symlinkSync(outside, folder);
      unlinkSync(folder);
      renameSync(saved, folder);
      swaps++;
    }
    parentPort.postMessage(swaps);
  `;

  it("never serves the outside folder's files", async (t) => {
    const folder = path.join(root, "box");
    const outside = path.join(base, "outside-box");
    await mkdir(folder);
    await mkdir(outside);
    await writeFile(path.join(folder, "data.txt"), "inside");
    await writeFile(path.join(folder, "index.html"), "inside");
    await writeFile(path.join(outside, "data.txt"), "OUTSIDE SECRET");
    await writeFile(path.join(outside, "index.html"), "OUTSIDE SECRET");
    const { server, port } = await startServer();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const stop = new SharedArrayBuffer(4);
    const swapper = new Worker(SWAPPER, {
      eval: true,
      workerData: { folder, saved: path.join(root, ".box-saved"), outside, stop, maxSwaps: 1e6 },
    });
    const swapsDone = new Promise<number>((resolve, reject) => {
      swapper.once("message", resolve);
      swapper.once("error", reject);
    });
    const counts = { leaked: 0, inside: 0, declined: 0 };
    try {
      const targets = ["/box/data.txt", "/box/"];
      let next = 0;
      const total = 4000;
      const client = async () => {
        while (next < total) {
          const target = targets[next++ % targets.length] ?? "/";
          const reply = await getWithAgent(agent, port, target);
          if (reply.body.includes("OUTSIDE")) counts.leaked++;
          else if (reply.status === 200) counts.inside++;
          else counts.declined++;
        }
      };
      await Promise.all(Array.from({ length: 16 }, client));
    } finally {
      Atomics.store(new Int32Array(stop), 0, 1);
      const swaps = await swapsDone;
      t.diagnostic(`${swaps} swaps; ${JSON.stringify(counts)}`);
      agent.destroy();
      server.close();
    }
    assert.equal(counts.leaked, 0, "responses carrying the outside file");
  });
});

/** GET through a keep-alive agent, so thousands of requests do not use thousands of ports. */
function getWithAgent(agent: http.Agent, port: number, target: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: target, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

describe("conditional requests", () => {
  let server: http.Server;
  let port: number;
  before(async () => ({ server, port } = await startServer()));
  after(() => server.close());

  it("sends Last-Modified, ETag and Cache-Control", async () => {
    const reply = await request(port, "/app.js");
    assert.equal(reply.headers["last-modified"], "Wed, 01 Jan 2020 00:00:00 GMT");
    assert.match(reply.headers.etag ?? "", /^W\/"[0-9a-f.]+-[0-9a-f.]+"$/);
    assert.equal(reply.headers["cache-control"], "no-cache");
  });

  it("answers a fresh If-Modified-Since with 304 and no body", async () => {
    const reply = await request(port, "/app.js", {
      headers: { "If-Modified-Since": "Wed, 01 Jan 2020 00:00:00 GMT" },
    });
    assert.equal(reply.status, 304);
    assert.equal(reply.body, "");
    const later = await request(port, "/app.js", {
      headers: { "If-Modified-Since": "Thu, 02 Jan 2020 00:00:00 GMT" },
    });
    assert.equal(later.status, 304);
  });

  it("serves the file when If-Modified-Since is older or invalid", async () => {
    for (const date of ["Tue, 31 Dec 2019 23:59:59 GMT", "not a date"]) {
      const reply = await request(port, "/app.js", { headers: { "If-Modified-Since": date } });
      assert.equal(reply.status, 200, date);
    }
  });

  it("answers a matching If-None-Match with 304, and lets it override If-Modified-Since", async () => {
    const { headers } = await request(port, "/app.js");
    const etag = headers.etag ?? "";
    assert.equal(
      (await request(port, "/app.js", { headers: { "If-None-Match": etag } })).status,
      304,
    );
    assert.equal(
      (await request(port, "/app.js", { headers: { "If-None-Match": `"x", ${etag.slice(2)}` } }))
        .status,
      304,
    );
    assert.equal(
      (await request(port, "/app.js", { headers: { "If-None-Match": "*" } })).status,
      304,
    );
    const mismatch = await request(port, "/app.js", {
      headers: { "If-None-Match": '"other"', "If-Modified-Since": "Thu, 02 Jan 2020 00:00:00 GMT" },
    });
    assert.equal(mismatch.status, 200);
  });
});

describe("options", () => {
  it("can turn off ETag and Cache-Control and change the index name", async () => {
    await writeFile(path.join(root, "sub", "start.html"), "start");
    const { server, port } = await startServer({
      etag: false,
      cacheControl: false,
      index: "start.html",
    });
    try {
      const reply = await request(port, "/sub/");
      assert.equal(reply.body, "start");
      assert.equal(reply.headers.etag, undefined);
      assert.equal(reply.headers["cache-control"], undefined);
      const ifNoneMatch = await request(port, "/sub/", { headers: { "If-None-Match": "*" } });
      assert.equal(ifNoneMatch.status, 200);
    } finally {
      server.close();
    }
  });

  it("throws at creation for a missing or non-directory root", () => {
    const missing = path.join(base, "does-not-exist");
    assert.throws(() => createStaticHandler(missing), {
      message: `static folder ${missing} does not exist`,
    });
    const file = path.join(base, "sibling.txt");
    assert.throws(() => createStaticHandler(file), {
      message: `static folder ${file} is not a folder`,
    });
  });
});

describe("robustness", () => {
  it("survives a client that goes away mid-transfer", async () => {
    const { server, port, results } = await startServer();
    try {
      await new Promise<void>((resolve, reject) => {
        const req = http.get({ host: "127.0.0.1", port, path: "/big.bin", agent: false }, (res) => {
          res.once("data", () => {
            req.destroy();
            resolve();
          });
        });
        req.on("error", (error: NodeJS.ErrnoException) => {
          if (error.code !== "ECONNRESET") reject(error);
        });
      });
      assert.equal(await results[0], true);
      assert.equal((await request(port, "/app.js")).status, 200);
    } finally {
      server.close();
    }
  });
});

describe("getContentType", () => {
  it("maps every listed extension, case-insensitively", () => {
    const expected: Record<string, string> = {
      "a.html": "text/html; charset=utf-8",
      "a.HTML": "text/html; charset=utf-8",
      "a.mjs": "text/javascript; charset=utf-8",
      "a.svg": "image/svg+xml; charset=utf-8",
      "a.jpg": "image/jpeg",
      "a.gif": "image/gif",
      "a.ico": "image/x-icon",
      "a.webp": "image/webp",
      "a.woff": "font/woff",
      "a.woff2": "font/woff2",
      "a.ttf": "font/ttf",
      "a.txt": "text/plain; charset=utf-8",
      "a.wasm": "application/wasm",
      "a.js.map": "application/json; charset=utf-8",
      "a.lua": "text/plain; charset=utf-8",
      Makefile: "application/octet-stream",
    };
    for (const [name, type] of Object.entries(expected))
      assert.equal(getContentType(name), type, name);
  });
});
