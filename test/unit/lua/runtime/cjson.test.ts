import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { createLuaEngine } from "../../../../src/lua/vm/create-engine.js";
import { type LuaEngine, LuaError, type LuaValue } from "../../../../src/lua/vm/engine.js";

// lua-cjson (OpenResty's fork) behaviour, through the real engine. Expected strings are written
// from lua-cjson's documentation and its test suite's expectations.

const CJSON_SOURCE = readFileSync(
  new URL("../../../../../src/lua/runtime/common/cjson.lua", import.meta.url),
);

/** Preloads `cjson` and `cjson.safe` the way the host does. */
function preloadCjson(engine: LuaEngine): void {
  engine.preload("cjson", CJSON_SOURCE, "@cjson.lua");
  engine.preload("cjson.safe", "return require('cjson').safe()", "=cjson.safe");
}

let lua: LuaEngine;
before(async () => {
  lua = await createLuaEngine({ cpuBudgetMs: 20_000 });
  preloadCjson(lua);
});
after(() => lua.close());

/**
 * Runs `code` with locals `cjson`, `safe` (cjson.safe) and `json` (a fresh `cjson.new()`, so
 * configuration changes stay local). The prelude has no newline: line 1 of `code` is line 1.
 */
function run(code: string): LuaValue[] {
  return lua.run(
    `local cjson = require "cjson"; local safe = require "cjson.safe"; local json = cjson.new(); ${code}`,
    "@t.lua",
  );
}

/** Text of a Lua string result. */
function text(value: LuaValue | undefined, encoding: BufferEncoding = "utf8"): string {
  assert.ok(Buffer.isBuffer(value), `expected a Lua string, got ${String(value)}`);
  return value.toString(encoding);
}

/** `json.encode(<expression>)` as a JS string. */
function encode(expression: string, setup = ""): string {
  return text(run(`${setup}\nreturn json.encode(${expression})`)[0]);
}

/** The error message of `json.encode(<expression>)`, called through pcall (no position). */
function encodeError(expression: string, setup = ""): string {
  const [ok, message] = run(`${setup}\nreturn pcall(json.encode, ${expression})`);
  assert.equal(ok, false);
  return text(message);
}

/** The error message of `json.decode(<JSON text>)`, called through pcall (no position). */
function decodeError(json: string, setup = ""): string {
  const [ok, message] = lua.run(
    `local text = ...; local json = require("cjson").new(); ${setup}\nreturn pcall(json.decode, text)`,
    "@t.lua",
    Buffer.from(json, "latin1"),
  );
  assert.equal(ok, false);
  return text(message);
}

