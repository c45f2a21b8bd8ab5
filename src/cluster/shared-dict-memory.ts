/**
 * `ngx.shared.DICT` in the memory of one process: what a single-process server uses directly and
 * what the primary process of `--workers N` serves to its workers (shared-dict-pipe-server.ts).
 *
 * Each dictionary has a capacity in bytes. An item counts {@link ITEM_OVERHEAD_BYTES} plus its
 * key and value (strings by their UTF-8 length, numbers 8 bytes, booleans 1, list elements each
 * {@link LIST_ELEMENT_OVERHEAD_BYTES} plus their own size); `free_space` is what is left. When an
 * item does not fit, expired items go first; then `set`, `add`, `replace` and `incr` evict the
 * least recently used live items and say so with `forcible = true`, while `safe_set`,
 * `safe_add`, `lpush` and `rpush` answer "no memory" instead, as OpenResty does.
 *
 * @module
 */

import {
  isSharedDictOp,
  SharedDictError,
  type SharedDictOp,
  type SharedDictResult,
  type SharedDictStore,
  type SharedDictValue,
} from "./shared-dict-store.js";

/** Bytes counted for every item besides its key and value (nginx's node and rbtree overhead). */
export const ITEM_OVERHEAD_BYTES = 64;
/** Bytes counted for every element of a list besides its value. */
export const LIST_ELEMENT_OVERHEAD_BYTES = 24;

/** Options of {@link MemorySharedDictStore}. */
export interface MemorySharedDictStoreOptions {
  /** Capacity in bytes of named dictionaries (`lua_shared_dict NAME SIZE`). */
  readonly capacities?: Readonly<Record<string, number>>;
  /** Capacity in bytes of a dictionary not named above. Default `Infinity` (never full). */
  readonly defaultCapacityBytes?: number;
  /** Monotonic clock in milliseconds, for tests. Default `performance.now`. */
  readonly now?: () => number;
}

type ListElement = string | number;

interface Item {
  value: SharedDictValue;
  /** Set for a list (then `value` is null). */
  list: ListElement[] | undefined;
  flags: number;
  /** Monotonic time it expires, in ms; 0 = never. */
  expires: number;
  bytes: number;
}

/** One dictionary: items in least-recently-used-first order (a Map keeps insertion order). */
class Dict {
  readonly items = new Map<string, Item>();
  used = 0;
  constructor(readonly capacity: number) {}
}

type SetMode = "set" | "add" | "replace";

/** The in-process {@link SharedDictStore}. */
export class MemorySharedDictStore implements SharedDictStore {
  readonly #dicts = new Map<string, Dict>();
  readonly #capacities: Readonly<Record<string, number>>;
  readonly #defaultCapacity: number;
  readonly #now: () => number;

  constructor(options: MemorySharedDictStoreOptions = {}) {
    this.#capacities = options.capacities ?? {};
    this.#defaultCapacity = options.defaultCapacityBytes ?? Number.POSITIVE_INFINITY;
    this.#now = options.now ?? (() => performance.now());
  }

