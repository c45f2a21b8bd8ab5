import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createLuaEngine } from "../../../../src/lua/vm/create-engine.js";
import {
  type LuaEngine,
  LuaError,
  type LuaLogLevel,
  type LuaRef,
  type LuaValue,
} from "../../../../src/lua/vm/engine.js";
import { findScriptModule, isSafeModuleName } from "../../../../src/lua/vm/sandbox-require.js";

const b = (s: string) => Buffer.from(s);

describe("sandbox", () => {
  let lua: LuaEngine;
  const logs: [LuaLogLevel, string][] = [];
  before(async () => {
    lua = await createLuaEngine({
      cpuBudgetMs: 200,
      log: (level, message) => logs.push([level, message]),
    });
  });
  after(() => lua.close());

  /** Runs `source`; returns its results as strings (nil → "nil"). */
  function run(source: string): string[] {
    return lua.run(source, "@sandbox.lua").map((v: LuaValue) => (v === null ? "nil" : String(v)));
  }

  it("removes io, dofile, loadfile, string.dump and package.loadlib", () => {
    assert.deepEqual(
      run(
        "return io, dofile, loadfile, string.dump, package.loadlib, package.searchpath, package.cpath",
      ),
      ["nil", "nil", "nil", "nil", "nil", "nil", ""],
    );
  });

  it("keeps only clock and calendar functions in os", () => {
    assert.deepEqual(
      run(
        "local k = {} for name in pairs(os) do k[#k + 1] = name end table.sort(k) return table.concat(k, ',')",
      ),
      ["clock,date,difftime,time"],
    );
    for (const name of ["execute", "exit", "remove", "rename", "tmpname", "getenv", "setlocale"]) {
      assert.deepEqual(run(`return os.${name}`), ["nil"], `os.${name}`);
    }
    assert.deepEqual(
      run("return type(os.time()), type(os.clock()), type(os.date('%Y')), os.difftime(5, 3)"),
      ["number", "number", "string", "2"],
    );
  });

  it("leaves only traceback in debug", () => {
    assert.deepEqual(
      run(
        "local k = {} for name in pairs(debug) do k[#k + 1] = name end return table.concat(k, ',')",
      ),
      ["traceback"],
    );
    const [text] = run("return debug.traceback('msg')");
    assert.match(text ?? "", /^msg\nstack traceback:\n/);
    assert.deepEqual(
      run(
        "local ok, tb = xpcall(function() error('e') end, debug.traceback) return ok, tb:match('^[^\\n]*')",
      ),
      ["false", "sandbox.lua:1: e"],
    );
  });

  it("cannot reach removed functions through _G, _ENV, rawget, package.loaded or the string metatable", () => {
    assert.deepEqual(
      run(`return _G.io, _ENV.io, rawget(_G, "io"), package.loaded.io, package.loaded.os.execute,
        package.loaded.debug.getinfo, getmetatable("").__index.dump, ("x").dump, _G.os.getenv,
        rawget(package, "loadlib"), package.loaded._G.io, rawget(debug, "sethook"), _G.debug.getregistry`),
      Array(13).fill("nil"),
    );
    assert.equal(run('return getmetatable("").__index == string')[0], "true");
  });

  it("cannot get libraries back through require", () => {
    for (const name of ["io", "os.execute", "ffi", "jit"]) {
      const [ok, message] = run(`return pcall(require, "${name}")`);
      assert.equal(ok, "false", name);
      assert.match(message ?? "", /not found/);
    }
    assert.deepEqual(
      run('return require("os").execute, require("debug").getinfo, require("string").dump'),
      ["nil", "nil", "nil"],
    );
  });

  it("offers only the preload and script-folder searchers", () => {
    assert.deepEqual(
      run("return #package.searchers, type(package.searchers[1]), type(package.searchers[2])"),
      ["2", "function", "function"],
    );
    // Whatever a script puts in package.searchers, it has no C loader to call.
    const [ok] = run('package.cpath = "/usr/lib/?.so" return pcall(require, "socket.core")');
    assert.equal(ok, "false");
  });

  it("loads text chunks only", () => {
    const binary = '"\\27Lua\\x54\\x00\\x19\\x93\\r\\n\\x1a\\n"';
    assert.deepEqual(run(`local f, e = load(${binary}) return f, e`), [
      "nil",
      "attempt to load a binary chunk (mode is 't')",
    ]);
    assert.deepEqual(run(`local f, e = load(${binary}, "x", "b") return f, e`), [
      "nil",
      "attempt to load a binary chunk (mode is 't')",
    ]);
    assert.deepEqual(
      run(
        `local parts = {${binary}} local f, e = load(function() return table.remove(parts) end) return f, e`,
      ),
      ["nil", "attempt to load a binary chunk (mode is 't')"],
    );
    assert.deepEqual(run(`local f, e = loadstring(${binary}) return f, e`), [
      "nil",
      "attempt to load a binary chunk (mode is 't')",
    ]);
    assert.deepEqual(run('return load("return 1 + 1", "=x", "b")()'), ["2"]);
    assert.deepEqual(run('return load("return x", "=x", "t", {x = 5})()'), ["5"]);
    assert.deepEqual(
      run('return load("return x", "=x", "t", nil)'),
      run('return load("return x", "=x", "t", nil)'),
    );
    assert.deepEqual(run('return pcall(load("return x", "=x", "t", nil))'), [
      "false",
      "x:1: attempt to index a nil value (upvalue '_ENV')",
    ]);
    assert.deepEqual(run('return loadstring("return ...")(7)'), ["7"]);
  });

  it("refuses binary chunks from the host", () => {
    assert.throws(
      () => lua.load(Buffer.from([0x1b, 0x4c, 0x75, 0x61, 0x54, 0x00]), "@bin.lua"),
      (err: unknown) =>
        err instanceof LuaError &&
        err.code === "ERR_LUA_SYNTAX" &&
        /binary chunk/.test(err.message),
    );
  });

  it("limits collectgarbage to harmless options", () => {
    assert.deepEqual(
      run(
        "return type(collectgarbage('count')), collectgarbage(), collectgarbage('step'), collectgarbage('isrunning')",
      ),
      ["number", "0", "true", "true"],
    );
    for (const option of [
      "stop",
      "restart",
      "incremental",
      "generational",
      "setpause",
      "setstepmul",
    ]) {
      const [ok, message] = run(`return pcall(collectgarbage, "${option}")`);
      assert.equal(ok, "false", option);
      assert.match(message ?? "", /is not allowed/);
    }
  });

  it("sends print and warn to the log", () => {
    logs.length = 0;
    run('print("a", 1, nil, true) warn("careful", "!") warn("@on")');
    assert.deepEqual(logs, [
      ["info", "a\t1\tnil\ttrue"],
      ["warn", "Lua warning: careful!"],
    ]);
  });

  it("keeps the standard libraries scripts need", () => {
    assert.deepEqual(
      run(
        "return type(string.format), type(table.concat), type(math.floor), type(utf8.char), type(coroutine.wrap), type(require), 7 // 2, 1 << 4",
      ),
      ["function", "function", "function", "function", "function", "function", "3", "16"],
    );
  });
});

