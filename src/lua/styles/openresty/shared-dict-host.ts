/**
 * The host function behind `ngx.shared.DICT` when the dictionaries live outside the Lua state:
 * under `--workers N` every worker's dictionaries are the primary's one store, reached
 * synchronously over pipes (cluster/shared-dict-pipe-client.ts), as nginx's workers share one
 * memory zone. runtime/resty/resty-shdict.lua checks the arguments (raising OpenResty's Lua
 * errors) and calls `shdict(dict, op, ...)`, which returns the store's results as they are.
 *
 * Lua strings are bytes: they cross as JavaScript strings of one character per byte (latin1)
 * and come back as the same bytes, so any byte string is stored unchanged.
 *
 * @module
 */

import {
  isSharedDictOp,
  SharedDictError,
  type SharedDictResult,
  type SharedDictStore,
  type SharedDictValue,
} from "../../../cluster/shared-dict-store.js";
import { type HostFunction, LuaError, type LuaInput, luaMulti } from "../../vm/engine.js";

/** The `shdict` host function over `store`. */
export function createSharedDictHost(store: SharedDictStore): Record<string, HostFunction> {
  return {
    shdict: (args) => {
      const dict = args.bytes(1).toString("latin1");
      const op = args.string(2);
      if (!isSharedDictOp(op)) throw new LuaError("ERR_LUA_RUNTIME", `unknown operation ${op}`);
      const values: SharedDictValue[] = [];
      for (let i = 3; i <= args.count; i++) {
        const value = args.value(i);
        values.push(Buffer.isBuffer(value) ? value.toString("latin1") : toStoreValue(value));
      }
      let results: SharedDictResult;
      try {
        results = store.call(dict, op, values);
      } catch (error) {
        // The primary is gone: the worker is about to stop; the script sees a Lua error.
        if (error instanceof SharedDictError) throw new LuaError("ERR_LUA_RUNTIME", error.message);
        throw error;
      }
      return luaMulti(...results.map(toLua));
    },
  };
}

function toStoreValue(value: unknown): SharedDictValue {
  if (typeof value === "bigint") return Number(value);
  return typeof value === "number" || typeof value === "boolean" ? value : null;
}

function toLua(value: SharedDictResult[number]): LuaInput {
  if (typeof value === "string") return Buffer.from(value, "latin1");
  if (Array.isArray(value)) return value.map((key: string) => Buffer.from(key, "latin1"));
  return value as LuaInput;
}
