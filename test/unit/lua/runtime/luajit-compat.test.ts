import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { createLuaEngine } from "../../../../src/lua/vm/create-engine.js";
import type { LuaEngine, LuaValue } from "../../../../src/lua/vm/engine.js";

// LuaJIT habits on Lua 5.4, through the real engine. Expected values are LuaJIT's (BitOp
// semantics: signed 32-bit results).

const COMPAT_SOURCE = readFileSync(
  new URL("../../../../../src/lua/runtime/common/luajit-compat.lua", import.meta.url),
);

let lua: LuaEngine;
before(async () => {
  lua = await createLuaEngine({ cpuBudgetMs: 5000 });
  lua.run(COMPAT_SOURCE, "@luajit-compat.lua");
});
after(() => lua.close());

function run(code: string): LuaValue[] {
  return lua.run(code, "@t.lua");
}

function text(value: LuaValue | undefined): string {
  assert.ok(Buffer.isBuffer(value), `expected a Lua string, got ${String(value)}`);
  return value.toString("utf8");
}

/** Edge inputs, as Lua source. */
const EDGES = ["0", "-1", "0x7fffffff", "0x80000000", "0xffffffff"];

/** `bit.<fn>(x[, n])` for every edge x, as a list of results and their math.type. */
function results(fn: string, n?: number): LuaValue[] {
  const call = n === undefined ? `bit.${fn}(x)` : `bit.${fn}(x, ${n})`;
  const [list, types] = run(`
    local out, types = {}, {}
    for _, x in ipairs{${EDGES.join(", ")}} do
      local r = ${call}
      out[#out + 1] = r
      types[math.type(r) or type(r)] = true
    end
    local t = {}
    for k in pairs(types) do t[#t + 1] = k end
    return out, table.concat(t, ",")`);
  if (fn !== "tohex") assert.equal(text(types), "integer", `${fn} returns integers`);
  assert.ok(Array.isArray(list));
  return list;
}

