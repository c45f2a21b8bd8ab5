import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createLuaEngine } from "../../../../src/lua/vm/create-engine.js";
import type { LuaEngine } from "../../../../src/lua/vm/engine.js";

let lua: LuaEngine;
before(async () => {
  lua = await createLuaEngine({ cpuBudgetMs: 500 });
  lua.run(
    `present = 1
     setmetatable(_G, {
       __index = function(_, name) error("poisoned global lookup: " .. name) end,
       __newindex = function(_, name) error("poisoned global store: " .. name) end,
     })`,
    "@strict.lua",
  );
});
after(() => lua.close());

describe("the host's globals are raw, whatever metatable a script put on _G", () => {
  it("getGlobal reads a present global and an absent one (null) without calling __index", () => {
    assert.equal(lua.getGlobal("present"), 1);
    assert.equal(lua.getGlobal("on_connect"), null);
  });

  it("setGlobal creates a global without calling __newindex", () => {
    lua.setGlobal("added", 42);
    assert.equal(lua.getGlobal("added"), 42);
    assert.deepEqual(lua.run("return added", "@t.lua"), [42]);
  });

  it("the script's own lookups still go through its metatable", () => {
    assert.throws(() => lua.run("return missing", "@t.lua"), /poisoned global lookup: missing/);
  });
});
