const REQUIRE = /\brequire\s*\(?\s*["']([\w.]+)["']/g;

/** Removes Lua comments (`--` to end of line, `--[[ … ]]` / `--[==[ … ]==]` blocks); strings are left alone. */
export function stripComments(source: string): string {
  return source.replace(/--\[(=*)\[[\s\S]*?\]\1\]/g, "").replace(/--[^\n]*/g, "");
}

/** The module names `code` requires with a literal name (`require "a.b"`, `require("a.b")`). */
export function requiredModules(code: string): string[] {
  return Array.from(code.matchAll(REQUIRE), (match) => match[1]!);
}