describe("bit", () => {
  it("is a global and the module 'bit'", () => {
    const [same, loaded] = run('return require("bit") == bit, package.loaded.bit == bit');
    assert.equal(same, true);
    assert.equal(loaded, true);
  });

  it("tobit normalizes to signed 32 bits", () => {
    assert.deepEqual(results("tobit"), [0, -1, 2147483647, -2147483648, -1]);
    const [a, b, c, d] = run(
      "return bit.tobit(0x100000000), bit.tobit(0x1ffffffff), bit.tobit(-0x80000001), bit.tobit(2^32 + 3)",
    );
    assert.deepEqual([a, b, c, d], [0, -1, 2147483647, 3]);
  });

  it("tobit rounds non-integral numbers to nearest, ties to even, as LuaJIT", () => {
    const values = run(
      "return bit.tobit(1.5), bit.tobit(2.5), bit.tobit(-1.5), bit.tobit(0.49999999999999994), bit.tobit(1.4), bit.tobit(-2.6)",
    );
    assert.deepEqual(values, [2, 2, -2, 0, 1, -3]);
  });

  it("tobit turns infinities and NaN into 0 and accepts numeric strings", () => {
    const values = run(
      'return bit.tobit(math.huge), bit.tobit(-math.huge), bit.tobit(0/0), bit.tobit("0x10"), bit.tobit(" 12 ")',
    );
    assert.deepEqual(values, [0, 0, 0, 16, 12]);
  });

  it("bnot", () => {
    assert.deepEqual(results("bnot"), [-1, 0, -2147483648, 2147483647, 0]);
  });

  it("band, bor, bxor take one or more arguments", () => {
    assert.deepEqual(results("band"), [0, -1, 2147483647, -2147483648, -1]);
    const values =
      run(`return bit.band(0xff, 0x0f, 0x3), bit.bor(1, 2, 4, 8), bit.bxor(0xffffffff, 1),
      bit.band(-1, 0xffffffff), bit.bor(0x80000000, 0), bit.bxor(0x7fffffff, -1), bit.band(0x12345678, 0xff00ff00)`);
    assert.deepEqual(values, [3, 15, -2, -1, -2147483648, -2147483648, 0x12005600]);
  });

  it("lshift by 0, 1, 31, 32 (count & 31)", () => {
    assert.deepEqual(results("lshift", 0), [0, -1, 2147483647, -2147483648, -1]);
    assert.deepEqual(results("lshift", 1), [0, -2, -2, 0, -2]);
    assert.deepEqual(results("lshift", 31), [0, -2147483648, -2147483648, 0, -2147483648]);
    assert.deepEqual(results("lshift", 32), [0, -1, 2147483647, -2147483648, -1]);
  });

  it("rshift (logical) by 0, 1, 31, 32", () => {
    assert.deepEqual(results("rshift", 0), [0, -1, 2147483647, -2147483648, -1]);
    assert.deepEqual(results("rshift", 1), [0, 2147483647, 1073741823, 1073741824, 2147483647]);
    assert.deepEqual(results("rshift", 31), [0, 1, 0, 1, 1]);
    assert.deepEqual(results("rshift", 32), [0, -1, 2147483647, -2147483648, -1]);
  });

  it("arshift (arithmetic) by 0, 1, 31, 32", () => {
    assert.deepEqual(results("arshift", 0), [0, -1, 2147483647, -2147483648, -1]);
    assert.deepEqual(results("arshift", 1), [0, -1, 1073741823, -1073741824, -1]);
    assert.deepEqual(results("arshift", 31), [0, -1, 0, -1, -1]);
    assert.deepEqual(results("arshift", 32), [0, -1, 2147483647, -2147483648, -1]);
  });

  it("rol by 0, 1, 31, 32", () => {
    assert.deepEqual(results("rol", 0), [0, -1, 2147483647, -2147483648, -1]);
    assert.deepEqual(results("rol", 1), [0, -1, -2, 1, -1]);
    assert.deepEqual(results("rol", 31), [0, -1, -1073741825, 1073741824, -1]);
    assert.deepEqual(results("rol", 32), [0, -1, 2147483647, -2147483648, -1]);
  });

  it("ror by 0, 1, 31, 32", () => {
    assert.deepEqual(results("ror", 0), [0, -1, 2147483647, -2147483648, -1]);
    assert.deepEqual(results("ror", 1), [0, -1, -1073741825, 1073741824, -1]);
    assert.deepEqual(results("ror", 31), [0, -1, -2, 1, -1]);
    assert.deepEqual(results("ror", 32), [0, -1, 2147483647, -2147483648, -1]);
  });

  it("shift counts use their lower 5 bits, negative ones included", () => {
    const values = run(
      "return bit.lshift(1, 33), bit.rshift(256, -1), bit.rol(1, -1), bit.lshift(1, 64)",
    );
    assert.deepEqual(values, [2, 0, -2147483648, 1]);
  });

  it("bswap", () => {
    assert.deepEqual(results("bswap"), [0, -1, -129, 128, -1]);
    const [v] = run("return bit.bswap(0x12345678)");
    assert.equal(v, 0x78563412);
  });

  it("tohex writes 8 lower-case digits by default", () => {
    assert.deepEqual(
      results("tohex").map((v) => text(v)),
      ["00000000", "ffffffff", "7fffffff", "80000000", "ffffffff"],
    );
    const [v] = run("return bit.tohex(255)");
    assert.equal(text(v), "000000ff");
  });

  it("tohex(x, n): |n| digits, upper case when n < 0, at most 8", () => {
    const values = run(
      "return bit.tohex(-1, -4), bit.tohex(255, 2), bit.tohex(0x12345678, -8), bit.tohex(0x12345678, 16), bit.tohex(1, 0), bit.tohex(0xabcdef, -3)",
    );
    assert.deepEqual(
      values.map((v) => text(v)),
      ["FFFF", "ff", "12345678", "12345678", "", "DEF"],
    );
  });

  it("raises LuaJIT's argument errors", () => {
    const [a, b, c, d] = run(`
      local function err(f, ...) local ok, e = pcall(f, ...) assert(not ok) return e end
      return err(bit.band), err(bit.tobit, "x"), err(bit.bor, 1, {}), err(function() local r = bit.lshift(1) return r end)`);
    assert.equal(text(a), "bad argument #1 to 'band' (number expected, got no value)");
    assert.equal(text(b), "bad argument #1 to 'tobit' (number expected, got string)");
    assert.equal(text(c), "bad argument #2 to 'bor' (number expected, got table)");
    assert.equal(text(d), "t.lua:3: bad argument #2 to 'lshift' (number expected, got nil)");
  });

  it("comes back after package.loaded.bit is cleared", () => {
    const [same] = run(
      'local b = bit package.loaded.bit = nil local again = require "bit" return again == b',
    );
    assert.equal(same, true);
  });
});