describe("require", () => {
  let root: string;
  let dir: string;
  let lua: LuaEngine;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), "moonsocket-lua-"));
    dir = join(root, "app");
    mkdirSync(join(dir, "lib"), { recursive: true });
    mkdirSync(join(dir, "pkg"));
    writeFileSync(
      join(dir, "lib", "util.lua"),
      "local M = {} M.loads = (M.loads or 0) + 1 function M.twice(x) return 2 * x end function M.fail() error('util failed') end return M",
    );
    writeFileSync(join(dir, "pkg", "init.lua"), "return { name = ..., file = select(2, ...) }");
    writeFileSync(join(dir, "broken.lua"), "return {");
    writeFileSync(join(root, "outside.lua"), "return 'outside'");
    symlinkSync(join(root, "outside.lua"), join(dir, "escape.lua"));
    lua = await createLuaEngine({ cpuBudgetMs: 200, scriptDir: dir });
  });
  after(() => {
    lua.close();
    rmSync(root, { recursive: true, force: true });
  });

  function run(source: string): LuaValue[] {
    return lua.run(source, "@main.lua");
  }

  it("loads modules from the script folder, once", () => {
    assert.deepEqual(
      run('local u = require("lib.util") return u.twice(21), require("lib.util") == u'),
      [42, true],
    );
    assert.deepEqual(run('local p = require("pkg") return p.name, p.file'), [
      b("pkg"),
      b("pkg/init.lua"),
    ]);
  });

  it("names module chunks after their path in the folder", () => {
    assert.deepEqual(run('return pcall(require("lib.util").fail)'), [
      false,
      b("lib/util.lua:1: util failed"),
    ]);
  });

  it("refuses names that could leave the folder", () => {
    const outside = join(root, "outside.lua");
    for (const name of [
      "../outside",
      "..outside",
      "/etc/passwd",
      outside,
      outside.replace(/\.lua$/, ""),
      "app\\..\\outside",
      "a..b",
      ".",
      "",
    ]) {
      const [ok, message] = run(`return pcall(require, ${JSON.stringify(name)})`);
      assert.equal(ok, false, name);
      assert.match(String(message), /not found/, name);
    }
    const [, message] = run('return pcall(require, "../outside")');
    assert.match(String(message), /invalid module name/);
  });

  it("refuses a symlink that resolves outside the folder", () => {
    const [ok, message] = run('return pcall(require, "escape")');
    assert.equal(ok, false);
    assert.match(String(message), /resolves outside the script folder/);
  });

  it("reports missing modules and syntax errors like Lua", () => {
    const [, missing] = run('return pcall(require, "nope")');
    assert.match(
      String(missing),
      /^module 'nope' not found:\n\tno field package\.preload\['nope'\]\n\tno file 'nope\.lua' in the script folder\n\tno file 'nope\/init\.lua' in the script folder$/,
    );
    const [, broken] = run('return pcall(require, "broken")');
    assert.match(
      String(broken),
      /error loading module 'broken' from file 'broken\.lua':\n\tbroken\.lua:1: unexpected symbol near <eof>/,
    );
  });

  it("finds nothing on disk without a script folder", async () => {
    const bare = await createLuaEngine();
    try {
      const [ok, message] = bare.run('return pcall(require, "lib.util")', "@x.lua");
      assert.equal(ok, false);
      assert.match(String(message), /no script folder/);
    } finally {
      bare.close();
    }
  });

  it("prefers preloaded modules: source, host loader, table ref, function ref", () => {
    lua.preload("lib.util", "return { preloaded = true }");
    lua.preload(
      "mod.source",
      "local name = ... return { name = name, add = function(a, b) return a + b end }",
    );
    lua.preload("mod.host", (args) => ({ loaded_as: args.string(1), version: 3 }));
    lua.preload("mod.table", lua.createRef({ kind: "table" }));
    const [loader] = lua.run("return function(name) return 'from ' .. name end", "@loader.lua");
    lua.preload("mod.function", loader as LuaRef);
    assert.deepEqual(
      run(`return require("mod.source").name, require("mod.source").add(2, 3), require("mod.host").loaded_as,
        require("mod.host").version, require("mod.table").kind, (require("mod.function"))`),
      [b("mod.source"), 5, b("mod.host"), 3, b("table"), b("from mod.function")],
    );
  });

  it("reports preloaded source errors with the module's chunk name", () => {
    assert.throws(
      () => lua.preload("bad.mod", "return {"),
      (err: unknown) =>
        err instanceof LuaError &&
        err.code === "ERR_LUA_SYNTAX" &&
        err.message.startsWith("bad/mod.lua:1:"),
    );
    lua.preload("err.mod", "error('at load')");
    assert.deepEqual(run('return pcall(require, "err.mod")'), [false, b("err/mod.lua:1: at load")]);
  });
});

describe("module name checks", () => {
  it("accepts dotted names and refuses path-like ones", () => {
    for (const name of ["a", "a.b.c", "resty.websocket.server", "silly-net", "x_1"]) {
      assert.equal(isSafeModuleName(name), true, name);
    }
    for (const name of [
      "",
      ".",
      "..",
      "../x",
      "a..b",
      ".a",
      "a.",
      "/x",
      "a/b",
      "a\\b",
      "C:x",
      "a\0b",
    ]) {
      assert.equal(isSafeModuleName(name), false, JSON.stringify(name));
    }
  });

  it("misses without a folder or for a bad name", () => {
    assert.equal(findScriptModule(undefined, "x").found, false);
    assert.equal(findScriptModule(tmpdir(), "../x").found, false);
    assert.match(
      (findScriptModule(join(tmpdir(), "does-not-exist-moonsocket"), "x") as { message: string })
        .message,
      /not found/,
    );
  });
});
