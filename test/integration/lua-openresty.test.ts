/**
 * OpenResty style over real sockets: the tutorial's scripts unmodified (test/fixtures/openresty),
 * then resty.websocket.server's API with OpenResty's return values and error strings, the ngx
 * API, resty.websocket.client, and containment (a Lua error or a CPU-budget hit closes only the
 * connection concerned, with 1011).
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import type { ServerClient } from "../../src/server/server-client.js";
import {
  PATIENCE_MS,
  Resources,
  sleep,
  startServer,
  waitUntil,
  withTimeout,
} from "../helpers/net-helpers.js";
import {
  openClient,
  type RunningScript,
  startScript,
  type TestClient,
} from "../helpers/script-server.js";

const fixture = (name: string) =>
  fileURLToPath(new URL(`../../../test/fixtures/openresty/${name}`, import.meta.url));

/** Resolves once the script's log has a line matching `pattern`. */
async function waitForLog(
  script: RunningScript,
  pattern: RegExp,
  ms = PATIENCE_MS,
): Promise<string> {
  let found: string | undefined;
  await waitUntil(
    () =>
      (found = script
        .log()
        .split("\n")
        .find((line) => pattern.test(line))) !== undefined,
    ms,
    `a log line matching ${pattern}`,
  );
  return found!;
}

/** Sends a command and parses the JSON answer. */
async function ask(client: TestClient, command: string): Promise<Record<string, unknown>> {
  client.send(command);
  return JSON.parse(await client.next()) as Record<string, unknown>;
}

/** Resolves with true if a message arrives within `ms`, false otherwise (the message stays queued). */
function receivesWithin(client: TestClient, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const onMessage = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      client.ws.off("message", onMessage);
      resolve(false);
    }, ms);
    client.ws.once("message", onMessage);
  });
}

function closedWithin(client: TestClient, ms = PATIENCE_MS) {
  return withTimeout(client.closed, ms, "the connection to close");
}

describe("OpenResty style: the tutorial's scripts, unmodified", () => {
  it("echo: text comes back, the script answers pings and the close frame", async () => {
    const script = await startScript(fixture("echo.lua"));
    try {
      assert.equal(script.app.style, "openresty");
      const client = await openClient(script.url);
      client.send("Hello, server!");
      assert.equal(await client.next(), "Hello, server!");
      const pong = new Promise<Buffer>((resolve) => client.ws.once("pong", resolve));
      client.ws.ping("are you there");
      // The tutorial answers with wb:send_pong() (no payload): the script's pong, not an automatic one.
      assert.equal((await withTimeout(pong, PATIENCE_MS, "the pong")).length, 0);
      client.ws.close(1000, "bye");
      // wb:send_close() answers with an empty close frame: the client reports 1005.
      assert.equal((await closedWithin(client)).code, 1005);
    } finally {
      await script.stop();
    }
  });

  it("broadcast: every text message reaches every client, the sender included", async () => {
    const script = await startScript(fixture("broadcast.lua"));
    try {
      const clients = [
        await openClient(script.url),
        await openClient(script.url),
        await openClient(script.url),
      ];
      clients[1]!.send("hello everyone");
      for (const client of clients) assert.equal(await client.next(), "hello everyone");
      clients[2]!.send("second");
      for (const client of clients) assert.equal(await client.next(), "second");
      for (const client of clients) client.close();
    } finally {
      await script.stop();
    }
  });

  it("chat: a message reaches every other client, not its sender", async () => {
    const script = await startScript(fixture("chat.lua"));
    try {
      const [a, b, c] = [
        await openClient(script.url),
        await openClient(script.url),
        await openClient(script.url),
      ];
      a.send("hi from a");
      assert.equal(await b.next(), "hi from a");
      assert.equal(await c.next(), "hi from a");
      assert.equal(await receivesWithin(a, 200), false);
      c.send("hi from c");
      assert.equal(await a.next(), "hi from c");
      assert.equal(await b.next(), "hi from c");
      assert.equal(await receivesWithin(c, 200), false);
      for (const client of [a, b, c]) client.close();
    } finally {
      await script.stop();
    }
  });

  it("live feed: an update every second; the loop stops at its next ngx.sleep once the client is gone", async () => {
    const script = await startScript(fixture("live-feed.lua"));
    try {
      const client = await openClient(script.url);
      const first = await client.next();
      const second = await client.next();
      assert.match(first, /^update 1 at \d+(\.\d+)?$/);
      assert.match(second, /^update 2 at \d+(\.\d+)?$/);
      // The script's own clock (ngx.now) in each update: ngx.sleep(1) between them.
      const gap = Number(second.split(" at ")[1]) - Number(first.split(" at ")[1]);
      assert.ok(gap >= 0.99, `updates ${gap} s apart`);
      client.ws.terminate();
      await waitForLog(script, /connection closed: stopping its handler at ngx\.sleep/);
    } finally {
      await script.stop();
    }
  });

  it("event-driven snippet: prints 'New message: Hello, World!' to the log", async () => {
    const script = await startScript(fixture("event.lua"));
    try {
      await waitForLog(script, /New message: Hello, World!/);
    } finally {
      await script.stop();
    }
  });
});

