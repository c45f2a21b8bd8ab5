import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { threadCpuTimeMs } from "../../../../src/lua/vm/cpu-budget.js";
import { createLuaEngine } from "../../../../src/lua/vm/create-engine.js";
import { type LuaEngine, LuaError, type LuaRef } from "../../../../src/lua/vm/engine.js";

const BUDGET_MS = 80;
const MIB = 1024 * 1024;

function isCode(code: LuaError["code"], pattern?: RegExp) {
  return (err: unknown) =>
    err instanceof LuaError &&
    err.code === code &&
    (pattern === undefined || pattern.test(err.message));
}

/**
 * Runs `fn`, expecting it to throw; returns the CPU milliseconds it spent: the budget's own clock,
 * which a loaded machine does not stretch.
 */
function timeThrow(fn: () => unknown, check: (err: unknown) => boolean): number {
  const start = threadCpuTimeMs();
  assert.throws(fn, check);
  return threadCpuTimeMs() - start;
}

describe("CPU budget", () => {
  let lua: LuaEngine;
  before(async () => {
    lua = await createLuaEngine({ cpuBudgetMs: BUDGET_MS });
  });
  after(() => lua.close());

  const loops: [string, string][] = [
    ["an endless loop", "while true do end"],
    [
      "an endless loop inside pcall, retried forever",
      "while true do pcall(function() while true do end end) end",
    ],
    [
      "a loop whose error handler loops",
      "while true do xpcall(function() while true do end end, function() while true do end end) end",
    ],
    [
      "a string-heavy loop",
      'local s = "" while true do s = s .. "x" if #s > 10000 then s = "" end end',
    ],
    ["a loop in a Lua-created coroutine", "coroutine.wrap(function() while true do end end)()"],
    [
      "a loop in a coroutine resumed under pcall",
      "while true do pcall(coroutine.wrap(function() while true do end end)) end",
    ],
    [
      "a loop calling string functions",
      'while true do string.format("%d %s", 1, "x"):rep(10):upper() end',
    ],
  ];
  for (const [name, source] of loops) {
    it(`stops ${name} within the budget`, () => {
      const elapsed = timeThrow(
        () => lua.run(source, "@loop.lua"),
        isCode("ERR_LUA_CPU_BUDGET", /^loop\.lua:1: (loop\.lua:1: )?cpu budget exceeded$/),
      );
      assert.ok(elapsed >= BUDGET_MS * 0.9, `stopped too early: ${elapsed} ms`);
      assert.ok(elapsed < BUDGET_MS * 3 + 200, `stopped too late: ${elapsed} ms`);
      assert.deepEqual(lua.run("return 40 + 2", "@ok.lua"), [42]);
    });
  }

  it("stops a loop whose pcall returns to the host through a tail call", () => {
    const source = "return pcall(function() while true do end end)";
    const elapsed = timeThrow(() => lua.run(source, "@tail.lua"), isCode("ERR_LUA_CPU_BUDGET"));
    assert.ok(elapsed < BUDGET_MS * 3 + 200, `stopped too late: ${elapsed} ms`);
    const [body] = lua.run(`return function() ${source} end`, "@tail-co.lua");
    const result = lua.resume(lua.newThread(body as LuaRef));
    assert.equal(result.status, "error");
    assert.equal(result.status === "error" && result.error.code, "ERR_LUA_CPU_BUDGET");
    assert.deepEqual(lua.run("return 40 + 2", "@ok.lua"), [42]);
  });

  it("stops a loop in a coroutine resumed by the host and keeps other coroutines working", () => {
    const [fn] = lua.run(
      "return function() coroutine.yield('ready') while true do end end",
      "@co.lua",
    );
    const co = lua.newThread(fn as LuaRef);
    assert.deepEqual(lua.resume(co), { status: "yield", values: [Buffer.from("ready")] });
    const start = threadCpuTimeMs();
    const result = lua.resume(co);
    const elapsed = threadCpuTimeMs() - start;
    assert.equal(result.status, "error");
    const error = (result as { error: LuaError }).error;
    assert.equal(error.code, "ERR_LUA_CPU_BUDGET");
    assert.match(error.message, /cpu budget exceeded/);
    assert.ok(elapsed < BUDGET_MS * 3 + 200);
    const [other] = lua.run("return function(x) return coroutine.yield(x) end", "@co2.lua");
    const co2 = lua.newThread(other as LuaRef);
    assert.deepEqual(lua.resume(co2, 1), { status: "yield", values: [1] });
  });

  it("does not count time the thread spends off the CPU", () => {
    // As on a loaded machine, where the thread waits for a core: wall-clock time passes, CPU
    // time does not. Three waits of a whole budget each, with Lua work between them.
    const wait = new Int32Array(new SharedArrayBuffer(4));
    lua.registerFunction(null, "off_cpu", () => {
      Atomics.wait(wait, 0, 0, BUDGET_MS);
      return undefined;
    });
    const wallStart = performance.now();
    assert.deepEqual(
      lua.run("for _ = 1, 3 do off_cpu() for _ = 1, 5000 do end end return 'done'", "@off.lua"),
      [Buffer.from("done")],
    );
    assert.ok(performance.now() - wallStart >= BUDGET_MS * 3);
  });

  it("measures os.clock in CPU time, as C's clock() does", () => {
    const wait = new Int32Array(new SharedArrayBuffer(4));
    lua.registerFunction(null, "off_cpu_briefly", () => {
      Atomics.wait(wait, 0, 0, 50);
      return undefined;
    });
    const [spent] = lua.run("local t = os.clock() off_cpu_briefly() return os.clock() - t", "=c");
    assert.ok((spent as number) < 0.04, `os.clock advanced ${spent} s while off the CPU`);
  });

  it("starts a fresh budget for each entry from the host", () => {
    const [spin] = lua.run(
      "return function(ms) local t = os.clock() while (os.clock() - t) * 1000 < ms do end return true end",
      "@spin.lua",
    );
    for (let i = 0; i < 3; i++) assert.deepEqual(lua.call(spin as LuaRef, BUDGET_MS * 0.5), [true]);
  });

  it("gives each handler of a dispatcher its own budget when it moves the budget epoch", () => {
    const [dispatch] = lua.run(
      `local epoch = ...
       local function spin(ms) local t = os.clock() while (os.clock() - t) * 1000 < ms do end end
       return function(n, ms, move)
         for i = 1, n do
           if move then epoch[1] = epoch[1] + 1 end
           spin(ms)
         end
         return n
       end`,
      "@dispatch.lua",
      lua.budgetEpoch(),
    );
    assert.equal(lua.budgetEpoch(), lua.budgetEpoch());
    // Four handlers of 60 % of the budget each: 240 % in one entry, but each within its own.
    assert.deepEqual(lua.call(dispatch as LuaRef, 4, BUDGET_MS * 0.6, true), [4]);
    // Without moving the epoch they share the entry's budget.
    assert.throws(
      () => lua.call(dispatch as LuaRef, 4, BUDGET_MS * 0.6, false),
      isCode("ERR_LUA_CPU_BUDGET"),
    );
    // One handler over budget is stopped even though the epoch moves before it.
    const elapsed = timeThrow(
      () => lua.call(dispatch as LuaRef, 1, 1e9, true),
      isCode("ERR_LUA_CPU_BUDGET"),
    );
    assert.ok(elapsed < BUDGET_MS * 3 + 200);
  });

  it("refuses huge allocations after the budget, but not those of a dispatcher's next handler", () => {
    lua.registerFunction(null, "host_stall", () => {
      const until = threadCpuTimeMs() + BUDGET_MS * 1.5;
      while (threadCpuTimeMs() < until);
      return undefined;
    });
    const [dispatch] = lua.run(
      `local epoch = ...
       return function()
         -- First handler: starts the budget clock, then a host call past the whole budget.
         epoch[1] = epoch[1] + 1
         for _ = 1, 5000 do end
         host_stall()
         -- Next handler: a 2 MB allocation at once, before any budget check.
         epoch[1] = epoch[1] + 1
         return #(("x"):rep(2^21) .. "y")
       end`,
      "@dispatch.lua",
      lua.budgetEpoch(),
    );
    assert.deepEqual(lua.call(dispatch as LuaRef), [2 ** 21 + 1]);
    // Without a new handler, the same allocation past the budget is refused: the budget error.
    assert.throws(
      () => lua.run('for _ = 1, 5000 do end host_stall() return #("x"):rep(2^21)', "=late"),
      isCode("ERR_LUA_CPU_BUDGET", /an allocation was refused/),
    );
  });

  it("does not let a spent budget be revived by moving the epoch", () => {
    const [revive] = lua.run(
      `local epoch = ...
       return function()
         while true do
           pcall(function() while true do end end)
           epoch[1] = epoch[1] + 1
         end
       end`,
      "@revive.lua",
      lua.budgetEpoch(),
    );
    const elapsed = timeThrow(() => lua.call(revive as LuaRef), isCode("ERR_LUA_CPU_BUDGET"));
    assert.ok(elapsed < BUDGET_MS * 3 + 200);
  });

  it("shares one budget between an entry and the calls it makes back into Lua", () => {
    const [spin] = lua.run("return function() while true do end end", "@inner.lua");
    lua.registerFunction(null, "nested_spin", () => {
      lua.call(spin as LuaRef);
    });
    const elapsed = timeThrow(
      () => lua.run("nested_spin()", "@outer.lua"),
      isCode("ERR_LUA_CPU_BUDGET"),
    );
    assert.ok(elapsed < BUDGET_MS * 3 + 200);
  });

  it("tells a host function how much of the entry's budget is left", () => {
    assert.equal(lua.budgetLeftMs(), BUDGET_MS);
    const seen: number[] = [];
    lua.registerFunction(null, "budget_left", () => {
      seen.push(lua.budgetLeftMs());
      return undefined;
    });
    lua.run(
      "budget_left(); local t = os.clock() while os.clock() - t < 0.03 do end budget_left()",
      "=left",
    );
    assert.ok(seen[0]! <= BUDGET_MS && seen[0]! > BUDGET_MS - 20, String(seen[0]));
    assert.ok(seen[1]! < seen[0]! - 20, `${seen[1]} < ${seen[0]} - 20`);
    assert.throws(() => lua.run("while true do end", "=spin"), isCode("ERR_LUA_CPU_BUDGET"));
  });

  it("refuses __gc finalizers, which Lua runs with hooks off", async () => {
    const doomed = await createLuaEngine({ cpuBudgetMs: BUDGET_MS });
    assert.throws(
      () => doomed.run("setmetatable({}, {__gc = function() while true do end end})", "@gc.lua"),
      /__gc metamethods are not supported/,
    );
    // Added after setmetatable, __gc does not mark the object (plain Lua semantics).
    doomed.run(
      "local mt = {} keep = setmetatable({}, mt) mt.__gc = function() while true do end end keep = nil collectgarbage()",
      "@gc2.lua",
    );
    const start = threadCpuTimeMs();
    doomed.close();
    assert.ok(threadCpuTimeMs() - start < BUDGET_MS * 3 + 200);
    assert.equal(doomed.closed, true);
  });
});

