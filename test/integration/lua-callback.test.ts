import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { buildFrame, OP, RawClient } from "../helpers/net-helpers.js";
import { openClient, type RunningScript, startScript } from "../helpers/script-server.js";

const fixture = (name: string) =>
  fileURLToPath(new URL(`../../../test/fixtures/callback/${name}`, import.meta.url));

describe("callback style: the WebSocketServer document's scripts", () => {
  it("echo: main answers 'You said: ' .. message", async () => {
    const script = await startScript(fixture("echo.lua"));
    try {
      const client = await openClient(script.url);
      client.send("Wow, HTML5-WebSocket is nice!");
      assert.equal(await client.next(), "You said: Wow, HTML5-WebSocket is nice!");
      client.close();
    } finally {
      await script.stop();
    }
  });

  it("on_connect announces 'ClientID N just joined the server' with integer ids, reused after leaving", async () => {
    const script = await startScript(fixture("join.lua"));
    try {
      const a = await openClient(script.url);
      assert.equal(await a.next(), "ClientID 0 just joined the server");
      const b = await openClient(script.url);
      assert.equal(await a.next(), "ClientID 1 just joined the server");
      assert.equal(await b.next(), "ClientID 1 just joined the server");
      b.close();
      assert.equal(await a.next(), "ClientID 1 left");
      const c = await openClient(script.url);
      assert.equal(await c.next(), "ClientID 1 just joined the server");
      a.close();
      c.close();
    } finally {
      await script.stop();
    }
  });
});

