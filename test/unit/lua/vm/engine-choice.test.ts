import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { createLuaEngine, defaultLuaEngineChoice } from "../../../../src/lua/vm/create-engine.js";
import { type LuaEngine, LuaError, type LuaValue } from "../../../../src/lua/vm/engine.js";
import { nativeEngineStatus } from "../../../../src/lua/vm/native/native-engine.js";

const native = nativeEngineStatus();
const savedEnv = process.env.MOONSOCKET_LUA_ENGINE;

function restoreEnv(): void {
  if (savedEnv === undefined) delete process.env.MOONSOCKET_LUA_ENGINE;
  else process.env.MOONSOCKET_LUA_ENGINE = savedEnv;
}

describe("choosing the Lua engine", () => {
  afterEach(restoreEnv);

  it("runs the engine the test pass asked for (MOONSOCKET_LUA_ENGINE), wasm by default", async () => {
    const lua = await createLuaEngine();
    try {
      assert.equal(lua.kind, savedEnv === "native" ? "native" : "wasm");
    } finally {
      lua.close();
    }
  });

  it("reads the default from MOONSOCKET_LUA_ENGINE and refuses other values", () => {
    delete process.env.MOONSOCKET_LUA_ENGINE;
    assert.equal(defaultLuaEngineChoice(), "wasm");
    for (const value of ["wasm", "native", "auto"] as const) {
      process.env.MOONSOCKET_LUA_ENGINE = value;
      assert.equal(defaultLuaEngineChoice(), value);
    }
    process.env.MOONSOCKET_LUA_ENGINE = "luajit";
    assert.throws(() => defaultLuaEngineChoice(), /must be wasm, native or auto, got 'luajit'/);
  });

  it("gives the WebAssembly engine when asked, whatever is built", async () => {
    process.env.MOONSOCKET_LUA_ENGINE = "native";
    const lua = await createLuaEngine({ engine: "wasm" });
    assert.equal(lua.kind, "wasm");
    lua.close();
  });

  it("gives the native engine when built, else says how to build it", async () => {
    if (native.available) {
      const lua = await createLuaEngine({ engine: "native" });
      assert.equal(lua.kind, "native");
      assert.match(native.luaVersion, /^Lua 5\.4\./);
      lua.close();
    } else {
      await assert.rejects(
        createLuaEngine({ engine: "native" }),
        (err: unknown) =>
          err instanceof LuaError &&
          err.code === "ERR_LUA_ENGINE" &&
          /liblua5\.4-dev/.test(err.message),
      );
    }
  });

  it("picks native when built and wasm otherwise with auto", async () => {
    const lua = await createLuaEngine({ engine: "auto" });
    assert.equal(lua.kind, native.available ? "native" : "wasm");
    lua.close();
  });
});

describe("the native engine beside the WebAssembly one", {
  skip: !native.available && "native engine not built",
}, () => {
  /** Runs `source` on both engines and returns both results. */
  async function onBoth(source: string, ...args: unknown[]): Promise<[LuaValue[], LuaValue[]]> {
    const engines: LuaEngine[] = [
      await createLuaEngine({ engine: "wasm" }),
      await createLuaEngine({ engine: "native" }),
    ];
    try {
      const results = engines.map((lua) => {
        lua.registerFunction("host", "pair", (a) => [a.integer(1), a.bytes(2)]);
        return lua.run(source, "@same.lua", ...(args as never[]));
      });
      return [results[0]!, results[1]!];
    } finally {
      for (const lua of engines) lua.close();
    }
  }

  it("converts values the same way both ways", async () => {
    const [wasm, nativeResult] = await onBoth(
      `local t, s, big = ...
       return 1, -0.5, 2^53, math.maxinteger, "a\\0\\255", {1, 2, {x = true}}, {[1.5] = "f", k = "v"},
              t.list[2], #s, big, math.type(big), host.pair(7, "z")`,
      { list: [10, 20] },
      Buffer.from([0, 1, 255]),
      2n ** 60n,
    );
    assert.deepEqual(nativeResult, wasm);
  });

  it("reports the same errors", async () => {
    const failures: unknown[] = [];
    for (const engine of ["wasm", "native"] as const) {
      const lua = await createLuaEngine({ engine, cpuBudgetMs: 50 });
      for (const source of [
        "local t = nil\nreturn t.x",
        "error({})",
        "return 'unfinished",
        "while true do end",
      ]) {
        try {
          lua.run(source, "@bad.lua");
        } catch (err) {
          failures.push([engine, (err as LuaError).code, (err as LuaError).message]);
        }
      }
      lua.close();
    }
    const half = failures.length / 2;
    assert.equal(half, 4);
    assert.deepEqual(
      failures.slice(half).map((f) => (f as unknown[]).slice(1)),
      failures.slice(0, half).map((f) => (f as unknown[]).slice(1)),
    );
  });
});
