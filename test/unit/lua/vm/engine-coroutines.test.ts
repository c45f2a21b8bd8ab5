import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createLuaEngine } from "../../../../src/lua/vm/create-engine.js";
import {
  type LuaEngine,
  LuaError,
  type LuaRef,
  type LuaResumeResult,
  type LuaValue,
  luaYield,
} from "../../../../src/lua/vm/engine.js";

let lua: LuaEngine;
before(async () => {
  lua = await createLuaEngine({ cpuBudgetMs: 200 });
});
after(() => lua.close());

/** A coroutine running the function that `source` returns. */
function thread(source: string): LuaRef {
  const [fn] = lua.run(source, "@co.lua");
  assert.ok(typeof fn === "object" && fn !== null && "release" in fn);
  return lua.newThread(fn as LuaRef);
}

function errorOf(result: LuaResumeResult): LuaError {
  assert.equal(result.status, "error");
  return (result as { error: LuaError }).error;
}

const b = (s: string) => Buffer.from(s);

describe("resume and yield", () => {
  it("passes values in and out until the function returns", () => {
    const co = thread(`return function(a, b)
      local c = coroutine.yield(a + b)
      local d, e = coroutine.yield(c .. "!", nil, true)
      return "done", d, e
    end`);
    assert.equal(lua.threadStatus(co), "suspended");
    assert.deepEqual(lua.resume(co, 1, 2), { status: "yield", values: [3] });
    assert.deepEqual(lua.resume(co, "hi"), { status: "yield", values: [b("hi!"), null, true] });
    assert.deepEqual(lua.resume(co, 7, Buffer.from([0, 255])), {
      status: "done",
      values: [b("done"), 7, Buffer.from([0, 255])],
    });
    assert.equal(lua.threadStatus(co), "dead");
    assert.throws(
      () => lua.resume(co),
      (err: unknown) =>
        err instanceof LuaError && err.code === "ERR_LUA_ENGINE" && /dead/.test(err.message),
    );
    co.release();
  });

  it("yields across pcall inside the coroutine", () => {
    const co = thread(`return function()
      local ok, v = pcall(function() return coroutine.yield("inside") end)
      return ok, v
    end`);
    assert.deepEqual(lua.resume(co), { status: "yield", values: [b("inside")] });
    assert.deepEqual(lua.resume(co, 5), { status: "done", values: [true, 5] });
  });

  it("lets a Lua wrapper yield to the host for I/O (sock_read style)", () => {
    lua.run(
      `READ = 1
       function sock_read(s) return coroutine.yield(READ, s) end`,
      "@io.lua",
    );
    const co = thread(`return function(s)
      local data = sock_read(s)
      local more = sock_read(s)
      return data .. more
    end`);
    assert.deepEqual(lua.resume(co, 9), { status: "yield", values: [1, 9] });
    assert.deepEqual(lua.resume(co, Buffer.from("ab\0")), { status: "yield", values: [1, 9] });
    assert.deepEqual(lua.resume(co, "cd"), { status: "done", values: [b("ab\0cd")] });
  });

  it("lets a host function yield; resume values become its results", () => {
    lua.registerFunction(null, "wait_event", (args) => luaYield("wait", args.integer(1)));
    const co = thread(`return function()
      local kind, payload = wait_event(5)
      return kind, payload
    end`);
    assert.deepEqual(lua.resume(co), { status: "yield", values: [b("wait"), 5] });
    assert.deepEqual(lua.resume(co, "message", Buffer.from([1, 2])), {
      status: "done",
      values: [b("message"), Buffer.from([1, 2])],
    });
  });

  it("reports a host yield outside a coroutine as a Lua error", () => {
    lua.registerFunction(null, "yield_now", () => luaYield());
    assert.deepEqual(lua.run("return pcall(yield_now)", "@y.lua"), [
      false,
      b("attempt to yield from outside a coroutine"),
    ]);
  });

  it("resumes coroutines created by Lua and passed to the host", () => {
    const [co] = lua.run(
      "return coroutine.create(function(x) coroutine.yield(x * 2) end)",
      "@c.lua",
    );
    assert.ok(typeof co === "object" && co !== null && "release" in co);
    const ref = co as LuaRef;
    assert.equal(ref.type, "thread");
    assert.deepEqual(lua.resume(ref, 21), { status: "yield", values: [42] });
    assert.deepEqual(lua.resume(ref), { status: "done", values: [] });
  });

  it("reports a running coroutine as running and refuses to resume it", () => {
    let self: LuaRef | undefined;
    let status: string | undefined;
    let failure: unknown;
    lua.registerFunction(null, "inspect_self", (args) => {
      self = args.ref(1);
      status = lua.threadStatus(self);
      try {
        lua.resume(self);
      } catch (err) {
        failure = err;
      }
    });
    const co = thread("return function() inspect_self(coroutine.running()) end");
    assert.deepEqual(lua.resume(co), { status: "done", values: [] });
    assert.equal(status, "running");
    assert.ok(failure instanceof LuaError && failure.code === "ERR_LUA_ENGINE");
  });

  it("resumes one coroutine from a host function running in another", () => {
    const inner = thread("return function(x) local y = coroutine.yield(x + 1) return y * 2 end");
    lua.registerFunction(null, "step_inner", (args) => {
      const result = lua.resume(inner, args.integer(1));
      assert.notEqual(result.status, "error");
      return (result as { values: LuaValue[] }).values[0];
    });
    const outer = thread(`return function()
      local a = step_inner(1)
      local b = coroutine.yield(a)
      return step_inner(b)
    end`);
    assert.deepEqual(lua.resume(outer), { status: "yield", values: [2] });
    assert.deepEqual(lua.resume(outer, 20), { status: "done", values: [40] });
    assert.equal(lua.threadStatus(inner), "dead");
  });

  it("runs many coroutines side by side", () => {
    const threads = Array.from({ length: 50 }, () =>
      thread("return function(id) for i = 1, 3 do coroutine.yield(id, i) end return id end"),
    );
    threads.forEach((co, id) => {
      assert.deepEqual(lua.resume(co, id), { status: "yield", values: [id, 1] });
    });
    for (let round = 2; round <= 3; round++) {
      threads.forEach((co, id) => {
        assert.deepEqual(lua.resume(co), { status: "yield", values: [id, round] });
      });
    }
    threads.forEach((co, id) => {
      assert.deepEqual(lua.resume(co), { status: "done", values: [id] });
      co.release();
    });
  });
});

