/**
 * {@link LuaEngine} on Debian's native Lua 5.4 (`liblua5.4`), through the optional Node-API
 * addon `build/Release/lua_engine.node` built from `native/lua_engine.c` at install time when
 * the headers are present (`apt-get install liblua5.4-dev`, then `npm rebuild`).
 *
 * The addon does the work that may raise a Lua error (pushing values, making refs, calling) in C
 * inside protected calls, and keeps the limits in C: the counting allocator with its cap, the
 * CPU budget's count hook and the budget epoch. This file holds what is JavaScript by nature:
 * refs, host functions and their {@link LuaArgs}, and the sandbox prelude, the same as the
 * WebAssembly engine's.
 *
 * @module
 */

import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import {
  type HostFunction,
  type LuaArgs,
  type LuaEngine,
  type LuaEngineOptions,
  LuaError,
  type LuaErrorCode,
  type LuaInput,
  type LuaLogLevel,
  LuaMulti,
  type LuaRef,
  type LuaResumeResult,
  type LuaThreadStatus,
  type LuaTypeName,
  type LuaValue,
  LuaYield,
} from "../engine.js";
import { LuaArgsBase } from "../lua-args-base.js";
import { LuaRefBase } from "../lua-ref-base.js";
import { SANDBOX_PRELUDE, SANDBOX_PRELUDE_NAME } from "../sandbox-prelude.js";
import { findScriptModule } from "../sandbox-require.js";

const MIB = 1024 * 1024;
const DEFAULT_MEMORY_LIMIT = 256 * MIB;
const MIN_MEMORY_LIMIT = MIB;
/** The same range as the WebAssembly engine, so a limit means the same on both. */
const MAX_MEMORY_LIMIT = 2048 * MIB - 64 * MIB;
const DEFAULT_CPU_BUDGET_MS = 1000;

/** How to build the native engine, for messages. */
export const NATIVE_ENGINE_HINT = "apt-get install liblua5.4-dev, then npm rebuild";

/** Where the addon is built, from `dist/src/lua/` (compiled) up to the package root. */
const ADDON_PATH = fileURLToPath(
  new URL("../../../../../build/Release/lua_engine.node", import.meta.url),
);

/** Bytes of host function arguments handed over through a scratch buffer (per host call). */
const ARG_SCRATCH_BYTES = 256 * 1024;

/** How a host function's result travels back to C (`shared[0]`); see `host_call` in C. */
const Result = { one: 0, multi: 1, yield: 2, error: 3, luaError: 4, none: 5, memoryError: 6 };

/** Lua's type numbers (lua.h) as `type()` names them. */
const TYPE_NAMES: Record<number, LuaTypeName> = {
  [-1]: "nil",
  0: "nil",
  1: "boolean",
  2: "userdata",
  3: "number",
  4: "string",
  5: "table",
  6: "function",
  7: "userdata",
  8: "thread",
};
const LUA_TNONE = -1;
const LUA_TNIL = 0;
const LUA_TNUMBER = 3;
const LUA_TTABLE = 5;
const THREAD_STATUS: readonly LuaThreadStatus[] = ["suspended", "running", "dead"];

/** An engine instance inside the addon. */
type Handle = object;

/** The functions `native/lua_engine.c` exports. */
interface NativeAddon {
  readonly luaVersion: string;
  create(memoryLimitBytes: number, cpuBudgetMs: number, callbacks: AddonCallbacks): Handle;
  close(h: Handle): void;
  isClosed(h: Handle): boolean;
  memoryUsed(h: Handle): number;
  load(h: Handle, source: string | Uint8Array, chunkName: string): NativeRef;
  call(h: Handle, fnId: number, args: readonly LuaInput[]): LuaValue[];
  getGlobal(h: Handle, name: string): LuaValue;
  setGlobal(h: Handle, name: string, value: LuaInput): void;
  registerFunction(
    h: Handle,
    tableParts: string[] | null,
    name: string,
    qualifiedName: string,
    fn: HostFunction,
  ): void;
  createRef(h: Handle, value: LuaInput): NativeRef;
  preload(h: Handle, name: string, kind: number, module: unknown, chunkName: string): void;
  budgetEpoch(h: Handle): NativeRef;
  budgetLeftMs(h: Handle): number;
  newThread(h: Handle, fnId: number): NativeRef;
  threadStatus(h: Handle, threadId: number): number;
  resume(h: Handle, threadId: number, args: readonly LuaInput[]): [number, LuaValue[] | LuaError];
  collectGarbage(h: Handle): void;
  unref(h: Handle, id: number): void;
  cpuClock(h: Handle): NativeRef;
  argType(h: Handle, depth: number, i: number): number;
  /** A Buffer, or the length of the bytes put in the argument scratch at offset shared[1]. */
  argBytes(h: Handle, depth: number, i: number): Buffer | number | undefined;
  argText(h: Handle, depth: number, i: number): string | undefined;
  argInteger(h: Handle, depth: number, i: number): number | undefined;
  argNumber(h: Handle, depth: number, i: number): number | undefined;
  argBoolean(h: Handle, depth: number, i: number): boolean;
  argValue(h: Handle, depth: number, i: number, asRef: boolean): LuaValue;
}

