/**
 * The Lua VM engine interface: one Lua 5.4 state, sandboxed, with a CPU budget per entry and a
 * memory cap, driven from TypeScript.
 *
 * This file names no VM package and imports no implementation (they import it): the only
 * implementation today is `wasmoon/` (Lua 5.4 compiled to WebAssembly, driven through its C API);
 * a native engine can be added beside it behind the same interface, and be offered by
 * `create-engine.ts`, without touching the host or the script styles built on top.
 *
 * Values crossing the boundary:
 * - JS → Lua ({@link LuaInput}): `null`/`undefined` → nil, booleans, numbers (integral numbers
 *   become Lua integers, so `"id " .. 3` prints `id 3`; others become floats), `bigint` → integer,
 *   `string` → its UTF-8 bytes, `Uint8Array`/`Buffer` → the same bytes, arrays → sequences, plain
 *   objects → tables with string keys, JS functions → Lua functions ({@link HostFunction}),
 *   {@link LuaRef} → the referenced Lua value.
 * - Lua → JS ({@link LuaValue}): nil → `null`, booleans, integers and floats → `number` (integers
 *   beyond ±2^53 → `bigint`), strings → `Buffer` (every byte kept, NUL included), tables → arrays
 *   (keys exactly 1..n) or plain objects, functions/userdata/threads → {@link LuaRef}.
 *
 * @module
 */

import { MoonsocketError } from "../../protocol/errors.js";

/** Severity of a message the engine logs (Lua `print`, Lua warnings, `__gc` errors). */
export type LuaLogLevel = "debug" | "info" | "warn" | "error";

/** The two implementations: Lua 5.4 compiled to WebAssembly, or Debian's native liblua5.4. */
export type LuaEngineKind = "wasm" | "native";

/** Options of {@link createLuaEngine}. */
export interface LuaEngineOptions {
  /**
   * Which Lua to run: `"wasm"` (always available), `"native"` (the optional addon, built at
   * install time when `liblua5.4-dev` is installed; an `ERR_LUA_ENGINE` error if it is not
   * built) or `"auto"` (native when built, else wasm). Default: the `MOONSOCKET_LUA_ENGINE`
   * environment variable if set, else `"wasm"`. Both behave the same: same sandbox, values,
   * errors and limits.
   */
  readonly engine?: LuaEngineKind | "auto";
  /**
   * Cap on the memory the Lua state allocates, in bytes. An allocation beyond it fails as a Lua
   * `"not enough memory"` error, catchable by `pcall`; the state stays usable. Default 256 MiB.
   * Clamped to [1 MiB, 2 GiB − 64 MiB] (a WebAssembly heap cannot exceed 2 GiB).
   */
  readonly memoryLimitBytes?: number;
  /**
   * CPU budget of one entry from the host (a {@link LuaEngine.call}, {@link LuaEngine.resume},
   * {@link LuaEngine.run} …), in milliseconds of CPU time of the thread that runs Lua (time spent
   * waiting for a core on a loaded machine does not count). When it is spent the running Lua code
   * gets the error `"cpu budget exceeded"`, raised again on every instruction until control is
   * back in the host, so `pcall` cannot swallow it. Default 1000.
   *
   * The budget is checked every 1000 VM instructions; it starts at the first check. A
   * single call into a C library function (a pathological `string.find` pattern, a 100 MB
   * `string.rep`) cannot be interrupted and may overrun it.
   */
  readonly cpuBudgetMs?: number;
  /**
   * Folder that `require` reads modules from (`a.b` → `a/b.lua`, then `a/b/init.lua`). Names with
   * `/`, `\`, `..` or that resolve outside the folder are refused. Default: none, so `require`
   * only finds preloaded modules.
   */
  readonly scriptDir?: string;
  /**
   * Called with the path (relative to {@link scriptDir}, `/`-separated) of every module file
   * `require` reads from the script folder, e.g. to watch it for changes. Default: none.
   */
  readonly onModuleRead?: (relativePath: string) => void;
  /** Receives Lua `print` output (`info`), Lua warnings and `__gc` errors (`warn`). Default: drop. */
  readonly log?: (level: LuaLogLevel, message: string) => void;
}

