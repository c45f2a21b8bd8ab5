/**
 * The engine factory: the one place that knows which engine implementations exist (the
 * WebAssembly one in `wasmoon/`, always there, and the optional native one in `native/`, there
 * when its addon was built). Kept apart from `engine.ts` so that the implementations can import
 * the interface without an import circle.
 *
 * @module
 */

import type { LuaEngine, LuaEngineKind, LuaEngineOptions } from "./engine.js";

/**
 * Creates a sandboxed Lua 5.4 engine. See {@link LuaEngineOptions} for limits and defaults.
 *
 * Sandbox: no `io`, `dofile`, `loadfile`, `string.dump`, `package.loadlib` or C searchers; `os`
 * keeps `clock`, `date`, `difftime`, `time`; `debug` keeps `traceback`; `load`/`loadstring` take
 * text chunks only; `collectgarbage` takes `"collect"`, `"count"`, `"step"`, `"isrunning"`;
 * `setmetatable` refuses `__gc` (finalizers run with hooks off, out of the budget's reach);
 * `require` reads {@link LuaEngineOptions.scriptDir} and {@link LuaEngine.preload}ed modules;
 * `print` and `warn` go to {@link LuaEngineOptions.log}.
 *
 * @throws {RangeError} when a limit is not a positive number.
 * @example
 * ```ts
 * const lua = await createLuaEngine({ cpuBudgetMs: 100, scriptDir: "./app" });
 * lua.registerFunction(null, "_send", (args) => { send(args.integer(1), args.bytes(2)); });
 * lua.run(source, "@app.lua");
 * const main = lua.getGlobal("main");
 * ```
 */
export async function createLuaEngine(options: LuaEngineOptions = {}): Promise<LuaEngine> {
  const choice = options.engine ?? defaultLuaEngineChoice();
  // Loaded on demand so that importing the interface does not load a VM.
  if (choice !== "wasm") {
    const { createNativeEngine, nativeEngineStatus } = await import("./native/native-engine.js");
    if (choice === "native" || nativeEngineStatus().available) return createNativeEngine(options);
  }
  const { createWasmoonEngine } = await import("./wasmoon/wasmoon-engine.js");
  return createWasmoonEngine(options);
}

/**
 * The engine {@link createLuaEngine} picks when no `engine` option is given: the
 * `MOONSOCKET_LUA_ENGINE` environment variable (`wasm`, `native` or `auto`), else `"wasm"`.
 * @throws {RangeError} when the variable holds anything else.
 */
export function defaultLuaEngineChoice(): LuaEngineKind | "auto" {
  const value = process.env.MOONSOCKET_LUA_ENGINE;
  if (value === undefined || value === "") return "wasm";
  if (value === "wasm" || value === "native" || value === "auto") return value;
  throw new RangeError(`MOONSOCKET_LUA_ENGINE must be wasm, native or auto, got '${value}'`);
}

/**
 * The one line a server logs at startup about its Lua engine: which one runs the script, and
 * how to get the other, e.g. `"Lua engine: wasm (WebAssembly Lua 5.4); the native engine is
 * built: --lua-engine native"`.
 */
export async function describeLuaEngine(kind: LuaEngineKind): Promise<string> {
  const { NATIVE_ENGINE_HINT, nativeEngineStatus } = await import("./native/native-engine.js");
  const native = nativeEngineStatus();
  if (kind === "native") {
    const version = native.available ? native.luaVersion : "Lua 5.4";
    return `Lua engine: native (${version}, liblua5.4); --lua-engine wasm for the WebAssembly one`;
  }
  return native.available
    ? "Lua engine: wasm (WebAssembly Lua 5.4); the native engine is built: --lua-engine native"
    : `Lua engine: wasm (WebAssembly Lua 5.4); for the native one: ${NATIVE_ENGINE_HINT}, then --lua-engine native`;
}
