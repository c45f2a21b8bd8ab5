import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { LuaHost } from "../../../../src/lua/host/lua-host.js";
import { threadCpuTimeMs } from "../../../../src/lua/vm/cpu-budget.js";
import { createLuaEngine } from "../../../../src/lua/vm/create-engine.js";
import { type LuaEngine, LuaError } from "../../../../src/lua/vm/engine.js";
import { captureLogger } from "../../../helpers/net-helpers.js";

// The budget guards of src/lua/runtime/common/safe-builtins.lua: same results and errors as the C
// functions, and long C calls cut down under a 200 ms CPU budget.

const SOURCE = readFileSync(
  new URL("../../../../../src/lua/runtime/common/safe-builtins.lua", import.meta.url),
  "utf8",
);
const BUDGET_MS = 200;

describe("the guarded functions", () => {
  let lua: LuaEngine;
  before(async () => {
    lua = await createLuaEngine({ cpuBudgetMs: 60_000, memoryLimitBytes: 128 * 1024 * 1024 });
    lua.run(
      `C = { rep = string.rep, upper = string.upper, format = string.format, len = utf8.len, concat = table.concat, sort = table.sort,
        insert = table.insert, remove = table.remove, move = table.move, unpack = table.unpack,
        load = load, loadstring = loadstring, collectgarbage = collectgarbage }`,
      "=setup",
    );
    lua.run(SOURCE, "=safe-builtins", { memory_limit_bytes: lua.memoryLimitBytes });
    lua.run(
      `W = { rep = string.rep, upper = string.upper, format = string.format, len = utf8.len, concat = table.concat, sort = table.sort,
        insert = table.insert, remove = table.remove, move = table.move, unpack = table.unpack,
        load = load, loadstring = loadstring, collectgarbage = collectgarbage }
      BIG = {} for i = 1, 20000 do BIG[i] = i end
      function COPY(t) local r = {} for i = 1, #t do r[i] = t[i] end return r end
      function SER(ok, ...)
        local t = { tostring(ok), tostring(select("#", ...)) }
        for i = 1, select("#", ...) do
          local v = select(i, ...)
          t[#t + 1] = type(v) == "table" and "{" .. table.concat(v, ",") .. "}" or type(v) .. ":" .. tostring(v)
        end
        return table.concat(t, "|")
      end`,
      "=helpers",
    );
  });
  after(() => lua.close());

  /** Runs `body` (a function of the library `L`) with C's functions and with the guarded ones. */
  function both(body: string): [string, string] {
    const run = (lib: string) =>
      (
        lua.run(`return SER(pcall(function(L) ${body} end, ${lib}))`, "@t.lua")[0] as Buffer
      ).toString();
    return [run("C"), run("W")];
  }

  const cases: [string, string][] = [
    ["rep", 'local r = L.rep("ab", 3, ",") return r'],
    ["format", 'local r = L.format("%5.1f|%s|%q|%d%%", 2.25, "x", "a\\0001", 7) return r'],
    ["format with a bad argument", 'local r = L.format("%d", "x") return r'],
    [
      "format %q of 300 KB, control bytes before digits at the piece edges",
      `local t = {} for i = 0, 299999 do t[#t + 1] = string.char(i % 65536 == 65535 and 0 or (i > 0 and i % 65536 == 0) and 49 or i % 256) end
       local s = table.concat(t) .. "\\0009"
       local a = L.format("<%q|%s|%q>", s, "mid", s:sub(1, 70000)) return #a, a == C.format("<%q|%s|%q>", s, "mid", s:sub(1, 70000))`,
    ],
    ["utf8.len", 'local r = L.len("h\\xc3\\xa9llo") return r'],
    ["utf8.len of bad UTF-8", 'return L.len("ab\\xff")'],
    ["rep of a large result", 'local r = L.rep("ab", 3e6, ",") return #r, r:sub(1, 9), r:sub(-9)'],
    ["rep of one byte, 5e6 times", 'local r = L.rep("a", 5e6) return #r, r:sub(-3)'],
    [
      "rep with a large unit",
      'local r = L.rep(("xyz"):rep(30000), 200, "-") return #r, r:sub(89999, 90002)',
    ],
    ["rep of the empty string", 'local r = L.rep("", 5) return r'],
    ["rep of numbers", "local r = L.rep(12, 3, 0) return r"],
    ["rep with a float count", 'local r = L.rep("x", 3.0) return r'],
    ["rep with a bad count", 'local r = L.rep("x", 3.5) return r'],
    ["rep of nil", "local r = L.rep(nil, 3) return r"],
    ["rep with a bad separator", 'local r = L.rep("x", 3, {}) return r'],
    ["rep too large", 'local r = L.rep("xx", 2^31) return r'],
    ["rep with a negative count", 'local r = L.rep("xx", -5) return r'],
    ["concat", 'local r = L.concat({1, "a", 2.5}, "-") return r'],
    ["concat of a bad value", 'local r = L.concat({1, {}, 2}, "-") return r'],
    ["concat of 20000 values", 'local r = L.concat(BIG, ",") return #r, r:sub(1, 20)'],
    [
      "concat of a bad value among 20000",
      'local t = COPY(BIG) t[15000] = true local r = L.concat(t, ",") return r',
    ],
    ["concat of a range", 'local r = L.concat(BIG, "", 100, 5000) return #r'],
    ["concat of a range given as strings", 'local r = L.concat(BIG, "", "100", 5000.0) return #r'],
    ["concat with a bad start", 'local r = L.concat(BIG, "", "x") return r'],
    ["concat with a bad separator", "local r = L.concat(BIG, {}) return r"],
    ["concat of nil", "local r = L.concat(nil) return r"],
    [
      "concat through __index",
      'local t = setmetatable({}, {__index = function(_, k) return k * 2 end}) local r = L.concat(t, ",", 1, 5000) return #r, r:sub(1, 10)',
    ],
    ["sort", "local t = {3, 1, 2} L.sort(t) return t"],
    [
      "sort of 10000 numbers",
      "local t = {} for i = 1, 10000 do t[i] = (i * 7919) % 10007 end L.sort(t) return t[1], t[5000], t[10000]",
    ],
    [
      "sort of 10000 numbers with a comparator",
      "local t = {} for i = 1, 10000 do t[i] = (i * 7919) % 10007 end L.sort(t, function(a, b) return a > b end) return t[1], t[5000]",
    ],
    [
      "sort of 10000 mixed values",
      'local t = {} for i = 1, 10000 do t[i] = (i * 7919) % 10007 end t[5000] = "x" L.sort(t) return t[1]',
    ],
    ["sort of 3000 tables", "local t = {} for i = 1, 3000 do t[i] = {} end L.sort(t) return t[1]"],
    ["sort of mixed values", 'local t = {1, "x"} L.sort(t) return t[1]'],
    ["sort of nil", "L.sort(nil)"],
    ["sort with a bad comparator", "L.sort({1, 2}, 3)"],
    [
      "sort of 5000 strings",
      "local t = {} for i = 1, 5000 do t[i] = tostring((i * 7919) % 10007) end L.sort(t) return t[1], t[5000]",
    ],
    ["insert", "local t = {1, 2} L.insert(t, 3) L.insert(t, 1, 0) return t"],
    [
      "insert into 20000 values",
      'local t = COPY(BIG) L.insert(t, 2, "x") return #t, t[1], t[2], t[3], t[20001]',
    ],
    ["insert of nil", "local t = COPY(BIG) L.insert(t, 2, nil) return #t, t[1], t[2], t[3]"],
    ["insert out of bounds", "local t = {1} L.insert(t, 5, 1)"],
    ["insert with 4 arguments", "local t = {1} L.insert(t, 1, 2, 3)"],
    ["insert with 1 argument", "local t = {1} L.insert(t)"],
    ["insert at a bad position", 'local t = {1} L.insert(t, "x", 2)'],
    [
      "insert through __newindex",
      "local log = {} local t = setmetatable({1,2,3}, {__newindex = function(t, k, v) log[#log+1] = k rawset(t, k, v) end}) L.insert(t, 1, 0) return t, log",
    ],
    [
      "insert out of bounds, with a metatable",
      "local t = setmetatable({1,2,3}, {}) L.insert(t, 9, 0)",
    ],
    ["remove", "local t = {1, 2, 3} return L.remove(t), L.remove(t, 1), t"],
    [
      "remove from 20000 values",
      "local t = COPY(BIG) local v = L.remove(t, 3) return v, #t, t[3], t[19999], t[20000]",
    ],
    ["remove out of bounds", "local t = {1} local r = L.remove(t, 5) return r"],
    ["remove at size + 1", "local t = {1} return L.remove(t, 2), #t"],
    ["remove from an empty table", "local t = {} return L.remove(t), L.remove(t, 0), #t"],
    ["remove with a metatable", "local t = setmetatable({1,2,3}, {}) return L.remove(t, 1), t"],
    ["move", "local t = {1,2,3,4,5} L.move(t, 1, 3, 3) return t"],
    [
      "move 20000 values down",
      "local t = COPY(BIG) L.move(t, 2, 20000, 1) return #t, t[1], t[19999], t[20000]",
    ],
    [
      "move 20000 values up",
      "local t = COPY(BIG) L.move(t, 1, 20000, 2) return #t, t[1], t[2], t[20001]",
    ],
    [
      "move to another table",
      "local d = {} local r = L.move(BIG, 1, 20000, 5, d) return r == d, #d, d[5]",
    ],
    ["move too many", "L.move({}, -5, math.maxinteger, 1)"],
    ["move wrapping around", "L.move({}, 1, 10, math.maxinteger)"],
    ["move from a bad start", 'L.move({}, "x", 2, 1)'],
    ["move to a bad table", "L.move({}, 1, 2, 1, 5)"],
    [
      "move through __newindex",
      "local log = {} local d = setmetatable({}, {__newindex = function(t, k, v) log[#log+1] = k rawset(t, k, v) end}) L.move({1,2,3}, 1, 3, 1, d) return log",
    ],
    ["unpack", "return L.unpack({1, 2, 3})"],
    ["unpack of a string", 'return L.unpack("abc")'],
    [
      "unpack through __index",
      "local t = setmetatable({}, {__index = function(_, k) return k end}) return L.unpack(t, 2, 5)",
    ],
    [
      "unpack through __index and __len",
      "local t = setmetatable({}, {__index = function(_, k) return k end, __len = function() return 3 end}) return L.unpack(t)",
    ],
    ["unpack from a bad start", 'local r = L.unpack({}, "x") return r'],
    ["unpack of nil", "return L.unpack(nil)"],
    ["unpack of too many", "local r = L.unpack({}, 1, 1e7) return r"],
    ["upper", 'return L.upper("abc"), L.upper(12)'],
    ["upper of nil", "local r = L.upper(nil) return r"],
    ["upper of 100 KB", 'return #L.upper(("a"):rep(1e5))'],
    ["load of a long chunk", 'local f = L.load(("x = 1 "):rep(2e4) .. "return x") return f()'],
    ["load of a long chunk with an error", 'return L.load(("x = 1 "):rep(2e4) .. "return +")'],
    ["load of a long named chunk", 'return L.load(("x = 1 "):rep(2e4) .. "return +", "=mine")'],
    [
      "load of a long chunk with an environment",
      'local env = {} local f = L.load(("x = 1 "):rep(2e4) .. "return x", "=e", "t", env) return f(), env.x',
    ],
    ["load of a long binary chunk", 'return L.load("\\27Lua" .. ("x"):rep(1e5))'],
    [
      "loadstring of a long chunk",
      'local f = L.loadstring(("x = 1 "):rep(2e4) .. "return 7") return f()',
    ],
    ["collectgarbage", 'return type(L.collectgarbage("count")), L.collectgarbage()'],
    ["collectgarbage with a refused option", 'return L.collectgarbage("stop")'],
  ];
  for (const [name, body] of cases) {
    it(`behaves as C: ${name}`, () => {
      const [c, w] = both(body);
      assert.equal(w, c);
    });
  }

  it("keeps a memory error a memory error", () => {
    assert.throws(
      () => lua.run('return string.rep("x", 2^28)', "@big.lua"),
      (err) => err instanceof LuaError && err.code === "ERR_LUA_MEMORY",
    );
    assert.throws(
      () =>
        lua.run("local t = {} for i = 1, 3e7 do t[i] = i end return #table.concat(t)", "@big.lua"),
      (err) => err instanceof LuaError && err.code === "ERR_LUA_MEMORY",
    );
    lua.collectGarbage();
    assert.deepEqual(lua.run('return #string.rep("y", 1000)', "@ok.lua"), [1000]);
  });
});