/** Type names as Lua's `type()` spells them. */
export type LuaTypeName =
  | "nil"
  | "boolean"
  | "number"
  | "string"
  | "table"
  | "function"
  | "userdata"
  | "thread";

/**
 * A Lua value held by the host (kept alive in the Lua registry). Obtain one from
 * {@link LuaEngine.load}, {@link LuaEngine.createRef}, {@link LuaArgs.ref}, or as a function, thread
 * or userdata in a {@link LuaValue}. Release it with {@link LuaRef.release} when done; an
 * unreachable ref is released automatically after JS garbage collection.
 */
export interface LuaRef {
  /** Lua type of the referenced value. */
  readonly type: Exclude<LuaTypeName, "nil">;
  /** True once {@link LuaRef.release} was called or the engine closed. */
  readonly released: boolean;
  /** Drops the reference so Lua may collect the value. Idempotent. */
  release(): void;
}

/** A value coming from Lua. Strings are byte strings, hence `Buffer`. */
export type LuaValue =
  | null
  | boolean
  | number
  | bigint
  | Buffer
  | LuaRef
  | LuaValue[]
  | { [key: string]: LuaValue };

/** A value going into Lua. See the module documentation for the mapping. */
export type LuaInput =
  | null
  | undefined
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | LuaRef
  | HostFunction
  | readonly LuaInput[]
  | { readonly [key: string]: LuaInput };

/**
 * A JS function callable from Lua. It reads its arguments through `args` (valid only during the
 * call) and returns nothing (no results), one {@link LuaInput} (one result), a {@link LuaMulti}
 * (several results) or a {@link LuaYield} (yield the running coroutine with those values).
 * Throwing raises a Lua error at the caller's line (`app.lua:12: message`).
 */
export type HostFunction = ((args: LuaArgs) => HostReturn) | ((args: LuaArgs) => void);

/** What a {@link HostFunction} may return. */
export type HostReturn = LuaInput | LuaMulti | LuaYield | undefined;

/** Several return values of a {@link HostFunction}, e.g. `luaMulti(null, "timeout")`. */
export class LuaMulti {
  readonly values: readonly LuaInput[];
  constructor(values: readonly LuaInput[]) {
    this.values = values;
  }
}

/** Returns `values` as the multiple results of a host function (Lua's `return a, b, c`). */
export function luaMulti(...values: LuaInput[]): LuaMulti {
  return new LuaMulti(values);
}

/**
 * Returned by a {@link HostFunction}: yields the calling coroutine with `values` (the host sees a
 * `yield` result from {@link LuaEngine.resume}); the values later passed to `resume` become the
 * host function's results in Lua. Outside a coroutine this is the Lua error
 * `"attempt to yield from outside a coroutine"`.
 */
export class LuaYield {
  readonly values: readonly LuaInput[];
  constructor(values: readonly LuaInput[]) {
    this.values = values;
  }
}

/** Returns a {@link LuaYield} of `values`. */
export function luaYield(...values: LuaInput[]): LuaYield {
  return new LuaYield(values);
}

/**
 * The arguments of a {@link HostFunction} call, read in place from the Lua stack (1-based, as in
 * Lua). Accessors named after a type throw a Lua-style argument error
 * (`bad argument #2 to 'send' (string expected, got nil)`) when the argument has another type;
 * the `opt*` accessors return `undefined` for nil or a missing argument.
 */