describe("OpenResty style: bursts", () => {
  it("a burst of frames in one TCP write comes back whole and in order, then the close", async () => {
    const script = await startScript(fixture("echo.lua"));
    try {
      const client = await openClient(script.url);
      const count = 500;
      // ws corks the sends of one tick: the frames reach the server in a few socket reads.
      for (let i = 0; i < count; i++) client.send(`m${i}`);
      client.ws.close(1000, "bye");
      for (let i = 0; i < count; i++) assert.equal(await client.next(), `m${i}`);
      assert.equal((await closedWithin(client)).code, 1005);
    } finally {
      await script.stop();
    }
  });
});

describe("OpenResty style: a client sending faster than the handler reads", () => {
  it("is paused past 8 MiB unread (the shared Lua heap stays small), then read in full", async () => {
    const script = await startScript(fixture("slow-reader.lua"));
    try {
      const client = await openClient(`${script.url}?sleep=1`);
      const frame = "x".repeat(1024 * 1024);
      for (let i = 0; i < 40; i++) client.send(frame);
      client.send("end");
      await sleep(700);
      // 40 MiB sent, nothing read yet: what waits in Lua stays near the 8 MiB high water.
      const metrics = script.app.servers[0]!.metricsRegistry.render();
      const luaBytes = Number(/^moonsocket_lua_memory_bytes (\d+)$/m.exec(metrics)![1]);
      assert.ok(luaBytes < 24 * 1024 * 1024, `Lua heap at ${luaBytes} bytes`);
      assert.equal(await client.next(), `41 ${40 * 1024 * 1024 + 3}`);
      client.close();
    } finally {
      await script.stop();
    }
  });
});

