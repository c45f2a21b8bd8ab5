/**
 * The Lua 5.4 C API as exported by a WebAssembly build of Lua (wasm32, `WASM_BIGINT`): the raw
 * exports, called directly rather than through Emscripten's `cwrap`, which costs 4–10 times more
 * per call. Pointers, `int` and `size_t` are numbers; `lua_Integer` and `lua_Unsigned` (64-bit)
 * are `bigint`; `lua_Number` is a double.
 *
 * @module
 */

/** Address in the module's linear memory. */
export type Ptr = number;

/** The members of the WebAssembly JS API used here (the project's `lib` has no DOM types). */
export interface WasmApi {
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (
    module: object,
    imports: Record<string, Record<string, unknown>>,
  ) => { readonly exports: Record<string, unknown> };
  instantiate(...args: unknown[]): Promise<unknown>;
}

/** A `WebAssembly.Memory`. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

/** A mutable `WebAssembly.Global` of type i32. */
export interface WasmGlobal {
  value: number;
}

/** The global `WebAssembly` object. */
export const webAssembly = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** The raw exports of the Lua WebAssembly module this engine uses. */
export interface LuaCApi {
  readonly memory: WasmMemory;
  malloc(size: number): Ptr;
  free(ptr: Ptr): void;
  realloc(ptr: Ptr, size: number): Ptr;

  lua_newstate(allocf: number, ud: Ptr): Ptr;
  lua_close(L: Ptr): void;
  lua_atpanic(L: Ptr, panicf: number): number;
  lua_setwarnf(L: Ptr, warnf: number, ud: Ptr): void;
  luaL_openlibs(L: Ptr): void;
  lua_newthread(L: Ptr): Ptr;
  lua_resetthread(L: Ptr): number;
  lua_status(L: Ptr): number;
  lua_getstack(L: Ptr, level: number, ar: Ptr): number;

  lua_gettop(L: Ptr): number;
  lua_settop(L: Ptr, idx: number): void;
  lua_absindex(L: Ptr, idx: number): number;
  lua_pushvalue(L: Ptr, idx: number): void;
  lua_rotate(L: Ptr, idx: number, n: number): void;
  lua_checkstack(L: Ptr, n: number): number;
  lua_xmove(from: Ptr, to: Ptr, n: number): void;

  lua_type(L: Ptr, idx: number): number;
  lua_isinteger(L: Ptr, idx: number): number;
  lua_tonumberx(L: Ptr, idx: number, isnum: Ptr): number;
  lua_tointegerx(L: Ptr, idx: number, isnum: Ptr): bigint;
  lua_toboolean(L: Ptr, idx: number): number;
  lua_tolstring(L: Ptr, idx: number, len: Ptr): Ptr;
  lua_touserdata(L: Ptr, idx: number): Ptr;
  lua_tothread(L: Ptr, idx: number): Ptr;
  lua_topointer(L: Ptr, idx: number): Ptr;

  lua_pushnil(L: Ptr): void;
  lua_pushnumber(L: Ptr, n: number): void;
  lua_pushinteger(L: Ptr, n: bigint): void;
  lua_pushlstring(L: Ptr, s: Ptr, len: number): Ptr;
  lua_pushcclosure(L: Ptr, fn: number, n: number): void;
  lua_pushboolean(L: Ptr, b: number): void;
  lua_pushlightuserdata(L: Ptr, p: Ptr): void;

  lua_gettable(L: Ptr, idx: number): number;
  lua_rawget(L: Ptr, idx: number): number;
  lua_rawgeti(L: Ptr, idx: number, n: bigint): number;
  lua_createtable(L: Ptr, narr: number, nrec: number): void;
  lua_newuserdatauv(L: Ptr, size: number, nuvalue: number): Ptr;
  lua_settable(L: Ptr, idx: number): void;
  lua_rawset(L: Ptr, idx: number): void;
  lua_rawseti(L: Ptr, idx: number, n: bigint): void;
  lua_setmetatable(L: Ptr, idx: number): number;
  lua_next(L: Ptr, idx: number): number;
  lua_concat(L: Ptr, n: number): void;

  lua_callk(L: Ptr, nargs: number, nresults: number, ctx: number, k: number): void;
  lua_pcallk(
    L: Ptr,
    nargs: number,
    nresults: number,
    errfunc: number,
    ctx: number,
    k: number,
  ): number;
  lua_resume(L: Ptr, from: Ptr, nargs: number, nres: Ptr): number;
  lua_yieldk(L: Ptr, nresults: number, ctx: number, k: number): number;
  lua_error(L: Ptr): number;
  lua_sethook(L: Ptr, fn: number, mask: number, count: number): void;
  lua_gethookcount(L: Ptr): number;

  luaL_loadbufferx(L: Ptr, buff: Ptr, size: number, name: Ptr, mode: Ptr): number;
  luaL_ref(L: Ptr, t: number): number;
  luaL_unref(L: Ptr, t: number, ref: number): void;
  luaL_traceback(L: Ptr, L1: Ptr, msg: Ptr, level: number): void;
  luaL_where(L: Ptr, level: number): void;
  luaL_getmetafield(L: Ptr, obj: number, e: Ptr): number;
}

/** Status codes (`lua.h`). */
export const LUA_OK = 0;
export const LUA_YIELD = 1;
export const LUA_ERRRUN = 2;
export const LUA_ERRSYNTAX = 3;
export const LUA_ERRMEM = 4;
export const LUA_ERRERR = 5;

/** Type tags (`lua.h`). */
export const LUA_TNONE = -1;
export const LUA_TNIL = 0;
export const LUA_TBOOLEAN = 1;
export const LUA_TLIGHTUSERDATA = 2;
export const LUA_TNUMBER = 3;
export const LUA_TSTRING = 4;
export const LUA_TTABLE = 5;
export const LUA_TFUNCTION = 6;
export const LUA_TUSERDATA = 7;
export const LUA_TTHREAD = 8;

/** `LUA_REGISTRYINDEX` for the default `LUAI_MAXSTACK` of 1 000 000. */
export const LUA_REGISTRYINDEX = -1_000_000 - 1000;
/** Registry slot of the globals table. */
export const LUA_RIDX_GLOBALS = 2n;
export const LUA_MULTRET = -1;
export const LUA_MASKCOUNT = 1 << 3;
/** Slots Lua guarantees free when it calls a C function (and at the base of a state). */
export const LUA_MINSTACK = 20;

/** Pseudo-index of upvalue `i` of the running C function. */
export function luaUpvalueIndex(i: number): number {
  return LUA_REGISTRYINDEX - i;
}