export interface LuaArgs {
  /** Number of arguments passed. */
  readonly count: number;
  /** Name the function was registered under, used in argument errors. */
  readonly name: string;
  /** Lua type of argument `i`; `"nil"` past {@link LuaArgs.count}. */
  type(i: number): LuaTypeName;
  /** True when argument `i` is nil or absent. */
  isNil(i: number): boolean;
  /** Argument `i` as bytes (a string, or a number converted as Lua does). Every byte kept. */
  bytes(i: number): Buffer;
  /**
   * {@link LuaArgs.bytes} without the copy: a view into the Lua state's memory, valid only
   * until the host function returns (and before any call back into Lua). For data consumed
   * at once, e.g. copied into a frame.
   */
  bytesView(i: number): Buffer;
  /** Argument `i` as text, decoded from UTF-8 (invalid sequences become U+FFFD). */
  string(i: number): string;
  /**
   * Argument `i` as an integer (an integer, a float with an exact integer value, or a numeric
   * string). Values beyond ±2^53 lose precision.
   */
  integer(i: number): number;
  /** Argument `i` as a number (a number or a numeric string). */
  number(i: number): number;
  /** Argument `i` by Lua truthiness: false only for nil and false. Never throws. */
  boolean(i: number): boolean;
  /** Argument `i`, a table, copied into plain JS data (see {@link LuaValue}). */
  table(i: number): { [key: string]: LuaValue } | LuaValue[];
  /** Argument `i` converted as a {@link LuaValue}, whatever its type. */
  value(i: number): LuaValue;
  /** A {@link LuaRef} to argument `i` (any non-nil value), e.g. to keep a callback. */
  ref(i: number): LuaRef;
  /** {@link LuaArgs.bytes}, or `undefined` when the argument is nil or absent. */
  optBytes(i: number): Buffer | undefined;
  /** {@link LuaArgs.string}, or `undefined` when the argument is nil or absent. */
  optString(i: number): string | undefined;
  /** {@link LuaArgs.integer}, or `undefined` when the argument is nil or absent. */
  optInteger(i: number): number | undefined;
  /** {@link LuaArgs.number}, or `undefined` when the argument is nil or absent. */
  optNumber(i: number): number | undefined;
  /** {@link LuaArgs.table}, or `undefined` when the argument is nil or absent. */
  optTable(i: number): { [key: string]: LuaValue } | LuaValue[] | undefined;
  /** Throws `bad argument #i to '<name>' (<message>)`. */
  argError(i: number, message: string): never;
}

/** Outcome of {@link LuaEngine.resume}. */
export type LuaResumeResult =
  | { readonly status: "yield"; readonly values: LuaValue[] }
  | { readonly status: "done"; readonly values: LuaValue[] }
  | { readonly status: "error"; readonly error: LuaError };

/** State of a coroutine, as Lua's `coroutine.status` names it. */
export type LuaThreadStatus = "suspended" | "running" | "normal" | "dead";

/**
 * One sandboxed Lua 5.4 state. Not reentrant across threads; host functions may call back into
 * the engine (nested calls share the outer entry's CPU budget).
 */