describe("OpenResty style: resty.websocket.server", () => {
  let script: RunningScript;
  before(async () => {
    script = await startScript(fixture("api.lua"), { cpuBudgetMs: 300 });
  });
  after(async () => {
    await script.stop();
  });

  it("recv_frame: fragments come with err 'again', then 'continuation' frames", async () => {
    const client = await openClient(`${script.url}?mode=report`);
    client.ws.send("ab", { fin: false });
    client.ws.send("cd", { fin: false });
    client.ws.send("ef", { fin: true });
    assert.deepEqual(JSON.parse(await client.next()), { data: "ab", typ: "text", err: "again" });
    assert.deepEqual(JSON.parse(await client.next()), {
      data: "cd",
      typ: "continuation",
      err: "again",
    });
    assert.deepEqual(JSON.parse(await client.next()), { data: "ef", typ: "continuation" });
    client.ws.send(Buffer.from("xy"), { binary: true, fin: true });
    assert.deepEqual(JSON.parse(await client.next()), { data: "xy", typ: "binary" });
    client.close();
  });

  it("recv_frame: pings and pongs reach the script; nothing is answered automatically", async () => {
    const client = await openClient(`${script.url}?mode=report`);
    let pongs = 0;
    client.ws.on("pong", () => pongs++);
    client.ws.ping("ping me");
    assert.deepEqual(JSON.parse(await client.next()), { data: "ping me", typ: "ping" });
    client.ws.pong("unsolicited");
    assert.deepEqual(JSON.parse(await client.next()), { data: "unsolicited", typ: "pong" });
    await sleep(150);
    assert.equal(pongs, 0);
    client.close();
  });

  it("recv_frame: the client's close frame gives reason, 'close' and code; the script's close reply ends it", async () => {
    const client = await openClient(`${script.url}?mode=report`);
    client.ws.close(4000, "going away now");
    assert.deepEqual(JSON.parse(await client.next()), {
      data: "going away now",
      typ: "close",
      err: 4000,
    });
    assert.deepEqual(await closedWithin(client), { code: 1000, reason: "bye" });

    const empty = await openClient(`${script.url}?mode=report`);
    empty.ws.close();
    assert.deepEqual(JSON.parse(await empty.next()), { data: "", typ: "close" });
    assert.equal((await closedWithin(empty)).code, 1000);
  });

  it("recv_frame: a read timeout is 'failed to receive the first 2 bytes: timeout' and not fatal", async () => {
    const client = await openClient(`${script.url}?mode=report&timeout=150`);
    assert.deepEqual(JSON.parse(await client.next()), {
      err: "failed to receive the first 2 bytes: timeout",
      fatal: false,
    });
    client.send("still alive");
    let answer = JSON.parse(await client.next());
    while (answer.err !== undefined) answer = JSON.parse(await client.next());
    assert.deepEqual(answer, { data: "still alive", typ: "text" });
    client.close();
  });

  it("recv_frame: a frame over max_recv_len is 'exceeding max payload len', fatal", async () => {
    const client = await openClient(`${script.url}?mode=report&max_recv=10`);
    client.send("0123456789");
    assert.deepEqual(JSON.parse(await client.next()), { data: "0123456789", typ: "text" });
    client.send("0123456789A");
    await waitForLog(script, /recv error: exceeding max payload len fatal=true/);
    await waitForLog(script, /after fatal: nil nil fatal error already happened/);
    // The handler returned without a close frame: moonsocket closes with 1000.
    assert.equal((await closedWithin(client)).code, 1000);
  });

  it("recv_frame: a vanished peer gives 'failed to receive the first 2 bytes: closed', fatal", async () => {
    const client = await openClient(`${script.url}?mode=report&name=vanishing`);
    client.send("hello");
    await client.next();
    client.ws.terminate();
    await waitForLog(script, /recv error: failed to receive the first 2 bytes: closed fatal=true/);
  });

  it("set_timeout changes the read timeout", async () => {
    const client = await openClient(script.url);
    assert.deepEqual(await ask(client, "settimeout"), {
      err: "failed to receive the first 2 bytes: timeout",
      fatal: false,
    });
    client.close();
  });

  it("sends return the frame's length; bad close codes are refused without making wb fatal", async () => {
    const client = await openClient(script.url);
    client.send("bytes");
    assert.equal(await client.next(), "hello");
    assert.equal((await client.nextRaw()).data.length, 200);
    assert.equal((await client.nextRaw()).data.length, 65535);
    const answer = JSON.parse(await client.next());
    assert.deepEqual(answer, {
      text: 7,
      binary: 204,
      big: 65539,
      pong: 3,
      bad_status: [null, "bad status code"],
      bad_status2: [null, "bad status code"],
      forbidden_code: [null, "bad status code"],
      fatal: false,
    });
    client.close();
  });

  it("send_frame sends fragments the client reassembles", async () => {
    const client = await openClient(script.url);
    client.send("fragments");
    assert.equal(await client.next(), "abcdef");
    assert.deepEqual(JSON.parse(await client.next()), { a: 4, b: 4, c: 4 });
    client.close();
  });

  for (const [name, query, error] of [
    ["toobig", "&max_send=10", "payload too big"],
    ["control", "", "too much payload for control frame"],
    ["fragmented", "", "fragmented control frame"],
  ] as const) {
    it(`a failed send ('${error}') makes wb fatal`, async () => {
      const client = await openClient(`${script.url}?x=1${query}`);
      client.send(`try ${name}`);
      await waitForLog(
        script,
        new RegExp(`try ${name}: nil ${error} fatal=true after=nil fatal error already happened`),
      );
      client.close();
    });
  }

  it("the script closes with its code and reason", async () => {
    const client = await openClient(script.url);
    client.send("close 4001 done here");
    assert.deepEqual(await closedWithin(client), { code: 4001, reason: "done here" });
  });

  it("a handler that returns, or calls ngx.exit(200), closes with 1000; ngx.exit(444) drops the connection", async () => {
    const returning = await openClient(script.url);
    returning.send("ret");
    assert.equal((await closedWithin(returning)).code, 1000);
    const exiting = await openClient(script.url);
    exiting.send("exit 200");
    assert.equal((await closedWithin(exiting)).code, 1000);
    const dropped = await openClient(script.url);
    dropped.send("exit 444");
    assert.equal((await closedWithin(dropped)).code, 1006);
  });

  it("binary frames carry all 256 byte values unchanged", async () => {
    const client = await openClient(script.url);
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    client.send(all, true);
    const echoed = await client.nextRaw();
    assert.equal(echoed.binary, true);
    assert.deepEqual(echoed.data, all);
    client.close();
  });

  it("the script sees the client's pongs (and answers pings itself)", async () => {
    const client = await openClient(script.url);
    client.send("ping knock");
    // ws answers the script's ping; the script reports the pong.
    assert.equal(await client.next(), "pong:knock");
    client.close();
  });

  it("a handler may send on another connection's wb", async () => {
    const alice = await openClient(`${script.url}?name=alice`);
    const bob = await openClient(`${script.url}?name=bob`);
    assert.deepEqual(await ask(alice, "tell bob hi bob"), { bytes: 8 });
    assert.equal(await bob.next(), "hi bob");
    alice.close();
    bob.close();
  });

  it("ngx.exit(403) before websocket:new refuses the handshake; ngx.say without a handshake answers 200", async () => {
    const refused = new WebSocket(`${script.url}?token=bad`);
    refused.on("error", () => {});
    const status = await new Promise<number>((resolve) => {
      refused.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      refused.on("error", () => resolve(-1));
    });
    assert.equal(status, 403);
    refused.terminate();
    const said = new WebSocket(`${script.url}?say=yes`);
    said.on("error", () => {});
    const body = await new Promise<string>((resolve) => {
      said.on("unexpected-response", (_req, res) => {
        let text = "";
        res.on("data", (chunk: Buffer) => (text += chunk.toString()));
        res.on("end", () => resolve(`${res.statusCode} ${text}`));
      });
    });
    assert.equal(body, "200 no websocket here, yes\n");
    said.terminate();
    const flood = new WebSocket(`${script.url}?flood=1`);
    flood.on("error", () => {});
    const size = await new Promise<number>((resolve) => {
      flood.on("unexpected-response", (_req, res) => {
        let bytes = 0;
        res.on("data", (chunk: Buffer) => (bytes += chunk.length));
        res.on("end", () => resolve(bytes));
      });
    });
    assert.equal(size, 16 * 1024 * 1024);
    await waitForLog(
      script,
      /print refused after 16777216 bytes: response body too large \(--max-buffered\)/,
    );
    flood.terminate();
  });

  it("a Lua error closes that connection with 1011, logged with script, line and traceback; others go on", async () => {
    const other = await openClient(script.url);
    const failing = await openClient(script.url);
    failing.send("error");
    assert.equal((await closedWithin(failing)).code, 1011);
    const line = await waitForLog(
      script,
      /Lua error in the OpenResty handler: api\.lua:\d+: attempt to index a nil value/,
    );
    assert.match(line, /traceback=/);
    assert.match(line, /script=api\.lua/);
    const tableValue = await openClient(script.url);
    tableValue.send("errtable");
    assert.equal((await closedWithin(tableValue)).code, 1011);
    await waitForLog(
      script,
      /Lua error in the OpenResty handler: \(error object is a table value\)/,
    );
    other.send("echo still here");
    assert.equal(await other.next(), "still here");
    other.close();
  });

  it("a handler that never yields is stopped by the CPU budget: that client gets 1011, the others go on", async () => {
    const other = await openClient(script.url);
    const blocking = await openClient(script.url);
    blocking.send("block");
    assert.equal((await closedWithin(blocking)).code, 1011);
    await waitForLog(script, /cpu budget/i);
    other.send("echo unaffected");
    assert.equal(await other.next(), "unaffected");
    other.close();
  });
});

