/**
 * A counting allocator for `lua_newstate`, as a tiny hand-assembled WebAssembly module.
 *
 * Lua allocates through one function (`lua_Alloc`). Enforcing the memory cap there is the only
 * way that also stops single huge allocations (`string.rep("x", 2^30)`); a failed allocation
 * becomes Lua's catchable `"not enough memory"` error and leaves the state usable. The function
 * is WebAssembly rather than JS because Lua calls it on every allocation: a JS allocator made
 * allocation-heavy Lua code ~80% slower, this one costs nothing measurable. It calls the Lua
 * module's own `realloc`/`free` directly (wasm to wasm).
 *
 * A growth to a megabyte or more also asks the host (`big`), which refuses it once the CPU
 * budget is spent: the single VM instruction behind it (a concatenation, a table resize) takes
 * time in proportion, and a loop of them would otherwise run for a whole hook interval (a
 * thousand instructions) past the budget.
 *
 * Equivalent C:
 * ```c
 * static size_t used, max;
 * void *alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
 *   size_t old = ptr ? osize : 0;       // with ptr == NULL, osize is a type tag, not a size
 *   if (nsize == 0) { if (ptr) { used -= old; free(ptr); } return NULL; }
 *   if (nsize > old && (uint64_t)used + (nsize - old) > max) return NULL;
 *   if (nsize > old && nsize >= BIG_ALLOCATION && !big(nsize)) return NULL;
 *   void *r = realloc(ptr, nsize);
 *   if (r) used = used - old + nsize;
 *   return r;
 * }
 * ```
 *
 * @module
 */

import { type WasmGlobal, webAssembly } from "./capi.js";

/** The instantiated allocator. */
export interface CountingAllocator {
  /** The `lua_Alloc` function, to be put in the module's function table. */
  readonly alloc: (ud: number, ptr: number, osize: number, nsize: number) => number;
  /** Bytes currently allocated through `alloc`. */
  readonly used: WasmGlobal;
  /** Cap in bytes; an allocation that would exceed it fails. */
  readonly max: WasmGlobal;
}

const I32 = 0x7f;

function leb128(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128, for i32.const operands. */
function sleb128(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function name(s: string): number[] {
  const bytes = [...Buffer.from(s, "latin1")];
  return [...leb128(bytes.length), ...bytes];
}

function section(id: number, content: number[]): number[] {
  return [id, ...leb128(content.length), ...content];
}

// Opcodes used below.
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const GLOBAL_GET = 0x23;
const GLOBAL_SET = 0x24;
const I32_CONST = 0x41;
const I32_EQZ = 0x45;
const I32_GT_U = 0x4b;
const I32_ADD = 0x6a;
const I32_SUB = 0x6b;
const I64_EXTEND_I32_U = 0xad;
const I64_ADD = 0x7c;
const I64_GT_U = 0x56;
const SELECT = 0x1b;
const IF_VOID = [0x04, 0x40];
const END = 0x0b;
const RETURN = 0x0f;
const CALL = 0x10;

/** Allocations from this size up ask the host first (see above). */
export const BIG_ALLOCATION = 1 << 20;

const I32_GE_U = 0x4f;
const I32_AND = 0x71;

// Parameters 0..3: ud, ptr, osize, nsize; locals 4: old, 5: result. Globals 0: used, 1: max.
// Imported functions 0: realloc, 1: free, 2: big.
const body = [
  // old = ptr ? osize : 0
  ...[LOCAL_GET, 2, I32_CONST, 0, LOCAL_GET, 1, SELECT, LOCAL_SET, 4],
  // if nsize == 0 { if ptr { used -= old; free(ptr) } return 0 }
  ...[LOCAL_GET, 3, I32_EQZ, ...IF_VOID],
  ...[LOCAL_GET, 1, ...IF_VOID],
  ...[GLOBAL_GET, 0, LOCAL_GET, 4, I32_SUB, GLOBAL_SET, 0],
  ...[LOCAL_GET, 1, CALL, 1],
  END,
  ...[I32_CONST, 0, RETURN],
  END,
  // if nsize > old && u64(used) + u64(nsize - old) > u64(max) { return 0 }
  ...[LOCAL_GET, 3, LOCAL_GET, 4, I32_GT_U, ...IF_VOID],
  ...[GLOBAL_GET, 0, I64_EXTEND_I32_U],
  ...[LOCAL_GET, 3, LOCAL_GET, 4, I32_SUB, I64_EXTEND_I32_U, I64_ADD],
  ...[GLOBAL_GET, 1, I64_EXTEND_I32_U, I64_GT_U, ...IF_VOID, I32_CONST, 0, RETURN, END],
  END,
  // if nsize > old && nsize >= BIG_ALLOCATION && big(nsize) == 0 { return 0 }
  ...[LOCAL_GET, 3, LOCAL_GET, 4, I32_GT_U],
  ...[LOCAL_GET, 3, I32_CONST, ...sleb128(BIG_ALLOCATION), I32_GE_U, I32_AND, ...IF_VOID],
  ...[LOCAL_GET, 3, CALL, 2, I32_EQZ, ...IF_VOID, I32_CONST, 0, RETURN, END],
  END,
  // result = realloc(ptr, nsize); if result { used = used - old + nsize }
  ...[LOCAL_GET, 1, LOCAL_GET, 3, CALL, 0, LOCAL_SET, 5],
  ...[LOCAL_GET, 5, ...IF_VOID],
  ...[GLOBAL_GET, 0, LOCAL_GET, 4, I32_SUB, LOCAL_GET, 3, I32_ADD, GLOBAL_SET, 0],
  END,
  ...[LOCAL_GET, 5],
  END,
];

const functionBody = [1, 2, I32, ...body]; // one local declaration: 2 × i32

const moduleBytes = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
  // types: 0 (i32 i32)→i32 realloc, 1 (i32)→() free, 2 (i32 i32 i32 i32)→i32 alloc,
  // 3 (i32)→i32 big
  ...section(1, [
    4,
    0x60,
    2,
    I32,
    I32,
    1,
    I32,
    0x60,
    1,
    I32,
    0,
    0x60,
    4,
    I32,
    I32,
    I32,
    I32,
    1,
    I32,
    0x60,
    1,
    I32,
    1,
    I32,
  ]),
  ...section(2, [
    3,
    ...[...name("e"), ...name("realloc"), 0, 0],
    ...[...name("e"), ...name("free"), 0, 1],
    ...[...name("e"), ...name("big"), 0, 3],
  ]),
  ...section(3, [1, 2]),
  // two mutable i32 globals initialised to 0
  ...section(6, [2, I32, 1, I32_CONST, 0, END, I32, 1, I32_CONST, 0, END]),
  ...section(7, [3, ...name("alloc"), 0, 3, ...name("used"), 3, 0, ...name("max"), 3, 1]),
  ...section(10, [1, ...leb128(functionBody.length), ...functionBody]),
]);

let compiled: object | undefined;

/**
 * Instantiates a counting allocator over the given `realloc`/`free` exports of a Lua module.
 * @param maxBytes initial cap in bytes
 * @param big asked before an allocation of {@link BIG_ALLOCATION} bytes or more: 0 refuses it
 */
export function createCountingAllocator(
  realloc: (ptr: number, size: number) => number,
  free: (ptr: number) => void,
  maxBytes: number,
  big: (size: number) => number = () => 1,
): CountingAllocator {
  compiled ??= new webAssembly.Module(moduleBytes);
  const instance = new webAssembly.Instance(compiled, { e: { realloc, free, big } });
  const exports = instance.exports as unknown as CountingAllocator;
  exports.max.value = maxBytes;
  return exports;
}
