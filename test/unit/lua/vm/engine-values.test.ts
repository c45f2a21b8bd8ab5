import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createLuaEngine } from "../../../../src/lua/vm/create-engine.js";
import {
  type LuaArgs,
  type LuaEngine,
  LuaError,
  type LuaInput,
  type LuaRef,
  type LuaValue,
  luaMulti,
} from "../../../../src/lua/vm/engine.js";

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

let lua: LuaEngine;
before(async () => {
  lua = await createLuaEngine({ cpuBudgetMs: 500 });
});
after(() => lua.close());

/** Runs `source` as a chunk named `@t.lua` with `args`. */
function run(source: string, ...args: LuaInput[]): LuaValue[] {
  return lua.run(source, "@t.lua", ...args);
}

function isRef(value: LuaValue | undefined): value is LuaRef {
  return typeof value === "object" && value !== null && "release" in value;
}

describe("byte strings", () => {
  it("passes all 256 byte values from JS to Lua unchanged", () => {
    const [ok, length] = run(
      `local s = ...
       for i = 1, 256 do if s:byte(i) ~= i - 1 then return false, i end end
       return true, #s`,
      ALL_BYTES,
    );
    assert.equal(ok, true);
    assert.equal(length, 256);
  });

  it("passes all 256 byte values from Lua to JS unchanged", () => {
    const [s] = run(
      "local t = {} for i = 0, 255 do t[#t + 1] = string.char(i) end return table.concat(t)",
    );
    assert.deepEqual(s, ALL_BYTES);
  });

  it("round-trips NUL-containing and invalid UTF-8 strings both ways", () => {
    const odd = Buffer.from([0x61, 0x00, 0x62, 0xff, 0xc3, 0x00, 0x00, 0x80]);
    const [back, length] = run("local s = ... return s, #s", odd);
    assert.deepEqual(back, odd);
    assert.equal(length, 8);
    const [made] = run('return "a\\0b\\0"');
    assert.deepEqual(made, Buffer.from("a\0b\0", "latin1"));
  });

  it("encodes JS strings as UTF-8, NUL included", () => {
    const [length, bytes] = run("local s = ... return #s, s", "h\u00e9\0\u20ac");
    assert.equal(length, 1 + 2 + 1 + 3);
    assert.deepEqual(bytes, Buffer.from("h\u00e9\0\u20ac", "utf8"));
  });

  it("round-trips the empty string and a 3 MiB buffer", () => {
    assert.deepEqual(run("return ...", ""), [Buffer.alloc(0)]);
    const big = Buffer.alloc(3 * 1024 * 1024, 0xab);
    big[0] = 0;
    big[big.length - 1] = 0xff;
    const [back] = run("return ...", big);
    assert.ok(Buffer.isBuffer(back));
    assert.equal(Buffer.compare(back, big), 0);
  });

  it("gives host functions every byte and takes every byte back", () => {
    let received: Buffer | undefined;
    lua.registerFunction(null, "echo_bytes", (args) => {
      received = args.bytes(1);
      return received;
    });
    const [back] = run("return echo_bytes(...)", ALL_BYTES);
    assert.deepEqual(received, ALL_BYTES);
    assert.deepEqual(back, ALL_BYTES);
  });
});

describe("numbers", () => {
  it("keeps integral JS numbers as Lua integers and others as floats", () => {
    assert.deepEqual(
      run(
        "local a, b, c, d = ... return math.type(a), math.type(b), math.type(c), math.type(d)",
        3,
        2.5,
        2 ** 53,
        1e20,
      ),
      [Buffer.from("integer"), Buffer.from("float"), Buffer.from("integer"), Buffer.from("float")],
    );
    assert.deepEqual(run('return "id " .. ...', 3), [Buffer.from("id 3")]);
  });

  it("passes bigints as exact 64-bit integers and returns big integers as bigints", () => {
    const [back, type] = run("local n = ... return n, math.type(n)", 2n ** 62n + 1n);
    assert.equal(back, 2n ** 62n + 1n);
    assert.deepEqual(type, Buffer.from("integer"));
    assert.deepEqual(run("return math.maxinteger, math.mininteger"), [
      2n ** 63n - 1n,
      -(2n ** 63n),
    ]);
  });

  it("returns integers and floats as numbers", () => {
    assert.deepEqual(run("return 1, -7, 2.5, 3.0, 1/0, 2^53"), [1, -7, 2.5, 3, Infinity, 2 ** 53]);
    const [nan] = run("return 0/0");
    assert.ok(Number.isNaN(nan));
  });

  it("makes a host function's integral results Lua integers", () => {
    lua.registerFunction(null, "seven", () => 7);
    lua.registerFunction(null, "half", () => 7.5);
    assert.deepEqual(run('return "id " .. seven(), math.type(seven()), math.type(half())'), [
      Buffer.from("id 7"),
      Buffer.from("integer"),
      Buffer.from("float"),
    ]);
  });
});