describe("memory cap", () => {
  let lua: LuaEngine;
  before(async () => {
    lua = await createLuaEngine({ memoryLimitBytes: 24 * MIB, cpuBudgetMs: 5000 });
  });
  after(() => lua.close());

  it("turns a memory bomb into a memory error and recovers the memory", () => {
    assert.throws(
      () =>
        lua.run(
          'local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 1000) .. i end',
          "@bomb.lua",
        ),
      isCode("ERR_LUA_MEMORY", /^not enough memory$/),
    );
    assert.ok(lua.memoryUsedBytes <= 24 * MIB);
    lua.collectGarbage();
    assert.ok(lua.memoryUsedBytes < 2 * MIB, `still ${lua.memoryUsedBytes} bytes`);
    assert.deepEqual(lua.run("return #string.rep('y', 1000)", "@ok.lua"), [1000]);
  });

  it("refuses single huge allocations", () => {
    assert.throws(
      () => lua.run('return string.rep("x", 2^30)', "@big.lua"),
      isCode("ERR_LUA_MEMORY"),
    );
    // Beyond Lua's own size limit on wasm32: a plain Lua error.
    assert.throws(
      () => lua.run('return string.rep("x", 2^31)', "@huge.lua"),
      /resulting string too large/,
    );
    assert.deepEqual(lua.run("return 1", "@ok.lua"), [1]);
  });

  it("lets scripts catch memory errors with pcall", () => {
    assert.deepEqual(lua.run('return pcall(string.rep, "x", 2^30)', "@pcall.lua"), [
      false,
      Buffer.from("not enough memory"),
    ]);
    assert.deepEqual(
      lua.run(
        "local ok = pcall(function() local t = {} for i = 1, 1e9 do t[i] = {} end end) return ok, #'after'",
        "@p2.lua",
      ),
      [false, 5],
    );
  });

  it("fails cleanly when the host passes more bytes than the cap allows", () => {
    const [fn] = lua.run("return function(s) return #s end", "@len.lua");
    assert.throws(() => lua.call(fn as LuaRef, Buffer.alloc(30 * MIB)), isCode("ERR_LUA_MEMORY"));
    assert.deepEqual(lua.call(fn as LuaRef, Buffer.alloc(MIB)), [MIB]);
  });

  it("reports the usage and the cap", () => {
    assert.equal(lua.memoryLimitBytes, 24 * MIB);
    assert.ok(lua.memoryUsedBytes > 0);
  });
});