describe("OpenResty style: the ngx API", () => {
  let script: RunningScript;
  before(async () => {
    script = await startScript(fixture("api.lua"), { cpuBudgetMs: 300 });
  });
  after(async () => {
    await script.stop();
  });

  it("ngx.shared dictionaries are shared between connections", async () => {
    const a = await openClient(script.url);
    const b = await openClient(script.url);
    assert.deepEqual(await ask(a, "shared_set greeting hello there"), {
      ok: true,
      forcible: false,
    });
    assert.deepEqual(await ask(b, "shared_get greeting"), { value: "hello there" });
    a.close();
    b.close();
  });

  it("ngx.shared.DICT: OpenResty's return values and errors", async () => {
    const client = await openClient(script.url);
    const r = await ask(client, "shdict");
    assert.deepEqual(r.set, [true, null, false]);
    assert.deepEqual(r.add_exists, [false, "exists", false]);
    assert.deepEqual(r.get_flags, ["x", 7]);
    assert.deepEqual(r.replace_missing, [false, "not found", false]);
    assert.deepEqual(r.incr, [15]);
    assert.deepEqual(r.incr_missing, [null, "not found"]);
    assert.deepEqual(r.incr_init, [101, null, false]);
    assert.deepEqual(r.incr_nan, [null, "not a number"]);
    assert.deepEqual(r.nil_key, [null, "nil key"]);
    assert.deepEqual(r.empty_key, [null, "empty key"]);
    assert.deepEqual(r.bad_value, [null, "bad value type"]);
    assert.deepEqual(r.ttl_none, [0]);
    assert.deepEqual(r.ttl_missing, [null, "not found"]);
    assert.equal(r.ttl_positive, true);
    assert.deepEqual(r.expire, [true]);
    assert.deepEqual(r.expire_missing, [null, "not found"]);
    assert.deepEqual([r.rpush, r.lpush, r.llen, r.lpop], [[1], [2], [2], ["zero"]]);
    assert.deepEqual(r.get_list, [null, "value is a list"]);
    assert.deepEqual(r.push_not_list, [null, "value not a list"]);
    assert.deepEqual(r.deleted, {});
    assert.deepEqual(r.keys, ["a", "counter", "list", "short"]);
    assert.deepEqual(r.expired, {});
    assert.deepEqual(r.stale, ["v", 0, true]);
    client.close();
  });

  it("ngx.thread: spawn runs at once; wait returns results or the error; kill", async () => {
    const client = await openClient(script.url);
    const r = await ask(client, "thread");
    assert.equal(r.ran_first, "yes");
    assert.deepEqual([r.ok1, r.r1, r.r1b], [true, 42, "second"]);
    assert.equal(r.ok2, false);
    assert.match(r.r2 as string, /api\.lua:\d+: thread boom/);
    assert.deepEqual([r.k1, r.kerr], [1, "already waited or killed"]);
    assert.equal(r.werr, "already waited or killed");
    assert.deepEqual([r.okf, r.rf], [true, "fast"]);
    await waitForLog(script, /Lua error in an ngx\.thread: api\.lua:\d+: thread boom/);
    client.close();
  });

  it("ngx.timer.at and ngx.timer.every call back with premature = false, in their own context", async () => {
    const client = await openClient(script.url);
    const r = await ask(client, "timer");
    assert.equal(r.ok, true);
    assert.equal(r.pending, 1);
    assert.match(r.zero_err as string, /delay cannot be zero/);
    assert.match(r.few_err as string, /expecting at least 2 arguments but got 1/);
    assert.equal(
      await client.next(),
      "timer:false:fired:false:API disabled in the context of ngx.timer:API disabled in the context of ngx.timer:timer ctx",
    );
    client.send("every");
    assert.deepEqual(
      [await client.next(), await client.next(), await client.next()],
      ["tick 1", "tick 2", "tick 3"],
    );
    client.close();
  });

  it("ngx.sleep yields for the time asked", async () => {
    const client = await openClient(script.url);
    const r = await ask(client, "sleep 0.1");
    assert.ok((r.slept as number) >= 0.09, `slept ${r.slept}`);
    client.close();
  });

  it("ngx.var and ngx.req", async () => {
    const client = await openClient(`${script.url}chat/room?x=1&y=a%20b&flag&y=2`, {
      // node:http sends an array value as repeated header lines.
      headers: { "X-Custom": "abc", "X-Multi": ["one", "two"] } as unknown as Record<
        string,
        string
      >,
    });
    const r = await ask(client, "var");
    assert.equal(r.uri, "/chat/room");
    assert.equal(r.args, "x=1&y=a%20b&flag&y=2");
    assert.equal(r.request_uri, "/chat/room?x=1&y=a%20b&flag&y=2");
    assert.equal(r.arg_x, "1");
    assert.equal(r.arg_missing, undefined);
    assert.equal(r.host, "127.0.0.1");
    assert.equal(r.scheme, "http");
    assert.equal(r.remote_addr, "127.0.0.1");
    assert.equal(r.server_port, new URL(script.url).port);
    assert.equal(r.http_x_custom, "abc");
    assert.equal(r.header, "abc");
    assert.equal(r.header_underscore, "abc");
    assert.deepEqual(r.multi, ["one", "two"]);
    assert.equal(r.raw_has_case, true);
    assert.equal(r.truncated, "truncated");
    assert.equal(r.limited_count, 1);
    assert.deepEqual(r.uri_args, { x: "1", y: ["a b", "2"], flag: true });
    assert.equal(r.method, "GET");
    assert.equal(r.version, 1.1);
    assert.match(r.var_write as string, /variable "foo" not found for writing/);
    client.close();
  });

  it("ngx.re: PCRE patterns on match, find, gmatch, sub, gsub", async () => {
    const client = await openClient(script.url);
    const r = await ask(client, "re");
    assert.deepEqual([r.m0, r.m1, r.m2, r.word], ["1234 world", "1234", "world", "world"]);
    assert.deepEqual([r.from, r.to], [7, 10]);
    assert.deepEqual([r.s1, r.n1], ["a<1>b<22>c<333>", 3]);
    assert.deepEqual([r.s2, r.n2], ["world hello!", 1]);
    assert.deepEqual([r.s3, r.n3], ["aBc", 1]);
    assert.deepEqual(r.gmatch, ["k1:v1", "k2:v2"]);
    assert.equal(r.bad_err_has_prefix, true);
    assert.equal(r.alt2, false);
    assert.deepEqual([r.second, r.ctx_pos], ["a2", 6]);
    assert.equal(r.caseless, "HeLLo");
    assert.equal(r.anchored, true);
    assert.equal(r.dollar_from, 3);
    assert.equal(r.utf8, "é");
    assert.equal(r.byte_mode, 1);
    assert.equal(r.possessive, true);
    assert.equal(r.flag_err, 'unknown flag "Z" (flags "Z")');
    assert.equal(r.empty_matches, 4);
    client.close();
  });

  it("ngx.re: catastrophic backtracking ends in PCRE's match limit error, and the script goes on", async () => {
    const client = await openClient(script.url);
    const r = await ask(client, "re_hostile");
    assert.equal(r.matched, false);
    assert.equal(r.err, "pcre_exec() failed: -8");
    assert.equal(r.gsub_err, "pcre_exec() failed: -8");
    assert.equal(r.after, "42");
    // Each match got at most half of what was left of the 300 ms budget (CPU seconds, os.clock).
    assert.ok((r.seconds as number) < 0.3, `took ${r.seconds} s`);
    await waitForLog(script, /ngx\.re: a match ran out of CPU budget .*pattern=/);
    client.close();
  });

  it("ngx.re: a loop of hostile matches is stopped by the CPU budget with 1011", async () => {
    const other = await openClient(script.url);
    const looping = await openClient(script.url);
    looping.send("re_loop");
    assert.equal((await closedWithin(looping)).code, 1011);
    other.send("echo still served");
    assert.equal(await other.next(), "still served");
    other.close();
  });

  it("encoding, hashing, time, constants; LuaJIT-only features fail clearly", async () => {
    const client = await openClient(script.url);
    const r = await ask(client, "misc");
    assert.equal(r.b64, "aGVsbG8Ad29ybGQ=");
    assert.equal(r.b64_nopad, "YQ");
    assert.equal(r.b64_back, true);
    assert.equal(r.b64_bad, true);
    assert.equal(r.md5, "5d41402abc4b2a76b9719d911017c592");
    assert.deepEqual([r.sha1_len, r.md5_bin_len, r.hmac_len], [20, 16, 20]);
    assert.equal(r.crc32, 907060870);
    assert.equal(r.escape, "a%20b%26c%2Fd~");
    assert.equal(r.escape0, "a%20b&c/d%3F");
    assert.equal(r.unescape, "a b c%zz");
    assert.equal(r.encode_args, "a=1%202");
    assert.deepEqual(r.decode_args, { a: ["1", "2"], b: true, c: "A" });
    assert.equal(r.null, true);
    for (const key of ["time_is_int", "now_close", "today", "localtime", "utctime"])
      assert.equal(r[key], true, key);
    assert.equal(r.http_time, "Thu, 01 Jan 1970 00:00:00 GMT");
    assert.equal(r.cookie_time, "Thu, 01-Jan-70 00:00:00 GMT");
    assert.equal(r.parse_http_time, 60);
    assert.equal(r.debug, false);
    assert.deepEqual(r.worker, [0, 1, false]);
    assert.deepEqual(r.consts, [0, -1, -2, -4, 200, 444, 403]);
    assert.deepEqual(r.levels, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual([r.status, r.headers_sent], [101, true]);
    assert.deepEqual(r.say, [null, "raw request socket acquired"]);
    assert.match(r.ffi as string, /LuaJIT-only and not supported/);
    assert.deepEqual([r.bit, r.table_new], [15, "table"]);
    assert.match(r.sleep_args as string, /attempt to pass 0 arguments, but accepted 1/);
    assert.match(r.sleep_negative as string, /invalid sleep duration "-1"/);
    assert.match(r.log_level as string, /bad log level: 99/);
    client.close();
  });

  it("ngx.log levels and print reach the server log with the script position", async () => {
    const client = await openClient(script.url);
    assert.deepEqual(await ask(client, "log"), { logged: true });
    assert.match(
      await waitForLog(script, /custom error 42 nil true 1\.5/),
      /ERROR.*at=api\.lua:\d+/,
    );
    assert.match(await waitForLog(script, /custom warning/), /WARN/);
    assert.match(await waitForLog(script, /custom info/), /INFO/);
    // print is ngx.log at NOTICE: concatenated, with the script position.
    assert.match(await waitForLog(script, /printed 7/), /INFO .*printed 7 .*at=api\.lua:\d+/);
    client.close();
  });

  it("globals and ngx.ctx belong to their connection", async () => {
    const a = await openClient(script.url);
    const b = await openClient(script.url);
    assert.deepEqual(await ask(a, "global"), { counter: 1, in_G: false });
    assert.deepEqual(await ask(a, "global"), { counter: 2, in_G: false });
    assert.deepEqual(await ask(b, "global"), { counter: 1, in_G: false });
    assert.deepEqual(await ask(a, "ctx"), { n: 1 });
    assert.deepEqual(await ask(a, "ctx"), { n: 2 });
    assert.deepEqual(await ask(b, "ctx"), { n: 1 });
    a.close();
    b.close();
  });

  it("light threads: an error is logged and returned by wait; ngx.exit in a thread ends the handler", async () => {
    const threads = await startScript(fixture("thread-error.lua"));
    try {
      const client = await openClient(threads.url);
      client.send("boom");
      assert.match(await client.next(), /^false thread-error\.lua:\d+: light thread failed$/);
      await waitForLog(
        threads,
        /Lua error in an ngx\.thread: thread-error\.lua:\d+: light thread failed/,
      );
      client.send("still");
      assert.equal(await client.next(), "still");
      client.send("exit-in-thread");
      assert.equal((await closedWithin(client)).code, 1000);
      assert.equal(threads.log().includes("not reached"), false);
    } finally {
      await threads.stop();
    }
  });

  it("timers fire early at shutdown with premature = true and ngx.worker.exiting()", async () => {
    const timers = await startScript(fixture("timer.lua"));
    const client = await openClient(timers.url);
    assert.equal(await client.next(), "armed true, response header already sent");
    await timers.stop();
    assert.match(timers.log(), /timer long premature=true exiting=true/);
    assert.match(timers.log(), /new timer while exiting: nil process exiting/);
    assert.equal((await closedWithin(client)).code, 1001);
  });
});

describe("OpenResty style: resty.websocket.client", () => {
  const resources = new Resources();
  afterEach(() => resources.closeAll());

  it("connects, sends masked frames, reads the answers, and closes", async () => {
    const seen: ServerClient[] = [];
    const echo = await startServer(resources, {}, (server) =>
      server.addHooks({
        onConnect: (client) => seen.push(client),
        onMessage: (client, data, isBinary) => client.send(data, isBinary),
      }),
    );
    const relay = await startScript(fixture("client.lua"));
    resources.add(relay, (r) => r.stop());
    const client = await openClient(`${relay.url}?target=${encodeURIComponent(echo.url)}`);
    client.send("hi");
    // 2 bytes of payload, 2 of header, 4 of masking key.
    assert.equal(await client.next(), "8|nil|hi|text|nil");
    assert.equal(String(seen[0]!.headers["x-from"]), "moonsocket");
    client.close();
    await waitForLog(relay, /client closed: 1 again: already closed/);
    await waitUntil(
      () => echo.server.clientCount === 0,
      PATIENCE_MS,
      "the relay's client to close",
    );
  });

  it("connections past --max-outgoing are refused, logged and counted", async () => {
    const echo = await startServer(resources, {}, (server) =>
      server.addHooks({ onMessage: (client, data, isBinary) => client.send(data, isBinary) }),
    );
    const relay = await startScript(fixture("client.lua"), { maxOutgoing: 1 });
    resources.add(relay, (r) => r.stop());
    const target = `${relay.url}?target=${encodeURIComponent(echo.url)}`;
    const first = await openClient(target);
    first.send("hi");
    assert.equal(await first.next(), "8|nil|hi|text|nil");
    const second = await openClient(target);
    assert.equal(
      await second.next(),
      "connect failed: failed to connect: too many outgoing connections: 1 open (--max-outgoing)",
    );
    await waitForLog(relay, /WARN .*too many outgoing connections: 1 open/);
    const metrics = relay.app.servers[0]!.metricsRegistry.render();
    assert.match(metrics, /^moonsocket_lua_outgoing 1$/m);
    first.close();
  });

  it("connect errors: refused, bad URI", async () => {
    const relay = await startScript(fixture("client.lua"));
    resources.add(relay, (r) => r.stop());
    const refused = await openClient(
      `${relay.url}?target=${encodeURIComponent("ws://127.0.0.1:1/")}`,
    );
    assert.equal(await refused.next(), "connect failed: failed to connect: connection refused");
    const bad = await openClient(`${relay.url}?target=${encodeURIComponent("http://127.0.0.1/")}`);
    assert.equal(await bad.next(), "connect failed: bad websocket uri");
    // A header or subprotocol that would break the request is refused before connecting.
    const target = encodeURIComponent("ws://127.0.0.1:1/");
    const injected = await openClient(
      `${relay.url}?target=${target}&from=${encodeURIComponent("x\r\nX-Injected: 1")}`,
    );
    assert.equal(
      await injected.next(),
      "connect failed: bad request header: header X-From contains a line break",
    );
    const badProtocol = await openClient(
      `${relay.url}?target=${target}&protocol=${encodeURIComponent("a b")}`,
    );
    assert.equal(
      await badProtocol.next(),
      'connect failed: bad request header: subprotocol "a b" is not an HTTP token (RFC 6455 §4.1)',
    );
  });
});
