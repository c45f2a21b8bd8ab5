/**
 * The engine factory: the one place that knows which engine implementations exist (today the
 * WebAssembly one in `wasmoon/`). Kept apart from `engine.ts` so that the implementations can
 * import the interface without an import circle.
 *
 * @module
 */

import type { LuaEngine, LuaEngineOptions } from "./engine.js";

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
  // Loaded on demand so that importing the interface does not load the VM.
  const { createWasmoonEngine } = await import("./wasmoon/wasmoon-engine.js");
  return createWasmoonEngine(options);
}