describe("host function arguments", () => {
  let seen: Record<string, unknown>;
  before(() => {
    lua.registerFunction("probe", "all", (args: LuaArgs) => {
      seen = {
        count: args.count,
        name: args.name,
        types: Array.from({ length: args.count + 1 }, (_, i) => args.type(i + 1)),
        integer: args.integer(1),
        number: args.number(2),
        string: args.string(3),
        bytes: args.bytes(3),
        booleans: [args.boolean(4), args.boolean(5), args.boolean(6), args.boolean(99)],
        table: args.table(7),
        isNil: [args.isNil(5), args.isNil(99), args.isNil(4)],
        opt: [args.optInteger(5), args.optString(99), args.optInteger(1), args.optBytes(3)],
        value: args.value(8),
      };
    });
  });

  it("reads every type of argument", () => {
    run('probe.all(42, 2.5, "h\\0i", true, nil, false, {a = 1, b = {1, 2}}, function() end)');
    assert.equal(seen.count, 8);
    assert.equal(seen.name, "probe.all");
    assert.deepEqual(seen.types, [
      "number",
      "number",
      "string",
      "boolean",
      "nil",
      "boolean",
      "table",
      "function",
      "nil",
    ]);
    assert.equal(seen.integer, 42);
    assert.equal(seen.number, 2.5);
    assert.equal(seen.string, "h\0i");
    assert.deepEqual(seen.bytes, Buffer.from("h\0i"));
    assert.deepEqual(seen.booleans, [true, false, false, false]);
    assert.deepEqual(seen.table, { a: 1, b: [1, 2] });
    assert.deepEqual(seen.isNil, [true, true, false]);
    assert.deepEqual(seen.opt, [undefined, undefined, 42, Buffer.from("h\0i")]);
    assert.ok(isRef(seen.value as LuaValue) && (seen.value as LuaRef).type === "function");
  });

  it("converts numeric strings and numbers as Lua does", () => {
    lua.registerFunction(null, "conv", (args) =>
      luaMulti(args.integer(1), args.number(2), args.string(3)),
    );
    assert.deepEqual(run('return conv("10", "2.5", 3)'), [10, 2.5, Buffer.from("3")]);
    assert.deepEqual(run("return conv(4.0, 1, 2.5)"), [4, 1, Buffer.from("2.5")]);
  });

  it("raises Lua-style argument errors at the caller's line", () => {
    lua.registerFunction(null, "need_int", (args) => args.integer(1));
    // Called through a Lua function: called by pcall directly, the caller has no line (as in Lua).
    run("function call_need_int(...) local r = need_int(...) return r end");
    assert.deepEqual(run("return pcall(call_need_int)"), [
      false,
      Buffer.from("t.lua:1: bad argument #1 to 'need_int' (number expected, got no value)"),
    ]);
    assert.deepEqual(run("return pcall(call_need_int, 2.5)"), [
      false,
      Buffer.from("t.lua:1: bad argument #1 to 'need_int' (number has no integer representation)"),
    ]);
    assert.deepEqual(run('return pcall(call_need_int, "x")'), [
      false,
      Buffer.from("t.lua:1: bad argument #1 to 'need_int' (number expected, got string)"),
    ]);
    lua.registerFunction(null, "need_table", (args) => args.table(2));
    const [, message] = run("return pcall(need_table, 1, 2)");
    assert.deepEqual(
      message,
      Buffer.from("bad argument #2 to 'need_table' (table expected, got number)"),
    );
  });

  it("refuses LuaArgs used after the host function returned", () => {
    let kept: LuaArgs | undefined;
    lua.registerFunction(null, "keep", (args) => {
      kept = args;
    });
    run("keep(1)");
    assert.throws(() => kept?.integer(1), /after its host function returned/);
  });
});