  call(dictName: string, op: SharedDictOp, args: readonly SharedDictValue[]): SharedDictResult {
    if (!isSharedDictOp(op))
      throw new SharedDictError(`unknown shared dict operation ${String(op)}`);
    const d = this.#dict(dictName);
    const key = String(args[0] ?? "");
    switch (op) {
      case "get":
        return this.#get(d, key);
      case "get_stale":
        return this.#getStale(d, key);
      case "set":
      case "safe_set":
      case "add":
      case "safe_add":
      case "replace": {
        const mode: SetMode = op === "safe_set" ? "set" : op === "safe_add" ? "add" : op;
        const safe = op.startsWith("safe_");
        return this.#set(
          d,
          key,
          args[1] ?? null,
          Number(args[2] ?? 0),
          Number(args[3] ?? 0),
          mode,
          safe,
        );
      }
      case "delete":
        return this.#set(d, key, null, 0, 0, "set", false);
      case "incr":
        return this.#incr(d, key, args[1], args[2], args[3]);
      case "lpush":
      case "rpush":
        return this.#push(d, key, args[1], op === "lpush");
      case "lpop":
      case "rpop":
        return this.#pop(d, key, op === "lpop");
      case "llen": {
        const item = this.#alive(d, key);
        if (item === undefined) return [0];
        return item.list === undefined ? [null, "value not a list"] : [item.list.length];
      }
      case "ttl": {
        const item = this.#alive(d, key);
        if (item === undefined) return [null, "not found"];
        return [item.expires === 0 ? 0 : (item.expires - this.#now()) / 1000];
      }
      case "expire": {
        const item = this.#alive(d, key);
        if (item === undefined) return [null, "not found"];
        const seconds = Number(args[1] ?? 0);
        item.expires = seconds > 0 ? this.#now() + seconds * 1000 : 0;
        return [true];
      }
      case "flush_all":
        d.items.clear();
        d.used = 0;
        return [];
      case "flush_expired":
        return [this.#sweep(d, Number(args[0] ?? 0))];
      case "get_keys":
        return [this.#keys(d, args[0] === undefined || args[0] === null ? 1024 : Number(args[0]))];
      case "capacity":
        return [d.capacity];
      case "free_space":
        return [Math.max(0, d.capacity - d.used)];
    }
  }

  #dict(name: string): Dict {
    let d = this.#dicts.get(name);
    if (d === undefined) {
      d = new Dict(this.#capacities[name] ?? this.#defaultCapacity);
      this.#dicts.set(name, d);
    }
    return d;
  }

  #expired(item: Item): boolean {
    return item.expires !== 0 && item.expires <= this.#now();
  }

  /** The live item under `key` (an expired one is removed unless `keep`, for get_stale). */
  #alive(d: Dict, key: string, keep = false): Item | undefined {
    const item = d.items.get(key);
    if (item === undefined) return undefined;
    if (this.#expired(item)) {
      if (!keep) this.#remove(d, key, item);
      return undefined;
    }
    return item;
  }

  /** Marks `key` most recently used. */
  #touch(d: Dict, key: string, item: Item): void {
    d.items.delete(key);
    d.items.set(key, item);
  }

