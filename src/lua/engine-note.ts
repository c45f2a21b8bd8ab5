/**
 * The one line a server logs at startup about its Lua engine: which one runs the script, and
 * how to get the other.
 *
 * @module
 */

import type { LuaEngineKind } from "./engine.js";

/**
 * Describes the engine `kind` that runs the script, e.g. `"Lua engine: wasm (WebAssembly Lua
 * 5.4); the native engine is built: --lua-engine native"`.
 */
export async function describeLuaEngine(kind: LuaEngineKind): Promise<string> {
  const { NATIVE_ENGINE_HINT, nativeEngineStatus } = await import("./native-engine.js");
  const native = nativeEngineStatus();
  if (kind === "native") {
    const version = native.available ? native.luaVersion : "Lua 5.4";
    return `Lua engine: native (${version}, liblua5.4); --lua-engine wasm for the WebAssembly one`;
  }
  return native.available
    ? "Lua engine: wasm (WebAssembly Lua 5.4); the native engine is built: --lua-engine native"
    : `Lua engine: wasm (WebAssembly Lua 5.4); for the native one: ${NATIVE_ENGINE_HINT}, then --lua-engine native`;
}