/** What the addon calls back into. */
interface AddonCallbacks {
  readonly adapter: NativeLuaEngine;
  /** Called with the id, depth and argument count in shared[1..3]. */
  readonly dispatch: () => unknown;
  readonly makeRef: (id: number, type: number) => NativeRef;
  readonly makeError: (code: LuaErrorCode, message: string, traceback: string) => LuaError;
  readonly refClass: typeof NativeRef;
  readonly hostFunctions: (HostFunction | undefined)[];
  readonly hostNames: (string | undefined)[];
  readonly log: (level: LuaLogLevel, message: string) => void;
  readonly shared: Int32Array;
  readonly argScratch: Uint8Array;
}

let loaded: { addon: NativeAddon } | { reason: string } | undefined;

function loadAddon(): { addon: NativeAddon } | { reason: string } {
  if (loaded === undefined) {
    try {
      loaded = { addon: createRequire(import.meta.url)(ADDON_PATH) as NativeAddon };
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND";
      loaded = {
        reason: missing
          ? `the native Lua engine is not built (${NATIVE_ENGINE_HINT})`
          : `the native Lua engine does not load: ${(err as Error).message}`,
      };
    }
  }
  return loaded;
}

/**
 * Whether the native engine can be used here, and if not why (one sentence with the remedy).
 * Loads the addon on first use.
 */
export function nativeEngineStatus():
  | { readonly available: true; readonly luaVersion: string }
  | { readonly available: false; readonly reason: string } {
  const result = loadAddon();
  return "addon" in result
    ? { available: true, luaVersion: result.addon.luaVersion }
    : { available: false, reason: result.reason };
}

/**
 * Creates a native engine; see {@link createLuaEngine} in `engine.ts`.
 * @throws {LuaError} `ERR_LUA_ENGINE` when the addon is not built or does not load.
 */
export function createNativeEngine(options: LuaEngineOptions): LuaEngine {
  const result = loadAddon();
  if (!("addon" in result)) throw new LuaError("ERR_LUA_ENGINE", result.reason);
  return new NativeLuaEngine(result.addon, options);
}

/** Registry reference to a Lua value; the addon reads `engine`, `id` and `isReleased`. */
class NativeRef extends LuaRefBase {
  /** @internal */ readonly engine: NativeLuaEngine;
  /** @internal */ readonly id: number;

  constructor(engine: NativeLuaEngine, id: number, type: Exclude<LuaTypeName, "nil">) {
    super(type);
    this.engine = engine;
    this.id = id;
  }

  protected get engineClosed(): boolean {
    return this.engine.closed;
  }

  protected freeInEngine(): void {
    this.engine.releaseRef(this);
  }
}

/** {@link LuaArgs} read through the addon from the stack of the host call at `depth`. */
class NativeArgs extends LuaArgsBase {
  /** @internal */ depth = 0;
  count = 0;
  name = "?";
  /** @internal false once the host function returned */ live = false;
  private readonly addon: NativeAddon;
  private readonly h: Handle;
  private readonly shared: Int32Array;
  private readonly scratch: Uint8Array;

  constructor(addon: NativeAddon, h: Handle, shared: Int32Array, scratch: Uint8Array) {
    super();
    this.addon = addon;
    this.h = h;
    this.shared = shared;
    this.scratch = scratch;
  }

  /** Argument `i`'s bytes: a view into the scratch (valid during this call), or a Buffer. */
  private rawBytes(i: number): Buffer | number | undefined {
    this.check(i);
    return i > this.count ? undefined : this.addon.argBytes(this.h, this.depth, i);
  }

