import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createLuaEngine } from "../../../../src/lua/vm/create-engine.js";
import { type LuaEngine, LuaError, type LuaRef } from "../../../../src/lua/vm/engine.js";
import { MoonsocketError } from "../../../../src/protocol/errors.js";

let lua: LuaEngine;
before(async () => {
  lua = await createLuaEngine({ cpuBudgetMs: 200 });
});
after(() => lua.close());

/** The LuaError thrown by `fn`. */
function caught(fn: () => unknown): LuaError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof LuaError, `not a LuaError: ${String(err)}`);
    return err;
  }
  assert.fail("did not throw");
}

describe("Lua errors seen by the host", () => {
  it("carry the message with chunk and line, and a traceback", () => {
    const error = caught(() =>
      lua.run(
        `local function inner(t)
           return t.x.y
         end
         local function outer() return (inner({})) end
         outer()`,
        "@app.lua",
      ),
    );
    assert.ok(error instanceof MoonsocketError);
    assert.equal(error.name, "LuaError");
    assert.equal(error.code, "ERR_LUA_RUNTIME");
    assert.equal(error.message, "app.lua:2: attempt to index a nil value (field 'x')");
    assert.match(error.traceback, /^stack traceback:\n/);
    assert.match(error.traceback, /app\.lua:2: in (local|upvalue|function) '?inner'?/);
    assert.match(error.traceback, /app\.lua:5: in main chunk/);
  });

  it("describe error values that are not strings", () => {
    assert.equal(
      caught(() => lua.run("error({code = 1})", "@t.lua")).message,
      "(error object is a table value)",
    );
    assert.equal(
      caught(() => lua.run("error()", "@t.lua")).message,
      "(error object is a nil value)",
    );
    assert.equal(
      caught(() => lua.run("error(true)", "@t.lua")).message,
      "(error object is a boolean value)",
    );
    assert.equal(caught(() => lua.run("error(42)", "@t.lua")).message, "42");
    assert.equal(caught(() => lua.run("error(1.5)", "@t.lua")).message, "1.5");
    assert.equal(
      caught(() =>
        lua.run(
          "error(setmetatable({}, {__tostring = function() return 'custom error' end}))",
          "@t.lua",
        ),
      ).message,
      "custom error",
    );
    assert.equal(
      caught(() =>
        lua.run("error(setmetatable({}, {__tostring = function() error('worse') end}))", "@t.lua"),
      ).message,
      "(error object is a table value)",
    );
    assert.equal(
      caught(() =>
        lua.run("error(setmetatable({}, {__tostring = function() return {} end}))", "@t.lua"),
      ).message,
      "(error object is a table value)",
    );
  });

  it("keep error levels", () => {
    assert.equal(
      caught(() =>
        lua.run(
          "local function check(x) if not x then error('x required', 2) end end\ncheck(nil)",
          "@lvl.lua",
        ),
      ).message,
      "lvl.lua:2: x required",
    );
    assert.equal(caught(() => lua.run("error('plain', 0)", "@t.lua")).message, "plain");
  });

  it("report syntax errors with their own code", () => {
    const error = caught(() => lua.load("local x = = 1", "@bad.lua"));
    assert.equal(error.code, "ERR_LUA_SYNTAX");
    assert.equal(error.message, "bad.lua:1: unexpected symbol near '='");
    assert.equal(caught(() => lua.run("return 'unfinished", "=inline")).code, "ERR_LUA_SYNTAX");
  });

  it("come from errors raised in functions the host calls", () => {
    const [fn] = lua.run(
      "return function(a) if a > 1 then error('too big: ' .. a) end return a end",
      "@f.lua",
    );
    const ref = fn as LuaRef;
    assert.deepEqual(lua.call(ref, 1), [1]);
    assert.equal(caught(() => lua.call(ref, 5)).message, "f.lua:1: too big: 5");
    assert.deepEqual(lua.call(ref, 0), [0]);
  });

  it("pass through host functions that call back into Lua", () => {
    const [fn] = lua.run("return function() error('deep') end", "@deep.lua");
    lua.registerFunction(null, "call_back", () => {
      lua.call(fn as LuaRef);
    });
    const error = caught(() => lua.run("call_back()", "@outer.lua"));
    assert.equal(error.message, "deep.lua:1: deep");
    assert.deepEqual(lua.run("return pcall(call_back)", "@p.lua"), [
      false,
      Buffer.from("deep.lua:1: deep"),
    ]);
  });

  it("leave the stack balanced after many failures", () => {
    for (let i = 0; i < 200; i++) caught(() => lua.run("error('again')", "@loop.lua"));
    const [fn] = lua.run("return function(...) return select('#', ...) end", "@n.lua");
    for (let i = 0; i < 200; i++) assert.deepEqual(lua.call(fn as LuaRef, 1, "x", null), [3]);
  });
});

describe("host functions' lifetime", () => {
  it("frees host functions that Lua collected", () => {
    lua.registerFunction(null, "make_closure", () => () => 1);
    const before = lua.memoryUsedBytes;
    lua.run("for i = 1, 2000 do local f = make_closure() f() end", "@gc.lua");
    lua.collectGarbage();
    assert.ok(lua.memoryUsedBytes < before + 64 * 1024, `${lua.memoryUsedBytes} vs ${before}`);
  });
});

describe("engine misuse", () => {
  it("refuses invalid limits", async () => {
    await assert.rejects(createLuaEngine({ cpuBudgetMs: 0 }), RangeError);
    await assert.rejects(createLuaEngine({ cpuBudgetMs: Number.NaN }), RangeError);
    await assert.rejects(createLuaEngine({ memoryLimitBytes: -1 }), RangeError);
  });

  it("refuses calls after close, and close is idempotent", async () => {
    const other = await createLuaEngine();
    const [fn] = other.run("return function() return 1 end", "@x.lua");
    other.close();
    other.close();
    assert.equal(other.closed, true);
    assert.equal(caught(() => other.call(fn as LuaRef)).code, "ERR_LUA_ENGINE");
    assert.equal(caught(() => other.run("return 1", "@x.lua")).code, "ERR_LUA_ENGINE");
    assert.equal((fn as LuaRef).released, true);
  });

  it("defers close requested from inside Lua until Lua returns", async () => {
    const other = await createLuaEngine();
    other.registerFunction(null, "shutdown", () => {
      other.close();
    });
    assert.deepEqual(other.run("shutdown() return 'finished'", "@x.lua"), [
      Buffer.from("finished"),
    ]);
    assert.equal(other.closed, true);
  });

  it("refuses values it cannot convert", () => {
    const [fn] = lua.run("return function(...) return ... end", "@id.lua");
    assert.throws(() => lua.call(fn as LuaRef, Symbol("x") as never), TypeError);
    assert.throws(() => lua.call(fn as LuaRef, new Date() as never), /cannot pass a Date/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => lua.call(fn as LuaRef, cyclic as never), /nested too deeply/);
    assert.deepEqual(lua.call(fn as LuaRef, 1), [1]);
  });
});
