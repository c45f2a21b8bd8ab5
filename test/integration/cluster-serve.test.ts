/**
 * `moonsocket serve SCRIPT --redis URL`: two real node processes sharing a real redis-server.
 * Ids are unique across both, `_sendAll`, `_send(id)`, topics and `moonsocket.publish/subscribe`
 * cross nodes, history is kept in Redis, and a Redis that is SIGKILLed and restarted on the same
 * port costs cross-node delivery only while it is away.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { type CliRun, exitCode, runCli, waitForBanner } from "../helpers/cli-process.js";
import { httpRequest, PATIENCE_MS, Resources, waitUntil } from "../helpers/net-helpers.js";
import { REDIS_MISSING, TestRedis } from "../helpers/redis-server.js";

const fixture = (name: string): string =>
  fileURLToPath(new URL(`../../../test/fixtures/cluster/${name}`, import.meta.url));

/** A `ws` client that keeps every text message it got. */
class Client {
  readonly messages: string[] = [];
  closed: { code: number } | undefined;

  private constructor(readonly socket: WebSocket) {
    socket.on("message", (data) => this.messages.push(data.toString()));
    socket.on("close", (code) => {
      this.closed = { code };
    });
  }

  static async open(resources: Resources, url: string): Promise<Client> {
    const socket = new WebSocket(url);
    resources.add(socket, (s) => s.terminate());
    // Listening before the open: the server may speak in the same packet as its 101.
    const client = new Client(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
    });
    return client;
  }

  send(text: string): void {
    this.socket.send(text);
  }

  /** Waits for a message matching `pattern` and returns it. */
  async next(pattern: RegExp, ms = PATIENCE_MS): Promise<string> {
    let found: string | undefined;
    await waitUntil(
      () => (found = this.messages.find((m) => pattern.test(m))) !== undefined,
      ms,
      `a message matching ${pattern} (got ${JSON.stringify(this.messages.slice(-5))})`,
    );
    return found!;
  }

  /** The id the relay script told this client. */
  async id(): Promise<number> {
    return Number((await this.next(/^id \d+$/)).slice(3));
  }
}

async function startNode(
  resources: Resources,
  script: string,
  redis: TestRedis,
  extra: readonly string[] = [],
): Promise<{ run: CliRun; url: string; port: number }> {
  const run = runCli(resources, [
    "serve",
    fixture(script),
    "--redis",
    redis.url,
    "--port",
    "0",
    ...extra,
  ]);
  const url = await waitForBanner(run);
  return { run, url, port: Number(new URL(url).port) };
}