export interface LuaEngine {
  /** Which implementation runs this state. */
  readonly kind: LuaEngineKind;
  /** Bytes currently allocated by the Lua state. */
  readonly memoryUsedBytes: number;
  /** The memory cap, in bytes. */
  readonly memoryLimitBytes: number;
  /** The CPU budget per entry, in milliseconds. */
  readonly cpuBudgetMs: number;
  /** True after {@link LuaEngine.close}. */
  readonly closed: boolean;
  /**
   * Compiles a text chunk (binary chunks are refused) and returns the function. `chunkName`
   * follows Lua: `"@app.lua"` makes errors read `app.lua:12: …`.
   * @throws {LuaError} `ERR_LUA_SYNTAX` on a syntax error.
   */
  load(source: string | Uint8Array, chunkName: string): LuaRef;
  /** Compiles and calls a chunk with `args`; returns its results. @throws {LuaError} */
  run(source: string | Uint8Array, chunkName: string, ...args: LuaInput[]): LuaValue[];
  /** Calls a Lua function (or callable value) with `args`; returns its results. @throws {LuaError} */
  call(fn: LuaRef, ...args: LuaInput[]): LuaValue[];
  /**
   * Reads global `name` (`null` when absent), raw: metamethods a script put on `_G` (a strict
   * mode's erroring `__index`) are not called.
   */
  getGlobal(name: string): LuaValue;
  /** Sets global `name`, raw (no `__newindex` of `_G`). */
  setGlobal(name: string, value: LuaInput): void;
  /**
   * Makes `fn` callable from Lua as `table.name` (the table is created if needed; a dotted
   * `table` like `"ngx.req"` creates nested tables), or as global `name` when `table` is null.
   */
  registerFunction(table: string | null, name: string, fn: HostFunction): void;
  /** Converts `value` into a Lua value held by a {@link LuaRef} (e.g. a table or a function). */
  createRef(value: LuaInput): LuaRef;
  /**
   * Registers a module for `require(name)`: Lua source (compiled now, run on first `require`
   * with `chunkName`, default `"@<name with dots as slashes>.lua"`), a host function used as the
   * loader, a ref to a Lua loader function, or a ref to any other value (the module itself).
   */
  preload(
    name: string,
    module: string | Uint8Array | HostFunction | LuaRef,
    chunkName?: string,
  ): void;
  /**
   * A table that lets one entry run several handlers, each under a CPU budget of its own: Lua
   * code that sets `t[1]` to a new integer before each handler makes the budget start over at
   * the next check (every 1000 instructions). Give it to trusted runtime code only. The same
   * table every time.
   */
  budgetEpoch(): LuaRef;
  /**
   * CPU milliseconds left of the budget of the running entry (starting it if no check
   * has yet), or the whole budget outside any entry: for host functions whose work the
   * instruction hook cannot see, like a regular expression match, to bound themselves.
   */
  budgetLeftMs(): number;
  /** Creates a coroutine that will run `fn`; resume it with {@link LuaEngine.resume}. */
  newThread(fn: LuaRef): LuaRef;
  /**
   * Starts or continues a coroutine made by {@link LuaEngine.newThread}. Its CPU budget starts
   * anew. Values yielded by Lua (`coroutine.yield(a, b)`) come back as `status: "yield"`; a Lua
   * error ends the coroutine and comes back as `status: "error"` with message and traceback.
   * @throws {LuaError} `ERR_LUA_ENGINE` when the coroutine is not suspended (dead or running).
   */
  resume(thread: LuaRef, ...args: LuaInput[]): LuaResumeResult;
  /** Status of a coroutine ref. */
  threadStatus(thread: LuaRef): LuaThreadStatus;
  /** Runs a full garbage collection cycle. */
  collectGarbage(): void;
  /**
   * Closes the state (running `__gc` metamethods under the CPU budget) and frees everything.
   * Called while Lua code is running (from a host function), it takes effect when that code
   * returns. Idempotent.
   */
  close(): void;
}

/** Machine-readable kinds of {@link LuaError}. */
export type LuaErrorCode =
  /** A Lua runtime error (`error(...)`, a failed operation, a host function that threw). */
  | "ERR_LUA_RUNTIME"
  /** A chunk did not compile, or was a binary chunk. */
  | "ERR_LUA_SYNTAX"
  /** The memory cap was hit (`not enough memory`). */
  | "ERR_LUA_MEMORY"
  /** The CPU budget of the entry was spent. */
  | "ERR_LUA_CPU_BUDGET"
  /** The engine was misused (closed, released ref, dead coroutine) or is unusable. */
  | "ERR_LUA_ENGINE";

/**
 * A Lua error surfaced to the host. `message` is Lua's message, with the position when Lua gave
 * one (`app.lua:12: attempt to index a nil value`); `traceback` is Lua's `stack traceback:` text
 * (empty when none is available, e.g. for memory errors).
 */
export class LuaError extends MoonsocketError {
  declare readonly code: LuaErrorCode;
  /** Lua's `stack traceback:` lines, or `""`. */
  readonly traceback: string;
  constructor(code: LuaErrorCode, message: string, traceback = "") {
    super(code, message);
    this.traceback = traceback;
  }
}