describe("long library calls under the CPU budget", () => {
  let host: LuaHost;
  let lua: LuaEngine;
  before(async () => {
    host = await LuaHost.create({
      scriptPath: "/nonexistent/hostile.lua",
      cpuBudgetMs: BUDGET_MS,
      logger: captureLogger("error").logger,
    });
    lua = host.engine;
  });
  after(() => host.close());

  const CHAIN =
    'local base = {} for i = 1, 1e5 do base[i] = "x" end local c = base for i = 1, 1990 do c = setmetatable({}, {__index = c}) end';
  const hostile: [string, string][] = [
    ["repeated 16 MB reps of one byte", 'while true do local s = ("a"):rep(2^24) end'],
    ["a move over 1e12 slots", "table.move({}, 1, 1e12, 2)"],
    [
      "inserting at the front of 2e6 values",
      "local t = {} for i = 1, 2e6 do t[i] = i end while true do table.insert(t, 1, 0) table.remove(t, 1) end",
    ],
    [
      "concatenating 4e6 numbers",
      'local t = {} for i = 1, 4e6 do t[i] = i end return #table.concat(t, ",")',
    ],
    [
      "sorting 3e6 numbers",
      "local t = {} for i = 1, 3e6 do t[i] = (i * 7919) % 1000003 end table.sort(t)",
    ],
    [
      "sorting 3e6 numbers with a C comparator",
      "local t = {} for i = 1, 3e6 do t[i] = (i * 7919) % 1000003 end table.sort(t, math.max)",
    ],
    ["concat through a 1990-deep __index chain", `${CHAIN} return #table.concat(c, "", 1, 1e5)`],
    [
      "unpack through a 1990-deep __index chain",
      `${CHAIN} return select("#", table.unpack(c, 1, 5e5))`,
    ],
    [
      "gsub with a table reading through a 1990-deep __index chain",
      `${CHAIN} return (("\\1"):rep(1e5)):gsub(".", setmetatable({}, {__index = c}))`,
    ],
    [
      "loading a 30 MB chunk, repeatedly",
      'local src = ("x = 1 "):rep(5e6) while true do load(src) end',
    ],
    [
      "full collections of 2e6 tables",
      "local t = {} for i = 1, 2e6 do t[i] = {} end while true do collectgarbage() end",
    ],
    ["upper-casing 50 MB, repeatedly", 'local s = ("a"):rep(5e7) while true do s:upper() end'],
    ["utf8.len of 20 MB, repeatedly", 'local s = ("a"):rep(2e7) while true do utf8.len(s) end'],
    [
      "string.format %q of 8 MB, repeatedly",
      'local s = ("\\0"):rep(8e6) while true do local q = string.format("%q", s) end',
    ],
    // Each `..` is one VM instruction copying 40 MB: the allocator refuses them once the budget
    // is spent (before: 250 of them, seconds, ran before the next check).
    [
      "concatenations of 40 MB, repeatedly",
      'local a = ("x"):rep(2e7) while true do local c = a .. a end',
    ],
    [
      "concatenations of 40 MB inside pcall, repeatedly",
      'local a = ("x"):rep(2e7) while true do pcall(function() local c = a .. a end) end',
    ],
  ];
  for (const [name, code] of hostile) {
    it(`stops ${name} within three budgets`, () => {
      const start = threadCpuTimeMs();
      assert.throws(
        () => lua.run(code, "@hostile.lua"),
        (err) =>
          err instanceof LuaError &&
          err.code === "ERR_LUA_CPU_BUDGET" &&
          /cpu budget exceeded/.test(err.message),
      );
      const elapsed = threadCpuTimeMs() - start;
      // Three budgets of CPU time: far below what the calls take unchecked.
      assert.ok(elapsed < BUDGET_MS * 3, `stopped after ${elapsed.toFixed(0)} ms`);
      lua.collectGarbage();
      assert.deepEqual(lua.run('return #("ab"):rep(3), table.concat({1, 2}, ",")', "@ok.lua"), [
        6,
        Buffer.from("1,2"),
      ]);
    });
  }

  it("returns rep(s, n) of the empty string at once", () => {
    const start = threadCpuTimeMs();
    assert.deepEqual(lua.run('return #(""):rep(2^60), #("x"):rep(0)', "@rep.lua"), [0, 0]);
    assert.ok(threadCpuTimeMs() - start < 50);
  });
});