  private check(i: number): void {
    if (!this.live) throw new Error("LuaArgs used after its host function returned");
    if (!Number.isInteger(i) || i < 1) throw new RangeError(`argument index ${i} is not >= 1`);
  }

  private typeAt(i: number): number {
    this.check(i);
    return i > this.count ? LUA_TNONE : this.addon.argType(this.h, this.depth, i);
  }

  private expected(i: number, what: string, t: number): never {
    const got = t === LUA_TNONE ? "no value" : (TYPE_NAMES[t] ?? "nil");
    return this.argError(i, `${what} expected, got ${got}`);
  }

  type(i: number): LuaTypeName {
    return TYPE_NAMES[this.typeAt(i)] ?? "nil";
  }

  isNil(i: number): boolean {
    const t = this.typeAt(i);
    return t === LUA_TNIL || t === LUA_TNONE;
  }

  bytes(i: number): Buffer {
    const value = this.rawBytes(i);
    if (typeof value !== "number") return value ?? this.expected(i, "string", this.typeAt(i));
    const offset = this.shared[1]!;
    // Buffer.allocUnsafe takes from Node's pool: far cheaper than a Buffer made in C.
    const bytes = Buffer.allocUnsafe(value);
    bytes.set(this.scratch.subarray(offset, offset + value));
    return bytes;
  }

  bytesView(i: number): Buffer {
    const value = this.rawBytes(i);
    if (typeof value !== "number") return value ?? this.expected(i, "string", this.typeAt(i));
    return Buffer.from(this.scratch.buffer, this.scratch.byteOffset + this.shared[1]!, value);
  }

  string(i: number): string {
    this.check(i);
    const value = i > this.count ? undefined : this.addon.argText(this.h, this.depth, i);
    return value ?? this.expected(i, "string", this.typeAt(i));
  }

  integer(i: number): number {
    this.check(i);
    const value = i > this.count ? undefined : this.addon.argInteger(this.h, this.depth, i);
    if (value !== undefined) return value;
    const t = this.typeAt(i);
    if (t === LUA_TNUMBER) this.argError(i, "number has no integer representation");
    return this.expected(i, "number", t);
  }

  number(i: number): number {
    this.check(i);
    const value = i > this.count ? undefined : this.addon.argNumber(this.h, this.depth, i);
    return value ?? this.expected(i, "number", this.typeAt(i));
  }

  boolean(i: number): boolean {
    this.check(i);
    return i <= this.count && this.addon.argBoolean(this.h, this.depth, i);
  }

  table(i: number): { [key: string]: LuaValue } | LuaValue[] {
    const t = this.typeAt(i);
    if (t !== LUA_TTABLE) this.expected(i, "table", t);
    return this.addon.argValue(this.h, this.depth, i, false) as { [key: string]: LuaValue };
  }

  value(i: number): LuaValue {
    if (this.typeAt(i) === LUA_TNONE) return null;
    return this.addon.argValue(this.h, this.depth, i, false);
  }

  ref(i: number): LuaRef {
    const t = this.typeAt(i);
    if (t === LUA_TNIL || t === LUA_TNONE) this.expected(i, "value", t);
    return this.addon.argValue(this.h, this.depth, i, true) as LuaRef;
  }
}

class NativeLuaEngine implements LuaEngine {
  readonly kind = "native";
  readonly memoryLimitBytes: number;
  readonly cpuBudgetMs: number;

  private readonly addon: NativeAddon;
  private readonly h: Handle;
  private readonly scriptDir: string | undefined;
  private readonly onModuleRead: ((relativePath: string) => void) | undefined;
  private readonly log: (level: LuaLogLevel, message: string) => void;
  private readonly hostFunctions: (HostFunction | undefined)[] = [];
  private readonly hostNames: (string | undefined)[] = [];
  private readonly shared = new Int32Array(4);
  private readonly argScratch = new Uint8Array(ARG_SCRATCH_BYTES);
  private readonly argsPool: NativeArgs[] = [];
  private epoch: NativeRef | null = null;
  private readonly finalizer = new FinalizationRegistry<number>((id) => this.unref(id));