describe("serve --redis: two nodes", { skip: REDIS_MISSING }, () => {
  let redis: TestRedis;
  const resources = new Resources();

  before(async () => {
    redis = await TestRedis.start();
  });
  after(() => redis.stop());
  afterEach(async () => {
    await resources.closeAll();
    // Each test starts from an empty Redis: no ids or history of the one before.
    await redis.restart();
  });

  test("20 clients over both nodes get ids 0..19; _sendAll, _send and topics cross nodes", async () => {
    const a = await startNode(resources, "relay.lua", redis);
    const b = await startNode(resources, "relay.lua", redis);
    const clients: Client[] = [];
    for (let i = 0; i < 20; i++)
      clients.push(await Client.open(resources, i % 2 === 0 ? a.url : b.url));
    const ids = await Promise.all(clients.map((c) => c.id()));
    assert.deepEqual(
      [...ids].sort((x, y) => x - y),
      Array.from({ length: 20 }, (_, i) => i),
    );

    const [onA, onB] = [clients[0]!, clients[1]!];
    onA.send("all hello everyone");
    await Promise.all(clients.map((c) => c.next(/^hello everyone$/)));

    onA.send(`to ${ids[1]} psst`);
    assert.equal(await onA.next(/^sent /), "sent true", "_send to a client of the other node");
    await onB.next(/^psst$/);

    onB.send("pub news of b");
    await Promise.all(clients.map((c) => c.next(/^news of b$/)));

    // The client list is the node's presence copy: current to a network round trip.
    const everyone = `clients ${Array.from({ length: 20 }, (_, i) => i).join(",")}`;
    for (;;) {
      onA.messages.length = 0;
      onA.send("clients");
      if ((await onA.next(/^clients /)) === everyone) break;
    }

    const health = JSON.parse((await httpRequest(a.port, "/healthz")).body.toString()) as {
      cluster: { up: boolean; nodes: { clients: number }[] };
    };
    assert.equal(health.cluster.up, true);
    assert.deepEqual(
      health.cluster.nodes.map((n) => n.clients),
      [10, 10],
    );
  });

  test("Redis SIGKILLed: both nodes serve their own clients; restarted: cross-node delivery is back", async () => {
    const a = await startNode(resources, "relay.lua", redis);
    const b = await startNode(resources, "relay.lua", redis);
    const onA = await Client.open(resources, a.url);
    const onB = await Client.open(resources, b.url);
    await Promise.all([onA.id(), onB.id()]);

    await redis.kill();
    await waitUntil(() => /cluster link lost/.test(a.run.stderr()), PATIENCE_MS, "node a's log");
    await waitUntil(() => /cluster link lost/.test(b.run.stderr()), PATIENCE_MS, "node b's log");
    onA.send("all local only");
    await onA.next(/^local only$/);
    // A new connection needs a cluster id: refused with 503 while Redis is away.
    await assert.rejects(Client.open(resources, b.url), /503/);
    assert.equal(a.run.child.exitCode, null, "node a is still up");
    assert.equal(b.run.child.exitCode, null, "node b is still up");

    await redis.restart();
    const backWithin15s = 15_000 + PATIENCE_MS; // the 15 s, plus a safety net for a busy machine
    await waitUntil(() => /cluster link back/.test(a.run.stderr()), backWithin15s, "node a back");
    await waitUntil(() => /cluster link back/.test(b.run.stderr()), backWithin15s, "node b back");
    onB.send("all both again");
    await onA.next(/^both again$/);
    assert.equal(
      (a.run.stderr().match(/cluster link lost/g) ?? []).length,
      1,
      "one line when lost",
    );
    assert.equal((onA.messages.filter((m) => m === "local only") ?? []).length, 1);
    assert.equal(onB.messages.includes("local only"), false, "nothing crossed while down");
  });

  test("--history: a late joiner on the other node reads what was published before", async () => {
    const a = await startNode(resources, "relay.lua", redis, ["--history", "2"]);
    const first = await Client.open(resources, a.url);
    await first.id();
    for (const text of ["one", "two", "three"]) first.send(`pub ${text}`);
    await first.next(/^three$/);
    // A node started afterwards loads the history from Redis.
    const b = await startNode(resources, "relay.lua", redis, ["--history", "2"]);
    const late = await Client.open(resources, b.url);
    await late.id();
    late.send("history");
    assert.equal(await late.next(/^history/), "history two|three");
    first.send("pub four");
    await late.next(/^four$/);
    late.send("history");
    await late.next(/^history three\|four$/);
  });

  for (const script of ["coroutine-relay.lua", "openresty-relay.lua"]) {
    test(`moonsocket.publish/subscribe cross nodes (${script})`, async () => {
      const a = await startNode(resources, script, redis);
      const b = await startNode(resources, script, redis);
      const onA = await Client.open(resources, a.url);
      const onB = await Client.open(resources, b.url);
      await Promise.all([onA.next(/^ready$/), onB.next(/^ready$/)]);
      onA.send("say hi from a");
      await onB.next(/^news: hi from a$/);
      await onA.next(/^news: hi from a$/);
    });
  }
});

test("serve --redis with a malformed URL: one line, exit 2", async () => {
  const resources = new Resources();
  try {
    const run = runCli(resources, [
      "serve",
      fixture("relay.lua"),
      "--redis",
      "http://127.0.0.1:6379",
      "--port",
      "0",
    ]);
    assert.equal(await exitCode(run), 2);
    assert.match(run.stderr(), /^moonsocket serve: --redis: invalid Redis URL .*unknown scheme/);
    assert.equal(run.stderr().trim().split("\n").length, 1);
  } finally {
    await resources.closeAll();
  }
});

test("serve --redis with no Redis there: a clear message, exit 1", {
  skip: REDIS_MISSING,
}, async () => {
  const resources = new Resources();
  try {
    const redis = await TestRedis.start();
    const url = redis.url;
    await redis.stop();
    const run = runCli(resources, ["serve", fixture("relay.lua"), "--redis", url, "--port", "0"]);
    assert.equal(await exitCode(run), 1);
    assert.match(
      run.stderr(),
      /moonsocket serve: cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+/,
    );
  } finally {
    await resources.closeAll();
  }
});