describe("table.new and table.clear", () => {
  it("table.new returns an empty table; require 'table.new' returns the function", () => {
    const [same, kind, size, ok] = run(`
      local ok, new_tab = pcall(require, "table.new")
      local t = new_tab(100, 10)
      return new_tab == table.new, type(t), next(t) == nil, ok`);
    assert.deepEqual([same, text(kind), size, ok], [true, "table", true, true]);
  });

  it("table.new checks its arguments", () => {
    const [ok, message] = run("return pcall(table.new)");
    assert.equal(ok, false);
    assert.equal(text(message), "bad argument #1 to 'new' (number expected, got nil)");
  });

  it("table.clear empties array and hash parts, raw, and keeps the table", () => {
    const [same, empty, length] = run(`
      local t = setmetatable({1, 2, 3, a = 1, b = {}}, {__newindex = function() error("no") end})
      local clear = require "table.clear"
      local before = t
      clear(t)
      return clear == table.clear and before == t, next(t) == nil, #t`);
    assert.deepEqual([same, empty, length], [true, true, 0]);
  });

  it("table.clear refuses a non-table", () => {
    const [ok, message] = run("return pcall(table.clear, 1)");
    assert.equal(ok, false);
    assert.equal(text(message), "bad argument #1 to 'clear' (table expected, got number)");
  });
});

describe("Lua 5.1 globals", () => {
  it("unpack is table.unpack", () => {
    const values = run("return unpack == table.unpack, unpack({1, 2, 3})");
    assert.deepEqual(values, [true, 1, 2, 3]);
  });

  it("loadstring compiles text chunks", () => {
    const [value, fail, message] = run(
      'local f = loadstring("return 1 + 1") local g, err = loadstring("x x", "=bad") return f(), g, err',
    );
    assert.equal(value, 2);
    assert.equal(fail, null);
    assert.match(text(message), /^bad:1: /);
  });

  it("its own loadstring, when none exists, refuses binary chunks and non-strings", async () => {
    const engine = await createLuaEngine();
    try {
      engine.run("loadstring = nil", "@t.lua");
      engine.run(COMPAT_SOURCE, "@luajit-compat.lua");
      const [value, fail, message, ok, argError] = engine.run(
        `local f = loadstring("return ...", "=x")
         local g, err = loadstring("\\27Lua\\84\\0")
         local ok, e = pcall(loadstring, nil)
         return f(5), g, err, ok, e`,
        "@t.lua",
      );
      assert.equal(value, 5);
      assert.equal(fail, null);
      assert.match(text(message), /binary chunk/);
      assert.equal(ok, false);
      assert.equal(text(argError), "bad argument #1 to 'loadstring' (string expected, got nil)");
    } finally {
      engine.close();
    }
  });

  it("math.pow and the other Lua 5.1 math functions LuaJIT keeps", () => {
    const values = run(`
      local m, e = math.frexp(8)
      local m2, e2 = math.frexp(-3)
      local m3, e3 = math.frexp(2^-1074)
      return math.pow(2, 53) == 2^53, math.ldexp(0.5, 3), m, e, m2, e2, m3, e3, math.log10(1000),
        math.cosh(0), math.sinh(0), math.tanh(0), math.atan2(1, 1) == math.pi / 4`);
    assert.deepEqual(values, [true, 4, 0.5, 4, -0.75, 2, 0.5, -1073, 3, 1, 0, 0, true]);
  });

  it("table.getn, table.maxn, table.foreach, table.foreachi", () => {
    const values = run(`
      local seen = {}
      table.foreachi({"a", "b"}, function(i, v) seen[#seen + 1] = i .. v end)
      local stop = table.foreach({x = 1}, function(k, v) return k .. v end)
      return table.getn({1, 2, 3}), table.maxn({[5] = 1, [2.5] = 2, a = 3}), table.concat(seen, " "), stop`);
    assert.deepEqual(values.slice(0, 2), [3, 5]);
    assert.equal(text(values[2]), "1a 2b");
    assert.equal(text(values[3]), "x1");
  });
});

describe("unsupported LuaJIT features", () => {
  it("has no ffi, jit, setfenv, getfenv", () => {
    const [ffi, jit, setfenv, getfenv] = run(
      'return (pcall(require, "ffi")), jit == nil, setfenv == nil, getfenv == nil',
    );
    assert.deepEqual([ffi, jit, setfenv, getfenv], [false, true, true, true]);
  });
});

describe("running the chunk", () => {
  it("is idempotent", () => {
    const [before] = run("__bit_before = bit return true");
    assert.equal(before, true);
    lua.run(COMPAT_SOURCE, "@luajit-compat.lua");
    const [same, newSame] = run(
      'return bit == __bit_before and require("bit") == bit, require("table.new") == table.new',
    );
    assert.equal(same, true);
    assert.equal(newSame, true);
  });
});