  #remove(d: Dict, key: string, item: Item): void {
    d.items.delete(key);
    d.used -= item.bytes;
  }

  #get(d: Dict, key: string): SharedDictResult {
    const item = this.#alive(d, key, true);
    if (item === undefined) return [];
    if (item.list !== undefined) return [null, "value is a list"];
    this.#touch(d, key, item);
    return item.flags !== 0 ? [item.value, item.flags] : [item.value];
  }

  #getStale(d: Dict, key: string): SharedDictResult {
    const item = d.items.get(key);
    if (item === undefined) return [];
    if (item.list !== undefined) return [null, "value is a list"];
    return [item.value, item.flags, this.#expired(item)];
  }

  /**
   * Makes room for `bytes` more (counting `replacing`, the item about to be replaced, as free):
   * expired items first, then, unless `safe`, the least recently used ones. Returns whether it
   * fits and whether live items were evicted.
   */
  #makeRoom(
    d: Dict,
    bytes: number,
    safe: boolean,
    replacing?: string,
  ): { fits: boolean; forcible: boolean } {
    const freed = replacing === undefined ? 0 : (d.items.get(replacing)?.bytes ?? 0);
    const fits = () => d.used - freed + bytes <= d.capacity;
    if (fits()) return { fits: true, forcible: false };
    if (bytes > d.capacity) return { fits: false, forcible: false };
    this.#sweep(d, 0);
    if (fits() || safe) return { fits: fits(), forcible: false };
    let forcible = false;
    for (const [key, item] of d.items) {
      if (fits()) break;
      if (key === replacing) continue;
      this.#remove(d, key, item);
      forcible = true;
    }
    return { fits: fits(), forcible };
  }

  #set(
    d: Dict,
    key: string,
    value: SharedDictValue,
    exptime: number,
    flags: number,
    mode: SetMode,
    safe: boolean,
  ): SharedDictResult {
    const present = this.#alive(d, key);
    if (mode === "add" && present !== undefined) return [false, "exists", false];
    if (mode === "replace" && present === undefined) return [false, "not found", false];
    if (value === null) {
      if (present !== undefined) this.#remove(d, key, present);
      return [true, null, false];
    }
    const bytes = ITEM_OVERHEAD_BYTES + byteLength(key) + byteLength(value);
    const room = this.#makeRoom(d, bytes, safe, key);
    if (!room.fits) return [false, "no memory", room.forcible];
    this.#store(d, key, { value, list: undefined, flags, expires: this.#expiry(exptime), bytes });
    return [true, null, room.forcible];
  }

  #store(d: Dict, key: string, item: Item): void {
    const old = d.items.get(key);
    if (old !== undefined) this.#remove(d, key, old);
    d.items.set(key, item);
    d.used += item.bytes;
  }

  #expiry(seconds: number): number {
    return seconds > 0 ? this.#now() + seconds * 1000 : 0;
  }

  #incr(
    d: Dict,
    key: string,
    stepArg: SharedDictValue | undefined,
    init: SharedDictValue | undefined,
    initTtl: SharedDictValue | undefined,
  ): SharedDictResult {
    const step = toNumber(stepArg);
    if (step === undefined) return [null, "value not a number"];
    const item = this.#alive(d, key);
    if (item === undefined) {
      if (init === undefined || init === null) return [null, "not found"];
      const start = toNumber(init);
      if (start === undefined) return [null, "init not a number"];
      const result = start + step;
      const bytes = ITEM_OVERHEAD_BYTES + byteLength(key) + 8;
      const room = this.#makeRoom(d, bytes, false);
      if (!room.fits) return [null, "no memory"];
      const expires = this.#expiry(Number(initTtl ?? 0));
      this.#store(d, key, { value: result, list: undefined, flags: 0, expires, bytes });
      return [result, null, room.forcible];
    }
    if (typeof item.value !== "number" || item.list !== undefined) return [null, "not a number"];
    item.value += step;
    this.#touch(d, key, item);
    return [item.value, null];
  }

  #push(
    d: Dict,
    key: string,
    value: SharedDictValue | undefined,
    front: boolean,
  ): SharedDictResult {
    if (typeof value !== "string" && typeof value !== "number") return [null, "bad value type"];
    const elementBytes = LIST_ELEMENT_OVERHEAD_BYTES + byteLength(value);
    let item = this.#alive(d, key);
    if (item !== undefined && item.list === undefined) return [null, "value not a list"];
    const bytes = elementBytes + (item === undefined ? ITEM_OVERHEAD_BYTES + byteLength(key) : 0);
    if (!this.#makeRoom(d, bytes, true).fits) return [null, "no memory"];
    if (item === undefined) {
      item = {
        value: null,
        list: [],
        flags: 0,
        expires: 0,
        bytes: ITEM_OVERHEAD_BYTES + byteLength(key),
      };
      this.#store(d, key, item);
    }
    const list = item.list!;
    if (front) list.unshift(value);
    else list.push(value);
    item.bytes += elementBytes;
    d.used += elementBytes;
    return [list.length];
  }

  #pop(d: Dict, key: string, front: boolean): SharedDictResult {
    const item = this.#alive(d, key);
    if (item === undefined) return [];
    if (item.list === undefined) return [null, "value not a list"];
    const value = front ? item.list.shift() : item.list.pop();
    if (value === undefined) return [];
    const elementBytes = LIST_ELEMENT_OVERHEAD_BYTES + byteLength(value);
    item.bytes -= elementBytes;
    d.used -= elementBytes;
    if (item.list.length === 0) this.#remove(d, key, item);
    return [value];
  }

  /** Removes expired items (at most `max`, 0 = all); returns how many. */
  #sweep(d: Dict, max: number): number {
    let count = 0;
    for (const [key, item] of d.items) {
      if (max > 0 && count >= max) break;
      if (this.#expired(item)) {
        this.#remove(d, key, item);
        count++;
      }
    }
    return count;
  }

  #keys(d: Dict, max: number): string[] {
    const keys: string[] = [];
    for (const [key, item] of d.items) {
      if (max > 0 && keys.length >= max) break;
      if (!this.#expired(item)) keys.push(key);
    }
    return keys;
  }
}

function byteLength(value: SharedDictValue | ListElement): number {
  if (typeof value === "string") return Buffer.byteLength(value);
  if (typeof value === "number") return 8;
  return 1;
}

function toNumber(value: SharedDictValue | undefined): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value === "string" && value.trim() !== "") {
    const n = Number(value);
    return Number.isNaN(n) ? undefined : n;
  }
  return undefined;
}