describe("callback style: extensions and containment", () => {
  let script: RunningScript;
  before(async () => {
    script = await startScript(fixture("extensions.lua"), { cpuBudgetMs: 100 });
  });
  after(async () => {
    await script.stop();
  });

  it("runs on_startup before serving", async () => {
    const client = await openClient(script.url);
    client.send("started");
    assert.equal(await client.next(), "true");
    client.close();
  });

  it("passes binary messages to main with is_binary, bytes unchanged", async () => {
    const client = await openClient(script.url);
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    client.send(all, true);
    const echoed = await client.nextRaw();
    assert.equal(echoed.binary, true);
    assert.deepEqual(echoed.data, all);
    client.close();
  });

  it("sends text that is not UTF-8 as a binary message instead of breaking the protocol", async () => {
    const client = await openClient(script.url);
    client.send("bytes");
    const message = await client.nextRaw();
    assert.equal(message.binary, true);
    assert.deepEqual(message.data, Buffer.from([0xff, 0xfe, 0x00, 0x6f, 0x6b]));
    client.send("id");
    assert.match(await client.next(), /^id \d+$/);
    client.close();
  });

  it("topics: subscribe, publish reaches subscribers only, unsubscribe", async () => {
    const a = await openClient(script.url);
    const b = await openClient(script.url);
    a.send("sub news");
    assert.equal(await a.next(), "subscribed news");
    b.send("pub news hello");
    assert.equal(await a.next(), "hello");
    assert.equal(await b.next(), "published to 1");
    a.send("unsub news");
    assert.equal(await a.next(), "unsubscribed news");
    b.send("pub news again");
    assert.equal(await b.next(), "published to 0");
    a.close();
    b.close();
  });

  it("_subscribe stops at --max-topics per client, logged and counted", async () => {
    const client = await openClient(script.url);
    client.send("manysubs");
    assert.equal(
      await client.next(),
      "false|too many topics: 1000 per client (--max-topics)|false|nil",
    );
    assert.match(script.log(), /WARN .*too many topics: 1000 per client/);
    client.close();
  });

  it("_close closes with the given code and reason", async () => {
    const client = await openClient(script.url);
    client.send("close 4001");
    assert.deepEqual(await client.closed, { code: 4001, reason: "bye" });
  });

  it("_close refuses a code or reason the protocol forbids, with an error naming it", async () => {
    const client = await openClient(script.url);
    client.send("badclose");
    assert.deepEqual((await client.next()).split("\n"), [
      "false bad argument #2 to '_close' (invalid close code 1005)",
      "false bad argument #2 to '_close' (invalid close code 999)",
      "false bad argument #3 to '_close' (close reason longer than 123 bytes)",
      "false bad argument #3 to '_close' (close reason is not valid UTF-8)",
      "false bad argument #2 to '_close' (number expected, got string)",
    ]);
    client.send("id");
    assert.match(await client.next(), /^id \d+$/);
    client.close();
  });

  it("_getHeaders and _getClientInfo describe the upgrade request", async () => {
    const client = await openClient(`${script.url}room?x=1`, { headers: { "X-Token": "secret" } });
    client.send("headers");
    assert.equal(JSON.parse(await client.next()).token, "secret");
    client.send("info");
    assert.equal(await client.next(), "/room?x=1");
    client.close();
  });

  it("timers: _setTimeout fires once, _setInterval until _clearTimer", async () => {
    const client = await openClient(script.url);
    client.send("later 20");
    assert.equal(await client.next(), "timer fired");
    client.send("tick 10");
    assert.equal(await client.next(), "tick 1");
    assert.equal(await client.next(), "tick 2");
    assert.equal(await client.next(), "tick 3");
    await assert.rejects(client.next(100));
    client.close();
  });

  it("_send to an unknown client returns false and an error message", async () => {
    const client = await openClient(script.url);
    client.send("missing");
    assert.equal(await client.next(), "false no such client or connection closed");
    client.close();
  });

  it("gives each message of one socket read its own CPU budget", async () => {
    const raw = await RawClient.connect(Number(new URL(script.url).port));
    try {
      // Four messages in one write, 60 ms of work each against a 100 ms budget.
      const frames = Array.from({ length: 4 }, () =>
        buildFrame({ opcode: OP.text, payload: "busy 60" }),
      );
      await raw.write(Buffer.concat(frames));
      for (let i = 0; i < 4; i++) {
        const frame = await raw.nextFrame();
        assert.equal(frame.payload.toString(), "busy done");
      }
    } finally {
      raw.destroy();
    }
  });

  it("a failing message of a read closes its client with 1011; the messages before it were handled", async () => {
    const bystander = await openClient(script.url);
    const raw = await RawClient.connect(Number(new URL(script.url).port));
    try {
      const frames = ["id", "error", "id"].map((payload) =>
        buildFrame({ opcode: OP.text, payload }),
      );
      await raw.write(Buffer.concat(frames));
      const result = await raw.readUntilClose();
      assert.equal(result.code, 1011);
      // The first message was answered, the third never reached main.
      assert.equal(result.frames.length, 1);
      assert.match(result.frames[0]!.payload.toString(), /^id \d+$/);
      bystander.send("id");
      assert.match(String(await bystander.next()), /^id \d+$/);
    } finally {
      raw.destroy();
      bystander.close();
    }
  });

  it("moonsocket logging goes to the server log", async () => {
    const client = await openClient(script.url);
    client.send("log hi there");
    assert.equal(await client.next(), "logged");
    assert.match(script.log(), /WARN .*client \d+ says hi there/);
    client.close();
  });

  it("print logs its arguments at info, concatenated as ngx's print", async () => {
    const client = await openClient(script.url);
    client.send("print hi");
    assert.equal(await client.next(), "printed");
    assert.match(script.log(), /INFO {2}client \d+ printed hi niltrue/);
    client.close();
  });

  for (const [command, expected] of [
    ["error", /Lua error in main: extensions\.lua:\d+: boom on purpose/],
    ["errtable", /Lua error in main: .*table/],
    ["spin", /Lua error in main: .*cpu budget/i],
    ["pcallspin", /Lua error in main: .*cpu budget/i],
  ] as const) {
    it(`'${command}': the error is logged, that client is closed with 1011, others go on`, async () => {
      const bystander = await openClient(script.url);
      const victim = await openClient(script.url);
      victim.send(command);
      assert.equal((await victim.closed).code, 1011);
      assert.match(script.log(), expected);
      bystander.send("started");
      assert.equal(await bystander.next(), "true");
      bystander.close();
    });
  }
});