describe("deep recursion and C limits", () => {
  let lua: LuaEngine;
  before(async () => {
    lua = await createLuaEngine({ cpuBudgetMs: 5000 });
  });
  after(() => lua.close());

  it("turns endless Lua recursion into a stack overflow error", () => {
    assert.throws(
      () => lua.run("local function f() return 1 + f() end return f()", "@rec.lua"),
      isCode("ERR_LUA_RUNTIME", /^rec\.lua:1: stack overflow/),
    );
    assert.deepEqual(lua.run("return 'still here'", "@ok.lua"), [Buffer.from("still here")]);
  });

  it("turns metamethod and tostring recursion into a C stack overflow error", () => {
    assert.throws(
      () =>
        lua.run(
          "local t = setmetatable({}, {__index = function(t, k) return t[k] end}) return t.x",
          "@idx.lua",
        ),
      /C stack overflow/,
    );
    assert.throws(
      () =>
        lua.run(
          "return tostring(setmetatable({}, {__tostring = function(t) return tostring(t) end}))",
          "@ts.lua",
        ),
      /C stack overflow/,
    );
  });

  it("bounds host → Lua → host recursion", () => {
    const [recurse] = lua.run("return function() return host_recurse() end", "@r.lua");
    lua.registerFunction(null, "host_recurse", () => lua.call(recurse as LuaRef)[0]);
    assert.throws(() => lua.call(recurse as LuaRef), /C stack overflow|too many nested calls/);
    assert.deepEqual(lua.run("return 1", "@ok.lua"), [1]);
  });

  it("stops pathological patterns with Lua's own limit", () => {
    assert.throws(
      () =>
        lua.run(
          'return string.find(string.rep("a", 1e5), string.rep("a?", 1e5) .. string.rep("a", 1e5))',
          "@pat.lua",
        ),
      /pattern too complex/,
    );
  });

  it("refuses deeply nested source", () => {
    const [chunk, message] = lua.run(
      'return load("return " .. string.rep("(", 1000) .. "1" .. string.rep(")", 1000))',
      "@deep.lua",
    );
    assert.equal(chunk, null);
    assert.match(String(message), /overflow|too many/);
  });
});
