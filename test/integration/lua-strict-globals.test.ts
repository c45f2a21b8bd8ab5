/**
 * Scripts that put metatables on `_G` (a strict mode, an `__index` or `__newindex` that
 * errors) in every style: the host reads and writes globals raw, so the server still serves,
 * and only a client whose own handler fails is closed with 1011.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { openClient, startScript } from "../helpers/script-server.js";

const fixture = (name: string) =>
  fileURLToPath(new URL(`../../../test/fixtures/strict-globals/${name}`, import.meta.url));

/** Serves `name`, echoes through two clients, then has one fail in the script: only it gets 1011. */
async function assertStrictScriptServes(name: string): Promise<void> {
  const script = await startScript(fixture(name));
  try {
    const steady = await openClient(script.url);
    const failing = await openClient(script.url);
    steady.send("hello");
    assert.equal(await steady.next(), "echo: hello");
    failing.send("typo");
    const closed = await failing.closed;
    assert.equal(closed.code, 1011);
    assert.match(script.log(), /variable 'undeclared_name' is not declared/);
    steady.send("still here");
    assert.equal(await steady.next(), "echo: still here");
    steady.close();
  } finally {
    await script.stop();
  }
}

/** Serves `name`, whose _G errors on any unknown name from line 1: clients get echoes. */
async function assertPoisonedScriptServes(name: string): Promise<void> {
  const script = await startScript(fixture(name));
  try {
    const a = await openClient(script.url);
    const b = await openClient(script.url);
    a.send("one");
    b.send("two");
    assert.equal(await a.next(), "You said: one");
    assert.equal(await b.next(), "You said: two");
    a.close();
    b.close();
    await Promise.all([a.closed, b.closed]);
    assert.doesNotMatch(script.log(), /poisoned global/);
  } finally {
    await script.stop();
  }
}

describe("a script's metatables on _G cannot break the server", () => {
  it("callback style: a strict-mode script serves; an undeclared global closes that client with 1011", async () => {
    await assertStrictScriptServes("callback-strict.lua");
  });

  it("callback style: an erroring _G __index and __newindex from line 1: the absent hooks are skipped, clients get echoes", async () => {
    await assertPoisonedScriptServes("callback-poisoned.lua");
  });

  it("callback style: an on_connect that errors closes only that client with 1011", async () => {
    const script = await startScript(fixture("callback-poisoned.lua"));
    try {
      const steady = await openClient(script.url);
      const refused = await openClient(`${script.url}fail`);
      assert.equal((await refused.closed).code, 1011);
      assert.match(script.log(), /on_connect refuses \/fail/);
      steady.send("after");
      assert.equal(await steady.next(), "You said: after");
      steady.close();
    } finally {
      await script.stop();
    }
  });

  it("coroutine style: a strict-mode script serves; an undeclared global closes that client with 1011", async () => {
    await assertStrictScriptServes("coroutine-strict.lua");
  });

  it("coroutine style: an erroring _G __index and __newindex from line 1: clients get echoes", async () => {
    await assertPoisonedScriptServes("coroutine-poisoned.lua");
  });

  it("OpenResty style: a strict-mode script serves; an undeclared global closes that client with 1011", async () => {
    await assertStrictScriptServes("openresty-strict.lua");
  });

  it("OpenResty style: an erroring _G __index and __newindex from line 1: clients get echoes", async () => {
    await assertPoisonedScriptServes("openresty-poisoned.lua");
  });
});
