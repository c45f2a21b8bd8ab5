/**
 * The store behind OpenResty's `ngx.shared.DICT`, as the Lua side calls it: synchronously, one
 * operation at a time, with lua-resty-core's return values. Two implementations:
 * `MemorySharedDictStore` (one process: a plain object in memory) and `PipeSharedDictStore` (a
 * worker of `--workers N`: every call is a blocking round trip to the primary process, which owns
 * the one store of the machine, as nginx's workers share one memory zone).
 *
 * The Lua module keeps the argument checks that raise Lua errors (`bad "zone" argument`,
 * `bad "exptime" argument`, key checks): a store receives checked arguments.
 *
 * @module
 */

/** A value a dictionary holds (Lua string, number or boolean; `null` is Lua's nil). */
export type SharedDictValue = string | number | boolean | null;

/**
 * What an operation returns: the Lua return values in order (`null` for nil; a trailing nil may be
 * left out). `get_keys` returns one array of keys.
 */
export type SharedDictResult = readonly (SharedDictValue | readonly string[])[];

/**
 * The operations and their arguments (after the dictionary name). Times are in SECONDS with
 * millisecond resolution, as in OpenResty; 0 means "never expires".
 *
 * | op | args | returns |
 * |---|---|---|
 * | `get` | key | value, flags (only when not 0); nothing when absent; nil, "value is a list" |
 * | `get_stale` | key | value, flags, stale |
 * | `set`, `safe_set`, `add`, `safe_add`, `replace` | key, value, exptime, flags | true, nil, forcible / false, err, forcible (`"exists"`, `"not found"`, `"no memory"`) |
 * | `delete` | key | true, nil, false |
 * | `incr` | key, step, init?, init_ttl? | new value, nil [, forcible] / nil, err (`"not found"`, `"not a number"`, `"no memory"`) |
 * | `lpush`, `rpush` | key, value | new length / nil, err (`"value not a list"`, `"no memory"`) |
 * | `lpop`, `rpop` | key | value / nothing / nil, "value not a list" |
 * | `llen` | key | length / nil, "value not a list" |
 * | `ttl` | key | seconds left (0: never) / nil, "not found" |
 * | `expire` | key, exptime | true / nil, "not found" |
 * | `flush_all` | | nothing |
 * | `flush_expired` | max_count (0: all) | count |
 * | `get_keys` | max_count (0: all; default 1024) | keys |
 * | `capacity`, `free_space` | | bytes |
 */
export const SHARED_DICT_OPS = [
  "get",
  "get_stale",
  "set",
  "safe_set",
  "add",
  "safe_add",
  "replace",
  "delete",
  "incr",
  "lpush",
  "rpush",
  "lpop",
  "rpop",
  "llen",
  "ttl",
  "expire",
  "flush_all",
  "flush_expired",
  "get_keys",
  "capacity",
  "free_space",
] as const;

/** One of {@link SHARED_DICT_OPS}. */
export type SharedDictOp = (typeof SHARED_DICT_OPS)[number];

/** Checks an operation name received from elsewhere (a pipe, Lua). */
export function isSharedDictOp(name: unknown): name is SharedDictOp {
  return (SHARED_DICT_OPS as readonly unknown[]).includes(name);
}

/** The shared dictionaries, callable synchronously from a Lua call that must not yield. */
export interface SharedDictStore {
  /**
   * Runs `op` on the dictionary `dict` (created on first use) and returns its Lua results.
   * Synchronous; for a worker's store it blocks the calling thread for one round trip.
   * @throws {SharedDictError} when the store cannot be reached (the primary process is gone) or
   *   the operation is unknown.
   */
  call(dict: string, op: SharedDictOp, args: readonly SharedDictValue[]): SharedDictResult;
}

/** The store failed (not a Lua-level error such as "no memory", which is a return value). */
export class SharedDictError extends Error {
  override readonly name = "SharedDictError";
}