/** Bytes 0..255 as a Lua-bound Buffer. */
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/** lua-cjson's encoding of ALL_BYTES, written out from its escaping rules. */
function allBytesEscaped(): string {
  const short: Record<number, string> = { 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r" };
  let out = '"';
  for (let i = 0; i < 256; i++) {
    if (short[i] !== undefined) out += short[i];
    else if (i < 32 || i === 127) out += `\\u${i.toString(16).padStart(4, "0")}`;
    else if (i === 34) out += '\\"';
    else if (i === 92) out += "\\\\";
    else if (i === 47) out += "\\/";
    else out += String.fromCharCode(i);
  }
  return `${out}"`;
}

describe("cjson module", () => {
  it("has lua-cjson's name and an OpenResty 2.1.0.x version", () => {
    const [name, version, safeName] = run("return cjson._NAME, cjson._VERSION, safe._NAME");
    assert.equal(text(name), "cjson");
    assert.match(text(version), /^2\.1\.0\.\d+$/);
    assert.equal(text(safeName), "cjson");
  });

  it("exposes every lua-cjson function", () => {
    const names = [
      "encode",
      "decode",
      "new",
      "encode_empty_table_as_object",
      "decode_array_with_array_mt",
      "encode_escape_forward_slash",
      "encode_skip_unsupported_value_types",
      "encode_indent",
      "encode_sparse_array",
      "encode_max_depth",
      "decode_max_depth",
      "encode_number_precision",
      "encode_keep_buffer",
      "encode_invalid_numbers",
      "decode_invalid_numbers",
    ];
    for (const name of names) {
      const [cjsonType, safeType] = run(`return type(cjson.${name}), type(safe.${name})`);
      assert.equal(text(cjsonType), "function", name);
      assert.equal(text(safeType), "function", name);
    }
  });

  it("shares null, empty_array, array_mt and empty_array_mt across cjson, cjson.safe and new()", () => {
    const [same] = run(`
      local other = cjson.new()
      return cjson.null == safe.null and cjson.null == other.null and cjson.null == json.null
        and cjson.empty_array == safe.empty_array and cjson.empty_array == other.empty_array
        and cjson.array_mt == safe.array_mt and cjson.array_mt == other.array_mt
        and cjson.empty_array_mt == safe.empty_array_mt and cjson.empty_array_mt == other.empty_array_mt
        and cjson.null ~= cjson.empty_array and cjson.array_mt ~= cjson.empty_array_mt`);
    assert.equal(same, true);
  });

  it("keeps the same null after package.loaded.cjson is cleared and cjson required again", () => {
    const [same, encoded] = run(`
      package.loaded.cjson = nil
      local again = require "cjson"
      package.loaded.cjson = cjson
      return again ~= cjson and again.null == cjson.null, again.encode({cjson.null})`);
    assert.equal(same, true);
    assert.equal(text(encoded), "[null]");
  });

  it("prints cjson.null as OpenResty does and refuses writes into it", () => {
    const [printed, ok, message] = run(
      `return tostring(cjson.null), pcall(function() cjson.null.x = 1 end)`,
    );
    assert.equal(text(printed), "userdata: NULL");
    assert.equal(ok, false);
    assert.match(text(message), /attempt to index a userdata value/);
  });

  it("also serves cjson.safe when the same source is preloaded under that name", async () => {
    const engine = await createLuaEngine();
    try {
      engine.preload("cjson", CJSON_SOURCE, "@cjson.lua");
      engine.preload("cjson.safe", CJSON_SOURCE, "@cjson.lua");
      const [value, message, same] = engine.run(
        `local safe = require "cjson.safe"
         local v, err = safe.decode("oops")
         return v, err, safe.null == require("cjson").null`,
        "@t.lua",
      );
      assert.equal(value, null);
      assert.equal(text(message), "Expected value but found invalid token at character 1");
      assert.equal(same, true);
    } finally {
      engine.close();
    }
  });

  it("gives independent configurations to new() instances", () => {
    const [a, b, c] = run(`
      local other = cjson.new()
      other.encode_empty_table_as_object(false)
      return other.encode({}), json.encode({}), cjson.encode({})`);
    assert.equal(text(a), "[]");
    assert.equal(text(b), "{}");
    assert.equal(text(c), "{}");
  });
});

describe("cjson.encode: values", () => {
  it("encodes a chat message", () => {
    const out = encode('{type = "msg", from = "ann", text = "hello"}');
    assert.deepEqual(JSON.parse(out), { type: "msg", from: "ann", text: "hello" });
    assert.ok(!out.includes(" "), "compact output");
  });

  it("encodes booleans, nil and cjson.null", () => {
    assert.equal(encode("true"), "true");
    assert.equal(encode("false"), "false");
    assert.equal(encode("nil"), "null");
    assert.equal(encode("cjson.null"), "null");
  });

  it("encodes integers without a decimal point, full 64-bit range", () => {
    assert.equal(encode("3"), "3");
    assert.equal(encode("-42"), "-42");
    assert.equal(encode("math.maxinteger"), "9223372036854775807");
    assert.equal(encode("math.mininteger"), "-9223372036854775808");
    assert.equal(encode("{1, 2, 3}"), "[1,2,3]");
  });

  it("encodes floats with %.14g, integral ones without a decimal point", () => {
    assert.equal(encode("3.0"), "3");
    assert.equal(encode("1.5"), "1.5");
    assert.equal(encode("0.1"), "0.1");
    assert.equal(encode("1/3"), "0.33333333333333");
    assert.equal(encode("-0.0"), "-0");
    assert.equal(encode("1e100"), "1e+100");
    assert.equal(encode("1e-7"), "1e-07");
    assert.equal(encode("2^53"), "9.007199254741e+15");
  });

  it("encode_number_precision changes the float format (1 to 16)", () => {
    const [p16, big, p3, third] = run(`
      local p16 = json.encode_number_precision(16)
      local big = json.encode(2^53)
      local p3 = json.encode_number_precision(3)
      return p16, big, p3, json.encode(1/3)`);
    assert.equal(p16, 16);
    assert.equal(text(big), "9007199254740992");
    assert.equal(p3, 3);
    assert.equal(text(third), "0.333");
    assert.equal(encode("7"), "7", "integers are not affected");
  });

  it("refuses NaN and infinity by default", () => {
    for (const value of ["0/0", "math.huge", "-math.huge"]) {
      assert.equal(encodeError(value), "Cannot serialise number: must not be NaN or Infinity");
    }
    assert.equal(encodeError("{x = 0/0}"), "Cannot serialise number: must not be NaN or Infinity");
  });

  it("encode_invalid_numbers(true) writes NaN and Infinity, 'null' writes null", () => {
    const [on, withOn, asNull, withNull, off] = run(`
      local on = json.encode_invalid_numbers(true)
      local a = json.encode({0/0, math.huge, -math.huge})
      local n = json.encode_invalid_numbers("null")
      local b = json.encode({0/0, math.huge})
      return on, a, n, b, json.encode_invalid_numbers("off")`);
    assert.equal(on, true);
    assert.equal(text(withOn), "[NaN,Infinity,-Infinity]");
    assert.equal(text(asNull), "null");
    assert.equal(text(withNull), "[null,null]");
    assert.equal(off, false);
  });
});

describe("cjson.encode: strings", () => {
  it("escapes quote, backslash, slash and the short control escapes", () => {
    assert.equal(encode(String.raw`"q\"b\\s/\b\f\n\r\t"`), String.raw`"q\"b\\s\/\b\f\n\r\t"`);
  });

  it("escapes other control characters and DEL as lower-case \\u00XX", () => {
    assert.equal(encode(String.raw`"\0\1\31\127"`), String.raw`"\u0000\u0001\u001f\u007f"`);
  });

  it("passes bytes >= 0x80 through unchanged (UTF-8 or not)", () => {
    const [out] = run(String.raw`return json.encode("h\195\169 \255\128")`);
    assert.deepEqual(out, Buffer.from([0x22, 0x68, 0xc3, 0xa9, 0x20, 0xff, 0x80, 0x22]));
  });

  it("encodes all 256 byte values as lua-cjson does", () => {
    const [out] = lua.run('return require("cjson").new().encode(...)', "@t.lua", ALL_BYTES);
    assert.equal(text(out, "latin1"), allBytesEscaped());
  });

  it("encode_escape_forward_slash(false) leaves '/' alone, for that instance only", () => {
    const [off, plain, other, on, back] = run(`
      local off = json.encode_escape_forward_slash(false)
      local plain = json.encode({"a/b"})
      local other = cjson.encode("a/b")
      return off, plain, other, json.encode_escape_forward_slash(true), json.encode("a/b")`);
    assert.equal(off, false);
    assert.equal(text(plain), '["a/b"]');
    assert.equal(text(other), '"a\\/b"');
    assert.equal(on, true);
    assert.equal(text(back), '"a\\/b"');
  });

  it("escapes object keys like strings", () => {
    assert.equal(encode('{["a\\"/\\n"] = 1}'), '{"a\\"\\/\\n":1}');
  });
});

describe("cjson.encode: tables", () => {
  it("encodes a table with keys exactly 1..n as an array", () => {
    assert.equal(encode('{"a", {1, {true}}, false}'), '["a",[1,[true]],false]');
  });

  it("encodes holes as null when the array is not too sparse", () => {
    assert.equal(encode("{1, nil, 3}"), "[1,null,3]");
    assert.equal(encode('{[3] = "sparse test"}'), '[null,null,"sparse test"]');
  });

  it("encodes tables with other keys as objects, number keys as strings", () => {
    assert.deepEqual(JSON.parse(encode('{1, 2, a = "b"}')), { "1": 1, "2": 2, a: "b" });
    assert.equal(encode('{[0] = "z"}'), '{"0":"z"}');
    assert.equal(encode('{[-1] = "m"}'), '{"-1":"m"}');
    assert.equal(encode('{[1.5] = "f"}'), '{"1.5":"f"}');
    assert.equal(encode('{["2"] = "numeric string key test"}'), '{"2":"numeric string key test"}');
  });

  it("encodes an empty table as {} by default, [] with encode_empty_table_as_object(false)", () => {
    assert.equal(encode("{}"), "{}");
    assert.equal(encode("{dogs = {}}"), '{"dogs":{}}');
    const [setting, top, nested] = run(`
      local setting = json.encode_empty_table_as_object(false)
      return setting, json.encode({}), json.encode({dogs = {}})`);
    assert.equal(setting, false);
    assert.equal(text(top), "[]");
    assert.equal(text(nested), '{"dogs":[]}');
    assert.equal(encode("{}", 'json.encode_empty_table_as_object("on")'), "{}");
  });

  it("encodes cjson.empty_array as []", () => {
    assert.equal(encode("{arr = cjson.empty_array}"), '{"arr":[]}');
    assert.equal(encode("cjson.empty_array"), "[]");
  });

  it("encodes an empty table with empty_array_mt as [], a non-empty one by its keys", () => {
    assert.equal(encode("{arr = setmetatable({}, cjson.empty_array_mt)}"), '{"arr":[]}');
    assert.equal(
      encode('setmetatable({"hello", "world"}, cjson.empty_array_mt)'),
      '["hello","world"]',
    );
    assert.equal(encode("setmetatable({a = 1}, cjson.empty_array_mt)"), '{"a":1}');
  });

  it("encodes a table with array_mt as an array of its # length, ignoring other keys", () => {
    assert.equal(encode("setmetatable({}, cjson.array_mt)"), "[]");
    assert.equal(encode('setmetatable({"foo", "bar"}, cjson.array_mt)'), '["foo","bar"]');
    assert.equal(
      encode('setmetatable({"a", "b", nil, "d", foo = "bar"}, cjson.array_mt)'),
      '["a","b",null,"d"]',
    );
  });

  it("reads arrays raw, ignoring __index", () => {
    assert.equal(
      encode('setmetatable({1, nil, 3}, {__index = function() return "x" end})'),
      "[1,null,3]",
    );
  });

  it("refuses excessively sparse arrays", () => {
    assert.equal(
      encodeError('{[1] = "one", [20] = "twenty"}'),
      "Cannot serialise table: excessively sparse array",
    );
    assert.equal(encodeError("{[1000] = 1}"), "Cannot serialise table: excessively sparse array");
  });

  it("encode_sparse_array(convert, ratio, safe) configures sparse handling", () => {
    const [convert, ratio, safeLen, a, b, c] = run(`
      local convert, ratio, safe_len = json.encode_sparse_array(true, 2, 3)
      return convert, ratio, safe_len, json.encode({[3] = "sparse test"}),
        json.encode({[1] = "one", [4] = "sparse test"}), json.encode({[1] = "one", [5] = "sparse test"})`);
    assert.deepEqual([convert, ratio, safeLen], [true, 2, 3]);
    assert.equal(text(a), '[null,null,"sparse test"]');
    assert.equal(text(b), '["one",null,null,"sparse test"]');
    assert.deepEqual(JSON.parse(text(c)), { "1": "one", "5": "sparse test" });
    const [defaults] = run("return {cjson.new().encode_sparse_array()}");
    assert.deepEqual(defaults, [false, 2, 10]);
    assert.equal(
      encode("{[100] = 1}", "json.encode_sparse_array(false, 0)"),
      `[${"null,".repeat(99)}1]`,
    );
  });

  it("refuses keys that are neither numbers nor strings", () => {
    assert.equal(
      encodeError('{[false] = "wrong"}'),
      "Cannot serialise boolean: table key must be a number or string",
    );
    assert.equal(
      encodeError("{[{}] = 1}"),
      "Cannot serialise table: table key must be a number or string",
    );
  });

  it("refuses functions, coroutines and userdata-like values", () => {
    assert.equal(encodeError("function() end"), "Cannot serialise function: type not supported");
    assert.equal(encodeError("{f = print}"), "Cannot serialise function: type not supported");
    assert.equal(
      encodeError("coroutine.create(print)"),
      "Cannot serialise thread: type not supported",
    );
  });

  it("refuses nesting deeper than 1000, including cycles", () => {
    const setup = `local function nest(n) local t = {} for _ = 1, n do t = {t} end return t end`;
    assert.equal(encode("#json.encode(nest(999))", setup), "2000");
    assert.equal(encodeError("nest(1000)", setup), "Cannot serialise, excessive nesting (1001)");
    assert.equal(
      encodeError("t", "local t = {} t[1] = t"),
      "Cannot serialise, excessive nesting (1001)",
    );
    assert.equal(
      encodeError("t", "local t = {} t.self = t"),
      "Cannot serialise, excessive nesting (1001)",
    );
  });

  it("encode_max_depth sets the nesting limit", () => {
    assert.equal(encode('{{{{{"nested"}}}}}', "json.encode_max_depth(5)"), '[[[[["nested"]]]]]');
    assert.equal(
      encodeError('{{{{{{"nested"}}}}}}', "json.encode_max_depth(5)"),
      "Cannot serialise, excessive nesting (6)",
    );
    assert.equal(
      encodeError('{a={b={c={d={e={f="nested"}}}}}}', "json.encode_max_depth(5)"),
      "Cannot serialise, excessive nesting (6)",
    );
  });

  it("encode_skip_unsupported_value_types(true) drops unsupported values", () => {
    const [setting, out] = run(`
      local setting = json.encode_skip_unsupported_value_types(true)
      return setting, json.encode({ok = "yes", f = print, seq = {"a", coroutine.create(print), "b"}})`);
    assert.equal(setting, true);
    assert.deepEqual(JSON.parse(text(out)), { ok: "yes", seq: ["a", "b"] });
  });

  it("encode_indent pretty-prints with the given indent", () => {
    const setup = 'json.encode_indent("  ")';
    assert.equal(encode("{a = {b = 1}}", setup), '{\n  "a": {\n    "b": 1\n  }\n}');
    assert.equal(encode("{1, 2, 3}", setup), "[\n  1,\n  2,\n  3\n]");
    assert.equal(
      encode("{{1, 2}, {3, 4}}", setup),
      "[\n  [\n    1,\n    2\n  ],\n  [\n    3,\n    4\n  ]\n]",
    );
    assert.equal(
      encode('{{a = "a"}, {b = "b"}}', setup),
      '[\n  {\n    "a": "a"\n  },\n  {\n    "b": "b"\n  }\n]',
    );
    assert.equal(encode("{}", setup), "{}");
    assert.equal(encode("cjson.empty_array", setup), "[]");
    assert.equal(
      encode("{a = {b = 1}}", 'json.encode_indent("abc")'),
      '{\nabc"a": {\nabcabc"b": 1\nabc}\n}',
    );
    assert.equal(
      encode('{{a = "a"}}', 'json.encode_indent("  ") json.encode_indent("")'),
      '[{"a":"a"}]',
    );
  });

  it("raises errors at the caller's line, like a C function", () => {
    assert.throws(
      () => run("\nlocal s = json.encode(print)\nreturn s"),
      (error: unknown) =>
        error instanceof LuaError &&
        error.message === "t.lua:2: Cannot serialise function: type not supported",
    );
  });

  it("requires exactly one argument", () => {
    const [ok, message] = run("return pcall(json.encode)");
    assert.equal(ok, false);
    assert.equal(text(message), "bad argument #1 to 'encode' (expected 1 argument)");
    const [ok2, message2] = run("return pcall(json.encode, 1, nil)");
    assert.equal(ok2, false);
    assert.equal(text(message2), "bad argument #1 to 'encode' (expected 1 argument)");
  });
});

describe("cjson.decode: values", () => {
  it("decodes a chat message", () => {
    const [type, from, body] = run(`
      local m = json.decode('{"type":"msg","from":"ann","text":"hello"}')
      return m.type, m.from, m.text`);
    assert.equal(text(type), "msg");
    assert.equal(text(from), "ann");
    assert.equal(text(body), "hello");
  });

  it("decodes scalars, with whitespace around them", () => {
    const [t, f, n, s] = run(
      `return json.decode(" true "), json.decode("\\tfalse\\n"), json.decode("null") == cjson.null, json.decode('"test string"')`,
    );
    assert.equal(t, true);
    assert.equal(f, false);
    assert.equal(n, true);
    assert.equal(text(s), "test string");
  });

  it("decodes integral numbers as Lua integers, others as floats", () => {
    const [types] = run(`
      local out = {}
      for _, s in ipairs{"1", "-5", "0", "-0", "1.5", "1e2", "1.0", "-5e3", "0.3e-3", "123456789012345678901"} do
        local v = json.decode(s)
        out[#out + 1] = s .. "=" .. math.type(v) .. ":" .. tostring(v)
      end
      return table.concat(out, " ")`);
    assert.equal(
      text(types),
      "1=integer:1 -5=integer:-5 0=integer:0 -0=integer:0 1.5=float:1.5 1e2=float:100.0 1.0=float:1.0 " +
        "-5e3=float:-5000.0 0.3e-3=float:0.0003 123456789012345678901=float:1.2345678901235e+20",
    );
    const [max, min] = run(
      'return json.decode("9223372036854775807"), math.type(json.decode("-9223372036854775808"))',
    );
    assert.equal(max, 9223372036854775807n);
    assert.equal(text(min), "integer");
  });

  it("decodes arrays and objects, null as cjson.null", () => {
    const [ok] = run(`
      local v = json.decode('[ "one", null, "three", {"a": [], "b": {}} ]')
      return #v == 4 and v[1] == "one" and v[2] == cjson.null and v[3] == "three"
        and next(v[4].a) == nil and next(v[4].b) == nil and getmetatable(v) == nil`);
    assert.equal(ok, true);
  });

  it("keeps the last of duplicate keys", () => {
    const [v] = run(`return json.decode('{"a":1,"a":2}').a`);
    assert.equal(v, 2);
  });

  it("decode_array_with_array_mt(true) sets array_mt on decoded arrays", () => {
    const [setting, hasMt, encoded, plain] = run(`
      local setting = json.decode_array_with_array_mt(true)
      local t = json.decode('{"my_array":["hello","world"],"empty":[]}')
      t.my_array.hash_value = "adding a hash value"
      t.my_array[1] = nil
      t.my_array[2] = nil
      return setting, getmetatable(t.my_array) == cjson.array_mt,
        json.encode({t.my_array, t.empty}), cjson.encode(cjson.decode('{"my_array":[]}'))`);
    assert.equal(setting, true);
    assert.equal(hasMt, true);
    assert.equal(text(encoded), "[[],[]]");
    assert.equal(text(plain), '{"my_array":{}}');
  });

  it("accepts numbers as input, as luaL_checklstring does", () => {
    const [v] = run("return json.decode(123)");
    assert.equal(v, 123);
  });

  it("accepts hexadecimal, leading zeros, Inf and NaN by default, as lua-cjson does", () => {
    const [hex, leading, inf, nan] = run(`
      local hex = json.decode("0x6.ffp1")
      local l = json.decode("[ 0123, 00.33 ]")
      local i = json.decode("[ +Inf, Inf, -Inf, +Infinity, -infinity ]")
      local n = json.decode("[ +NaN, NaN, -NaN, nan ]")
      return hex, l[1] == 123 and l[2] == 0.33,
        i[1] == math.huge and i[2] == math.huge and i[3] == -math.huge and i[4] == math.huge and i[5] == -math.huge,
        n[1] ~= n[1] and n[2] ~= n[2] and n[3] ~= n[3] and n[4] ~= n[4]`);
    assert.equal(hex, 13.9921875);
    assert.equal(leading, true);
    assert.equal(inf, true);
    assert.equal(nan, true);
  });

  it("decode_invalid_numbers(false) refuses them", () => {
    const setup = "json.decode_invalid_numbers(false)";
    assert.equal(
      decodeError("0x6", setup),
      "Expected value but found invalid number at character 1",
    );
    assert.equal(
      decodeError("[ 0123, 00.33 ]", setup),
      "Expected value but found invalid number at character 3",
    );
    assert.equal(
      decodeError("[ +Inf, Inf, -Inf ]", setup),
      "Expected value but found invalid token at character 3",
    );
    assert.equal(
      decodeError("[ NaN ]", setup),
      "Expected value but found invalid token at character 3",
    );
    assert.equal(
      decodeError("[ -Infinity ]", setup),
      "Expected value but found invalid number at character 3",
    );
    const [v] = run(`json.decode_invalid_numbers(false) return json.decode("[0, -1, 2.5e3]")[3]`);
    assert.equal(v, 2500);
  });
});

describe("cjson.decode: strings", () => {
  it("decodes the short escapes", () => {
    const [s] = run(String.raw`return json.decode([["\"\\\/\b\f\n\r\t"]])`);
    assert.equal(text(s), '"\\/\b\f\n\r\t');
  });

  it("decodes \\uXXXX escapes to UTF-8, surrogate pairs included", () => {
    const [s] = run(String.raw`return json.decode([["\u0041\u00e9\u20AC\uF800\ud83d\ude00"]])`);
    assert.deepEqual(s, Buffer.from("A\u00e9\u20ac\uf800\u{1f600}", "utf8"));
  });

  it("decodes \\u0000 to a NUL byte", () => {
    const [s] = run(String.raw`return json.decode([["a\u0000b"]])`);
    assert.deepEqual(s, Buffer.from("a\0b", "latin1"));
  });

  it("passes raw bytes through, control characters and invalid UTF-8 included", () => {
    const raw = Buffer.from([0x22, 0x01, 0x09, 0xff, 0xc3, 0xa9, 0x7f, 0x22]);
    const [s] = lua.run('return require("cjson").decode(...)', "@t.lua", raw);
    assert.deepEqual(s, raw.subarray(1, -1));
  });

  it("round-trips all 256 byte values", () => {
    const [s, escaped] = lua.run(
      'local json = require("cjson").new() local e = json.encode(...) return json.decode(e), e',
      "@t.lua",
      ALL_BYTES,
    );
    assert.deepEqual(s, ALL_BYTES);
    const [back] = lua.run('return require("cjson").decode(...)', "@t.lua", escaped as Buffer);
    assert.deepEqual(back, ALL_BYTES);
  });

  it("decodes every byte written as \\u00XX", () => {
    const json = `"${Array.from({ length: 128 }, (_, i) => `\\u${i.toString(16).padStart(4, "0")}`).join("")}"`;
    const [s] = lua.run('return require("cjson").decode(...)', "@t.lua", json);
    assert.deepEqual(s, ALL_BYTES.subarray(0, 128));
  });
});

describe("cjson.decode: errors (lua-cjson's messages)", () => {
  const cases: [string, string, string][] = [
    ["empty text", "", "Expected value but found T_END at character 1"],
    ["partial JSON", '{ "unexpected eof": ', "Expected value but found T_END at character 21"],
    [
      "extra data",
      '{ "extra data": true }, false',
      "Expected the end but found T_COMMA at character 23",
    ],
    [
      "invalid escape",
      ' { "bad escape \\q code" } ',
      "Expected object key string but found invalid escape code at character 16",
    ],
    [
      "invalid unicode escape",
      ' { "bad unicode \\u0f6 escape" } ',
      "Expected object key string but found invalid unicode escape code at character 17",
    ],
    [
      "bare word",
      ' [ "bad barewood", test ] ',
      "Expected value but found invalid token at character 20",
    ],
    ["invalid number -+", "[ -+12 ]", "Expected value but found invalid number at character 3"],
    ["invalid number -v", "-v", "Expected value but found invalid number at character 1"],
    [
      "bad exponent",
      "[ 0.4eg10 ]",
      "Expected comma or array end but found invalid token at character 6",
    ],
    ["Infrared", "Infrared", "Expected the end but found invalid token at character 4"],
    ["Noodle", "Noodle", "Expected value but found invalid token at character 1"],
    ["unterminated array", "[1,2", "Expected comma or array end but found T_END at character 5"],
    [
      "missing comma in array",
      "[1 2]",
      "Expected comma or array end but found T_NUMBER at character 4",
    ],
    ["trailing comma in array", "[1,]", "Expected value but found T_ARR_END at character 4"],
    [
      "trailing comma in object",
      '{"a":1,}',
      "Expected object key string but found T_OBJ_END at character 8",
    ],
    ["number key", "{1:2}", "Expected object key string but found T_NUMBER at character 2"],
    ["missing colon", '{"a" 1}', "Expected colon but found T_NUMBER at character 6"],
    ["colon then end", '{"a":', "Expected value but found T_END at character 6"],
    [
      "missing comma in object",
      '{"a":1 "b":2}',
      "Expected comma or object end but found T_STRING at character 8",
    ],
    [
      "unterminated object",
      '{"a":1',
      "Expected comma or object end but found T_END at character 7",
    ],
    [
      "unterminated string",
      '"abc',
      "Expected value but found unexpected end of string at character 5",
    ],
    ["escape at end", '"abc\\', "Expected value but found invalid escape code at character 5"],
    ["stray close", "]", "Expected value but found T_ARR_END at character 1"],
    ["single quotes", "['a']", "Expected value but found invalid token at character 2"],
    ["truex", "[truex]", "Expected comma or array end but found invalid token at character 6"],
    ["leading dot", ".5", "Expected value but found invalid token at character 1"],
    [
      "swapped surrogates",
      '"\\uDC00\\uD800"',
      "Expected value but found invalid unicode escape code at character 2",
    ],
    [
      "duplicate high surrogate",
      '"\\uDB00\\uDB00"',
      "Expected value but found invalid unicode escape code at character 2",
    ],
    [
      "missing low surrogate",
      '"\\uDB00"',
      "Expected value but found invalid unicode escape code at character 2",
    ],
    [
      "short low surrogate",
      '"\\uDB00\\uD"',
      "Expected value but found invalid unicode escape code at character 2",
    ],
    ["UTF-16BE", '\0"\0"', "JSON parser does not support UTF-16 or UTF-32"],
    ["UTF-16LE", '"\0"\0', "JSON parser does not support UTF-16 or UTF-32"],
    ["UTF-32BE", '\0\0\0"', "JSON parser does not support UTF-16 or UTF-32"],
    [
      "NUL inside a string (text ends there)",
      '["a\0b"]',
      "Expected value but found unexpected end of string at character 4",
    ],
  ];
  for (const [name, json, message] of cases) {
    it(`${name}: ${JSON.stringify(message)}`, () => {
      assert.equal(decodeError(json), message);
    });
  }

  it("ignores what follows a NUL byte, as lua-cjson reads a C string", () => {
    const [v] = lua.run(
      'return require("cjson").decode(...)[1]',
      "@t.lua",
      Buffer.from("[7]\0garbage", "latin1"),
    );
    assert.equal(v, 7);
  });

  it("refuses nesting deeper than decode_max_depth (1000)", () => {
    assert.equal(
      decodeError(`${"[".repeat(1100)}1100${"]".repeat(1100)}`),
      "Found too many nested data structures (1001) at character 1001",
    );
    const [ok] = lua.run(
      'local v = require("cjson").decode(...) for _ = 1, 999 do v = v[1] end return v[1] == 1',
      "@t.lua",
      `${"[".repeat(1000)}1${"]".repeat(1000)}`,
    );
    assert.equal(ok, true);
  });

  it("decode_max_depth sets the nesting limit", () => {
    assert.equal(
      decodeError('[[[[[[ "nested" ]]]]]]', "json.decode_max_depth(5)"),
      "Found too many nested data structures (6) at character 6",
    );
    assert.equal(
      decodeError('{"a":{"b":{"c":{"d":{"e":{"f":"nested"}}}}}}', "json.decode_max_depth(5)"),
      "Found too many nested data structures (6) at character 26",
    );
    const [v] = run(
      `json.decode_max_depth(5) return json.decode('[[[[[ "nested" ]]]]]')[1][1][1][1][1]`,
    );
    assert.equal(text(v), "nested");
  });

  it("raises errors at the caller's line, like a C function", () => {
    assert.throws(
      () => run("\n\nlocal v = json.decode('[1,')\nreturn v"),
      (error: unknown) =>
        error instanceof LuaError &&
        error.message === "t.lua:3: Expected value but found T_END at character 4",
    );
  });

  it("checks its argument like lua-cjson", () => {
    const [ok, message] = run("return pcall(json.decode, {})");
    assert.equal(ok, false);
    assert.equal(text(message), "bad argument #1 to 'decode' (string expected, got table)");
    const [ok2, message2] = run("return pcall(json.decode, 'true', 1)");
    assert.equal(ok2, false);
    assert.equal(text(message2), "bad argument #1 to 'decode' (expected 1 argument)");
  });
});

describe("cjson.safe", () => {
  it("returns nil and the message when decoding fails", () => {
    const [value, message] = run('return safe.decode("Oops")');
    assert.equal(value, null);
    assert.equal(text(message), "Expected value but found invalid token at character 1");
  });

  it("returns nil and the message when encoding fails", () => {
    const [value, message] = run("return safe.encode({f = print})");
    assert.equal(value, null);
    assert.equal(text(message), "Cannot serialise function: type not supported");
  });

  it("returns the value when all is well", () => {
    const [encoded, decoded] = run('return safe.encode(true), safe.decode("[5]")[1]');
    assert.equal(text(encoded), "true");
    assert.equal(decoded, 5);
  });

  it("returns a non-string argument error as lua-cjson's inner call reports it", () => {
    const [value, message] = run("return safe.decode({})");
    assert.equal(value, null);
    assert.equal(text(message), "bad argument #1 to '?' (string expected, got table)");
  });

  it("still raises for a wrong argument count", () => {
    const [ok, message] = run('return pcall(safe.encode, "arg1", "arg2")');
    assert.equal(ok, false);
    assert.equal(text(message), "bad argument #1 to 'encode' (expected 1 argument)");
  });

  it("new() makes another safe instance", () => {
    const [value, message, depth] = run(`
      local other = safe.new()
      other.decode_max_depth(2)
      local v, err = other.decode("[[[1]]]")
      return v, err, safe.decode_max_depth()`);
    assert.equal(value, null);
    assert.equal(text(message), "Found too many nested data structures (3) at character 3");
    assert.equal(depth, 1000);
  });
});

describe("configuration functions", () => {
  it("return the current setting when called without argument", () => {
    const values = run(`
      local j = cjson.new()
      return j.encode_max_depth(), j.decode_max_depth(), j.encode_number_precision(), j.encode_keep_buffer(),
        j.encode_invalid_numbers(), j.decode_invalid_numbers(), j.encode_empty_table_as_object(),
        j.decode_array_with_array_mt(), j.encode_escape_forward_slash(), j.encode_skip_unsupported_value_types(),
        j.encode_indent()`);
    assert.deepEqual(values.slice(0, 10), [
      1000,
      1000,
      14,
      true,
      false,
      true,
      true,
      false,
      true,
      false,
    ]);
    assert.equal(text(values[10]), "");
  });

  it("accept 'on' and 'off' as well as booleans", () => {
    const [a, b] = run('return json.encode_keep_buffer("off"), json.encode_keep_buffer("on")');
    assert.equal(a, false);
    assert.equal(b, true);
  });

  const errors: [string, string][] = [
    [
      "json.encode_number_precision(0)",
      "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 16)",
    ],
    [
      "json.encode_number_precision(17)",
      "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 16)",
    ],
    [
      'json.encode_number_precision("five")',
      "bad argument #1 to 'encode_number_precision' (number expected, got string)",
    ],
    [
      "json.encode_number_precision(2.5)",
      "bad argument #1 to 'encode_number_precision' (number has no integer representation)",
    ],
    [
      "json.encode_keep_buffer(nil, true)",
      "bad argument #2 to 'encode_keep_buffer' (found too many arguments)",
    ],
    [
      'json.encode_max_depth("wrong")',
      "bad argument #1 to 'encode_max_depth' (number expected, got string)",
    ],
    [
      'json.decode_max_depth("0")',
      "bad argument #1 to 'decode_max_depth' (expected integer between 1 and 2147483647)",
    ],
    [
      "json.encode_invalid_numbers(-2)",
      "bad argument #1 to 'encode_invalid_numbers' (invalid option '-2')",
    ],
    [
      "json.decode_invalid_numbers(true, false)",
      "bad argument #2 to 'decode_invalid_numbers' (found too many arguments)",
    ],
    [
      'json.encode_sparse_array("not quite on")',
      "bad argument #1 to 'encode_sparse_array' (invalid option 'not quite on')",
    ],
    [
      "json.encode_sparse_array(true, -1)",
      "bad argument #1 to 'encode_sparse_array' (expected integer between 0 and 2147483647)",
    ],
    [
      "json.encode_empty_table_as_object({})",
      "bad argument #1 to 'encode_empty_table_as_object' (string expected, got table)",
    ],
  ];
  for (const [call, message] of errors) {
    it(`${call} raises ${JSON.stringify(message)}`, () => {
      const [ok, err] = run(`return pcall(function() local r = ${call} return r end)`);
      assert.equal(ok, false);
      assert.equal(text(err), `t.lua:1: ${message}`);
    });
  }
});

describe("round trips", () => {
  it("decode(encode(v)) equals v for random nested data", () => {
    const [failures, count] = run(`
      local random = math.random
      math.randomseed(20261122)
      local function rstring()
        local n = random(0, 12)
        local b = {}
        for i = 1, n do b[i] = string.char(random(0, 255)) end
        return table.concat(b)
      end
      local gen
      gen = function(depth)
        local r = random(1, depth < 6 and 10 or 6)
        if r == 1 then return rstring()
        elseif r == 2 then return random(-2^40, 2^40)
        elseif r == 3 then return random(-1000000, 1000000) / 64
        elseif r == 4 then return random(0, 1) == 1
        elseif r == 5 then return cjson.null
        elseif r == 6 then return random(math.mininteger, math.maxinteger)
        elseif r <= 8 then
          local t = {}
          for i = 1, random(1, 5) do t[i] = gen(depth + 1) end
          return t
        else
          local t = {}
          for _ = 1, random(0, 5) do t["k" .. rstring()] = gen(depth + 1) end
          return t
        end
      end
      local function same(a, b)
        if type(a) ~= type(b) then return false end
        if type(a) ~= "table" or a == cjson.null then
          -- An integral float comes back as an integer (it is written without a point).
          return a == b and (math.type(a) ~= "integer" or math.type(b) == "integer")
        end
        for k, v in pairs(a) do if not same(v, b[k]) then return false end end
        for k in pairs(b) do if a[k] == nil then return false end end
        return true
      end
      local failures, n = {}, 0
      for i = 1, 300 do
        local v = gen(0)
        local text = json.encode(v)
        local back = json.decode(text)
        n = n + 1
        if not same(v, back) then
          failures[#failures + 1] = text
        end
      end
      return table.concat(failures, "\\n"), n`);
    assert.equal(text(failures), "");
    assert.equal(count, 300);
  });

  it("produces JSON that JSON.parse reads back to the same data", () => {
    const [out] = run(`
      return json.encode({
        text = "caf\\195\\169 \\226\\130\\172 \\240\\159\\152\\128 / \\"q\\" \\\\ \\n\\t\\1",
        list = {1, -2, 3.25, 1e300, true, false, cjson.null, {}, cjson.empty_array},
        nested = {a = {b = {c = "d"}}},
      })`);
    assert.deepEqual(JSON.parse(text(out)), {
      text: 'caf\u00e9 \u20ac \u{1f600} / "q" \\ \n\t\u0001',
      list: [1, -2, 3.25, 1e300, true, false, null, {}, []],
      nested: { a: { b: { c: "d" } } },
    });
  });

  it("decodes what JSON.stringify writes", () => {
    const value = {
      s: "h\u00e9llo \u{1f600}\n",
      n: [0, -1, 1.5, 1e-7, 12345678901234],
      b: [true, false, null],
      o: { "": {} },
    };
    const [same] = lua.run(
      `local json = require("cjson")
       local v = json.decode(...)
       return v.s == "h\\195\\169llo \\240\\159\\152\\128\\n" and v.n[1] == 0 and v.n[2] == -1 and v.n[3] == 1.5
         and v.n[4] == 1e-7 and v.n[5] == 12345678901234 and math.type(v.n[5]) == "integer"
         and v.b[1] == true and v.b[2] == false and v.b[3] == json.null and next(v.o[""]) == nil`,
      "@t.lua",
      JSON.stringify(value),
    );
    assert.equal(same, true);
  });
});