describe("errors in coroutines", () => {
  it("reports message with position and a traceback", () => {
    const co = thread(`return function()
      coroutine.yield()
      local t = nil
      return t.field
    end`);
    lua.resume(co);
    const error = errorOf(lua.resume(co));
    assert.equal(error.code, "ERR_LUA_RUNTIME");
    assert.equal(error.message, "co.lua:4: attempt to index a nil value (local 't')");
    assert.match(error.traceback, /^stack traceback:\n/);
    assert.match(error.traceback, /co\.lua:4: in function/);
    assert.equal(lua.threadStatus(co), "dead");
  });

  it("describes table and nil error values without crashing", () => {
    assert.equal(
      errorOf(lua.resume(thread("return function() error({code = 1}) end"))).message,
      "(error object is a table value)",
    );
    assert.equal(
      errorOf(lua.resume(thread("return function() error() end"))).message,
      "(error object is a nil value)",
    );
    assert.equal(
      errorOf(
        lua.resume(
          thread(
            "return function() error(setmetatable({}, {__tostring = function() return 'custom' end})) end",
          ),
        ),
      ).message,
      "custom",
    );
    assert.equal(
      errorOf(
        lua.resume(
          thread(
            "return function() error(setmetatable({}, {__tostring = function() error('no') end})) end",
          ),
        ),
      ).message,
      "(error object is a table value)",
    );
  });

  it("closes pending to-be-closed variables of a failed coroutine", () => {
    const closed: LuaValue[] = [];
    lua.registerFunction(null, "on_close", (args) => {
      closed.push(args.value(1));
    });
    const co = thread(`return function()
      local guard <close> = setmetatable({}, {__close = function() on_close("closed") end})
      coroutine.yield()
      error("fail")
    end`);
    lua.resume(co);
    assert.deepEqual(closed, []);
    assert.equal(errorOf(lua.resume(co)).message, "co.lua:4: fail");
    assert.deepEqual(closed, [b("closed")]);
  });

  it("keeps the engine usable after a coroutine failed", () => {
    errorOf(lua.resume(thread("return function() error('x') end")));
    assert.deepEqual(lua.run("return 1 + 1", "@ok.lua"), [2]);
  });
});