  constructor(addon: NativeAddon, options: LuaEngineOptions) {
    this.addon = addon;
    const memoryLimit = options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT;
    const cpuBudget = options.cpuBudgetMs ?? DEFAULT_CPU_BUDGET_MS;
    if (!Number.isFinite(memoryLimit) || memoryLimit <= 0) {
      throw new RangeError(`memoryLimitBytes must be a positive number, got ${memoryLimit}`);
    }
    if (!Number.isFinite(cpuBudget) || cpuBudget <= 0) {
      throw new RangeError(`cpuBudgetMs must be a positive number, got ${cpuBudget}`);
    }
    this.memoryLimitBytes = Math.min(
      Math.max(Math.floor(memoryLimit), MIN_MEMORY_LIMIT),
      MAX_MEMORY_LIMIT,
    );
    this.cpuBudgetMs = cpuBudget;
    this.scriptDir = options.scriptDir;
    this.onModuleRead = options.onModuleRead;
    const log = options.log;
    this.log = (level, message) => {
      try {
        log?.(level, message);
      } catch {}
    };
    this.h = addon.create(this.memoryLimitBytes, this.cpuBudgetMs, {
      adapter: this,
      dispatch: () => this.dispatch(),
      makeRef: (id, type) => this.makeRef(id, type),
      makeError: (code, message, traceback) => new LuaError(code, message, traceback),
      refClass: NativeRef,
      hostFunctions: this.hostFunctions,
      hostNames: this.hostNames,
      log: this.log,
      shared: this.shared,
      argScratch: this.argScratch,
    });
    this.installSandbox();
  }

