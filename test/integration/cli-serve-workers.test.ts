/**
 * `moonsocket serve SCRIPT --workers 2` as a user runs it: a real primary and two real worker
 * processes sharing one port, acting as one server (ids, _send, _sendAll, _clients, /metrics,
 * /healthz, ngx.shared), a worker SIGKILLed and replaced, SIGTERM ending the whole tree.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { type CliRun, exitCode, runCli, waitForBanner } from "../helpers/cli-process.js";
import {
  fetchMetrics,
  httpRequest,
  metricValue,
  PATIENCE_MS,
  Resources,
  waitUntil,
} from "../helpers/net-helpers.js";
import { openClient, type TestClient } from "../helpers/script-server.js";

const CALLBACK_SCRIPT = `
function on_connect(id) _send(id, "id " .. id) end
function main(id, msg)
  if msg == "all" then _sendAll("all from " .. id)
  elseif msg:sub(1, 3) == "to " then _send(tonumber(msg:sub(4)), "hi from " .. id)
  elseif msg == "clients" then _send(id, table.concat(_clients(), ","))
  else _send(id, "echo " .. msg) end
end
`;

const OPENRESTY_SCRIPT = `
local server = require "resty.websocket.server"
local wb = server:new{ timeout = 10000 }
local hits = ngx.shared.hits
while true do
  local data, typ = wb:recv_frame()
  if not data or typ == "close" then break end
  if data == "who" then
    wb:send_text(ngx.worker.id() .. "/" .. ngx.worker.count())
  elseif data == "count" then
    wb:send_text(tostring(hits:get("n")))
  else
    for _ = 1, tonumber(data) do hits:incr("n", 1, 0) end
    wb:send_text("done")
  end
end
`;

interface Health {
  status: string;
  connections: number;
  workers: { worker: number; pid: number; connections: number; status: string }[];
}

function writeScript(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), "moonsocket-workers-"));
  const path = join(dir, "app.lua");
  writeFileSync(path, source);
  return path;
}

async function health(port: number): Promise<Health> {
  const response = await httpRequest(port, "/healthz");
  return JSON.parse(response.body.toString()) as Health;
}

/** Polls an asynchronous condition (a safety net of PATIENCE_MS). */
async function pollUntil(predicate: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + PATIENCE_MS;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Opens `count` clients one after another; each gets its id before the next connects. */
async function connectInOrder(url: string, count: number): Promise<TestClient[]> {
  const clients: TestClient[] = [];
  for (let i = 0; i < count; i++) {
    const client = await openClient(url);
    assert.equal(await client.next(), `id ${i}`);
    clients.push(client);
  }
  return clients;
}

describe("serve --workers 2", () => {
  const resources = new Resources();
  afterEach(() => resources.closeAll());

  async function serveWorkers(script: string, extra: string[] = []) {
    const run = runCli(resources, ["serve", script, "--workers", "2", "--port", "0", ...extra]);
    const url = await waitForBanner(run);
    return { run, url, port: Number(new URL(url).port) };
  }

  function track(clients: TestClient[]): TestClient[] {
    for (const client of clients) resources.add(client, (c) => c.ws.terminate());
    return clients;
  }

  it("is one server: ids 0..19 across both workers, _sendAll and _send cross them, /healthz and /metrics count both, SIGTERM closes every client with 1001 and exits 0", async () => {
    const { run, url, port } = await serveWorkers(writeScript(CALLBACK_SCRIPT));
    assert.match(run.stdout(), /listening on ws:\/\/127\.0\.0\.1:\d+\/ .* with 2 workers/);
    const clients = track(await connectInOrder(url, 20));

    const status = await health(port);
    assert.equal(status.status, "ok");
    assert.equal(status.connections, 20);
    assert.deepEqual(
      status.workers.map((w) => w.worker),
      [1, 2],
    );
    for (const w of status.workers) assert.ok(w.connections > 0, `worker ${w.worker} has clients`);

    clients[3]!.send("clients");
    assert.equal(await clients[3]!.next(), Array.from({ length: 20 }, (_, i) => i).join(","));

    clients[0]!.send("all");
    for (const client of clients) assert.equal(await client.next(), "all from 0");
    for (let id = 1; id < 20; id++) clients[0]!.send(`to ${id}`);
    for (const client of clients.slice(1)) assert.equal(await client.next(), "hi from 0");

    const metrics = await fetchMetrics(port);
    const connections = [1, 2].map(
      (worker) => metricValue(metrics, "moonsocket_connections", { worker: String(worker) }) ?? 0,
    );
    assert.equal(connections[0]! + connections[1]!, 20);
    assert.equal(metricValue(metrics, "moonsocket_messages_received_total"), 21);
    assert.equal(metricValue(metrics, "moonsocket_worker_restarts_total"), 0);

    const closes = clients.map((client) => client.closed);
    run.child.kill("SIGTERM");
    for (const close of await Promise.all(closes)) assert.equal(close.code, 1001);
    assert.equal(await exitCode(run), 0, run.stderr());
  });

  it("replaces a SIGKILLed worker: its clients drop, the other's keep working, new clients connect and get the freed ids", async () => {
    const { run, url, port } = await serveWorkers(writeScript(CALLBACK_SCRIPT));
    const clients = track(await connectInOrder(url, 6));
    const { workers } = await health(port);
    const victim = workers[0]!;
    process.kill(victim.pid, "SIGKILL");
    // Exactly the victim's clients drop (1006); the server frees their ids at once.
    const isClosed = (client: TestClient) => client.ws.readyState === client.ws.CLOSED;
    await waitUntil(
      () => clients.filter(isClosed).length === victim.connections,
      PATIENCE_MS,
      "the dead worker's clients to drop",
    );
    const dropped = [...clients.keys()].filter((i) => isClosed(clients[i]!));
    const survivors = clients.filter((_, i) => !dropped.includes(i));
    assert.ok(survivors.length > 0);
    for (const client of survivors) {
      client.send("ping");
      assert.equal(await client.next(), "echo ping");
    }
    // New connections succeed and get the lowest free ids: the ones the dead worker held.
    for (const id of dropped) {
      const client = track([await openClient(url)])[0]!;
      assert.equal(await client.next(), `id ${id}`);
    }
    await pollUntil(
      async () => (await health(port)).workers.length === 2,
      "the worker to be replaced",
    );
    const metrics = await fetchMetrics(port);
    assert.equal(metricValue(metrics, "moonsocket_worker_restarts_total"), 1);
    assert.match(run.stderr(), /worker died; replacing it worker=1 /);
  });

  it("a SIGKILLed primary leaves no orphan: its workers exit and their connections drop", async () => {
    const { run, url, port } = await serveWorkers(writeScript(CALLBACK_SCRIPT));
    const clients = track(await connectInOrder(url, 2));
    const pids = (await health(port)).workers.map((w) => w.pid);
    const closes = clients.map((client) => client.closed);
    run.child.kill("SIGKILL");
    // node:cluster makes a worker whose primary vanished exit at once: no time for a 1001.
    for (const close of await Promise.all(closes)) assert.equal(close.code, 1006);
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    await waitUntil(() => !pids.some(alive), PATIENCE_MS, "the workers to exit");
  });

  it("OpenResty style: ngx.shared is shared by both workers and exact under concurrent incr; ngx.worker numbers them", async () => {
    const { url } = await serveWorkers(writeScript(OPENRESTY_SCRIPT));
    const clients = track(await Promise.all(Array.from({ length: 4 }, () => openClient(url))));
    const places = new Set<string>();
    for (const client of clients) {
      client.send("who");
      places.add(await client.next());
    }
    assert.deepEqual([...places].sort(), ["0/2", "1/2"]);
    for (const client of clients) client.send("500");
    for (const client of clients) assert.equal(await client.next(), "done");
    clients[0]!.send("count");
    assert.equal(await clients[0]!.next(), "2000");
  });

  for (const bad of ["0", "abc", "-1", "1.5"]) {
    it(`refuses --workers ${bad} with one line and exit code 2`, async () => {
      const run: CliRun = runCli(resources, [
        "serve",
        writeScript(CALLBACK_SCRIPT),
        "--workers",
        bad,
        "--port",
        "0",
      ]);
      assert.equal(await exitCode(run), 2);
      assert.match(run.stderr(), /^moonsocket serve: .*--workers.*\n$/);
    });
  }
});