describe("host function results", () => {
  it("returns nothing, nil, one value or several values", () => {
    lua.registerFunction(null, "none", () => undefined);
    lua.registerFunction(null, "nil_", () => null);
    lua.registerFunction(null, "many", () => luaMulti(1, "two", null, true));
    assert.deepEqual(run("return select('#', none()), select('#', nil_())"), [0, 1]);
    assert.deepEqual(run("local a, b, c, d = many() return select('#', many()), a, b, c, d"), [
      4,
      1,
      Buffer.from("two"),
      null,
      true,
    ]);
  });

  it("returns JS objects and arrays as Lua tables", () => {
    lua.registerFunction(null, "make", () => ({
      name: "x",
      list: [10, 20, { deep: true }],
      empty: [],
    }));
    assert.deepEqual(
      run(
        "local t = make() return t.name, #t.list, t.list[2], t.list[3].deep, type(t.empty), next(t.empty)",
      ),
      [Buffer.from("x"), 3, 20, true, Buffer.from("table"), null],
    );
  });

  it("returns JS functions as callable Lua functions", () => {
    lua.registerFunction(null, "adder", (args) => {
      const n = args.integer(1);
      return (inner: LuaArgs) => n + inner.integer(1);
    });
    assert.deepEqual(run("local add2 = adder(2) return add2(40), type(add2)"), [
      42,
      Buffer.from("function"),
    ]);
  });

  it("turns a thrown JS error into a catchable Lua error at the caller's line", () => {
    lua.registerFunction(null, "boom", () => {
      throw new Error("boom");
    });
    assert.deepEqual(run("local ok, e = pcall(function() boom() end) return ok, e"), [
      false,
      Buffer.from("t.lua:1: boom"),
    ]);
    assert.throws(
      () => run("\nboom()"),
      (err: unknown) =>
        err instanceof LuaError &&
        err.code === "ERR_LUA_RUNTIME" &&
        err.message === "t.lua:2: boom",
    );
  });
});

describe("tables from Lua", () => {
  it("copies sequences as arrays and other tables as objects", () => {
    assert.deepEqual(
      run("return {1, 2, 3}, {}, {x = 1, [2] = 'b', [true] = 0, [1.5] = 'f'}, {1, nil, 3}"),
      [
        [1, 2, 3],
        {},
        { x: 1, "2": Buffer.from("b"), true: 0, "1.5": Buffer.from("f") },
        { "1": 1, "3": 3 },
      ],
    );
  });

  it("keeps a __proto__ key as data", () => {
    const [t] = run('return {["__proto__"] = 1, a = 2}');
    assert.equal(Object.getPrototypeOf(t), Object.prototype);
    assert.deepEqual(Object.keys(t as object).sort(), ["__proto__", "a"]);
  });

  it("refuses cyclic tables", () => {
    assert.throws(() => run("local t = {} t.self = t return t"), /cyclic/);
    lua.registerFunction(null, "take_table", (args) => {
      args.table(1);
    });
    const [ok, message] = run("local t = {} t[1] = t return pcall(take_table, t)");
    assert.equal(ok, false);
    assert.match(String(message), /cyclic/);
  });

  it("gives functions inside tables as refs that can be called", () => {
    const [t] = run("return { handler = function(x) return x * 2 end }");
    const handler = (t as { handler: LuaValue }).handler;
    assert.ok(isRef(handler));
    assert.deepEqual(lua.call(handler, 21), [42]);
    handler.release();
  });
});

describe("refs, globals and registration", () => {
  it("sets and gets globals", () => {
    lua.setGlobal("config", { port: 8080, tags: ["a", "b"] });
    assert.deepEqual(run("return config.port, config.tags[2]"), [8080, Buffer.from("b")]);
    assert.deepEqual(lua.getGlobal("config"), {
      port: 8080,
      tags: [Buffer.from("a"), Buffer.from("b")],
    });
    assert.equal(lua.getGlobal("no_such_global"), null);
  });

  it("registers into nested tables", () => {
    lua.registerFunction("ngx.req", "get_method", () => "GET");
    assert.deepEqual(run("return ngx.req.get_method(), type(ngx)"), [
      Buffer.from("GET"),
      Buffer.from("table"),
    ]);
  });

  it("holds values through refs until released", () => {
    const table = lua.createRef({ n: 5 });
    assert.equal(table.type, "table");
    const get = lua.run("return function(t) return t.n end", "@r.lua")[0];
    assert.ok(isRef(get));
    assert.deepEqual(lua.call(get, table), [5]);
    table.release();
    assert.equal(table.released, true);
    assert.throws(
      () => lua.call(get, table),
      (err: unknown) => err instanceof LuaError && err.code === "ERR_LUA_ENGINE",
    );
    get.release();
    assert.throws(() => lua.call(get), /released/);
  });

  it("calls tables with __call", () => {
    let callable: LuaRef | undefined;
    lua.registerFunction(null, "keep_ref", (args) => {
      callable = args.ref(1);
    });
    run("keep_ref(setmetatable({}, {__call = function(self, x) return x + 1 end}))");
    assert.ok(callable !== undefined && callable.type === "table");
    assert.deepEqual(lua.call(callable, 1), [2]);
  });

  it("refuses refs from another engine", async () => {
    const other = await createLuaEngine();
    try {
      const foreign = other.createRef({});
      assert.throws(() => lua.call(foreign), TypeError);
    } finally {
      other.close();
    }
  });
});