  /** Runs the sandbox prelude, as the WebAssembly engine does. */
  private installSandbox(): void {
    const readModule = (args: LuaArgs) => {
      const found = findScriptModule(this.scriptDir, args.string(1));
      if (found.found) this.onModuleRead?.(found.relativePath);
      return found.found
        ? new LuaMulti([found.source, found.relativePath])
        : new LuaMulti([null, found.message]);
    };
    const hostPrint = (args: LuaArgs) => {
      this.log("info", args.string(1));
    };
    const cpuClock = this.addon.cpuClock(this.h);
    try {
      const [privates] = this.run(
        SANDBOX_PRELUDE,
        SANDBOX_PRELUDE_NAME,
        readModule,
        hostPrint,
        cpuClock,
      );
      // collectGarbage() is done in C; the prelude's private original is not needed.
      const collect = (privates as { collectgarbage?: LuaValue } | null)?.collectgarbage;
      if (collect instanceof NativeRef) collect.release();
    } finally {
      cpuClock.release();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Public API

  get memoryUsedBytes(): number {
    return this.addon.memoryUsed(this.h);
  }

  get closed(): boolean {
    return this.addon.isClosed(this.h);
  }

  load(source: string | Uint8Array, chunkName: string): LuaRef {
    return this.addon.load(this.h, source, chunkName);
  }

  run(source: string | Uint8Array, chunkName: string, ...args: LuaInput[]): LuaValue[] {
    const fn = this.load(source, chunkName);
    try {
      return this.call(fn, ...args);
    } finally {
      fn.release();
    }
  }

  call(fn: LuaRef, ...args: LuaInput[]): LuaValue[] {
    this.assertOpen();
    return this.addon.call(this.h, this.own(fn).id, args);
  }

  getGlobal(name: string): LuaValue {
    return this.addon.getGlobal(this.h, name);
  }

  setGlobal(name: string, value: LuaInput): void {
    this.addon.setGlobal(this.h, name, value);
  }

  registerFunction(table: string | null, name: string, fn: HostFunction): void {
    if (typeof fn !== "function") throw new TypeError("registerFunction needs a function");
    const qualified = table === null ? name : `${table}.${name}`;
    this.addon.registerFunction(this.h, table?.split(".") ?? null, name, qualified, fn);
  }

  createRef(value: LuaInput): LuaRef {
    return this.addon.createRef(this.h, value);
  }

  preload(
    name: string,
    module: string | Uint8Array | HostFunction | LuaRef,
    chunkName?: string,
  ): void {
    const chunk = chunkName ?? `@${name.split(".").join("/")}.lua`;
    if (typeof module === "string" || module instanceof Uint8Array) {
      this.addon.preload(this.h, name, 0, module, chunk);
    } else if (typeof module === "function") {
      this.addon.preload(this.h, name, 1, module, chunk);
    } else if (module instanceof NativeRef) {
      const ref = this.own(module);
      this.addon.preload(this.h, name, ref.type === "function" ? 2 : 3, ref.id, chunk);
    } else {
      throw new TypeError("preload needs Lua source, a host function or a LuaRef");
    }
  }

  budgetEpoch(): LuaRef {
    this.epoch ??= this.addon.budgetEpoch(this.h);
    return this.epoch;
  }

  budgetLeftMs(): number {
    return this.addon.budgetLeftMs(this.h);
  }

  newThread(fn: LuaRef): LuaRef {
    return this.addon.newThread(this.h, this.own(fn).id);
  }

  resume(thread: LuaRef, ...args: LuaInput[]): LuaResumeResult {
    this.assertOpen();
    const ref = this.own(thread);
    const status = this.threadStatus(ref);
    if (status !== "suspended") {
      throw new LuaError("ERR_LUA_ENGINE", `cannot resume ${status} coroutine`);
    }
    const [code, payload] = this.addon.resume(this.h, ref.id, args);
    if (code === 0) return { status: "yield", values: payload as LuaValue[] };
    ref.finished = true;
    if (code === 1) return { status: "done", values: payload as LuaValue[] };
    return { status: "error", error: payload as LuaError };
  }

  threadStatus(thread: LuaRef): LuaThreadStatus {
    this.assertOpen();
    const ref = this.own(thread);
    if (ref.type !== "thread") throw new TypeError("not a coroutine ref");
    if (ref.finished) return "dead";
    return THREAD_STATUS[this.addon.threadStatus(this.h, ref.id)] ?? "dead";
  }

  collectGarbage(): void {
    this.addon.collectGarbage(this.h);
  }

  close(): void {
    this.addon.close(this.h);
  }

  // ---------------------------------------------------------------------------------------------
  // Refs

  private makeRef(id: number, type: number): NativeRef {
    const name = TYPE_NAMES[type] ?? "userdata";
    const ref = new NativeRef(this, id, name === "nil" ? "userdata" : name);
    this.finalizer.register(ref, id, ref);
    return ref;
  }

  /** @internal */
  releaseRef(ref: NativeRef): void {
    this.finalizer.unregister(ref);
    this.unref(ref.id);
  }

  private unref(id: number): void {
    this.addon.unref(this.h, id);
  }

  private own(value: LuaRef): NativeRef {
    if (!(value instanceof NativeRef) || value.engine !== this) {
      throw new TypeError("not a LuaRef of this engine");
    }
    if (value.isReleased) throw new LuaError("ERR_LUA_ENGINE", "the LuaRef was released");
    return value;
  }

  private assertOpen(): void {
    if (this.closed) throw new LuaError("ERR_LUA_ENGINE", "the Lua engine is closed");
  }

  // ---------------------------------------------------------------------------------------------
  // Host functions

  /**
   * Called by the addon's trampoline for every host function call. Never throws: the outcome
   * goes back as the return value plus its kind in `shared[0]`, and C raises any Lua error
   * once no JavaScript frame is left between it and Lua.
   */
  private dispatch(): unknown {
    const shared = this.shared;
    const id = shared[1]!;
    const depth = shared[2]!;
    const argc = shared[3]!;
    const fn = this.hostFunctions[id];
    if (fn === undefined) {
      shared[0] = Result.error;
      return "host function is gone";
    }
    let args = this.argsPool[depth];
    if (args === undefined) {
      args = new NativeArgs(this.addon, this.h, this.shared, this.argScratch);
      this.argsPool[depth] = args;
    }
    args.depth = depth;
    args.count = argc;
    args.name = this.hostNames[id] ?? "?";
    args.live = true;
    let result: unknown;
    try {
      result = fn(args);
    } catch (err) {
      if (err instanceof LuaError && err.code === "ERR_LUA_MEMORY") {
        shared[0] = Result.memoryError;
        return undefined;
      }
      // A LuaError already carries a position (it comes from Lua); others get the caller's.
      shared[0] = err instanceof LuaError ? Result.luaError : Result.error;
      return err instanceof Error ? err.message : String(err);
    } finally {
      args.live = false;
    }
    if (result === undefined) {
      shared[0] = Result.none;
      return undefined;
    }
    if (result instanceof LuaMulti) {
      shared[0] = Result.multi;
      return result.values;
    }
    if (result instanceof LuaYield) {
      shared[0] = Result.yield;
      return result.values;
    }
    shared[0] = Result.one;
    return result;
  }
}
