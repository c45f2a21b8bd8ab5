import { readFileSync } from "node:fs";

const cache = new Map<string, string>();

/**
 * Source of a Lua runtime file shipped in `src/lua/runtime/` (the package includes that
 * folder; compiled code runs from `dist/src/lua/host/`).
 */
export function readRuntimeFile(name: string): string {
  let source = cache.get(name);
  if (source === undefined) {
    source = readFileSync(new URL(`../../../../src/lua/runtime/${name}`, import.meta.url), "utf8");
    cache.set(name, source);
  }
  return source;
}
