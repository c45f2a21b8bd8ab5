/** The three script styles moonsocket runs (SPEC §3). */
export type ScriptStyle = "callback" | "coroutine" | "openresty";

const REQUIRE = /\brequire\s*\(?\s*["']([\w.]+)["']/g;

/**
 * Tells a script's style from its source, no flag needed: a script that requires
 * `resty.websocket.*` (or uses `ngx.`) is OpenResty style; one that requires `silly` or
 * `silly.*` is coroutine style; anything else is callback style (WebSocketServer's `main`,
 * `on_connect`, `on_disconnect`). Comments are ignored.
 */
export function detectStyle(source: string): ScriptStyle {
  const code = stripComments(source);
  let silly = false;
  for (const match of code.matchAll(REQUIRE)) {
    const name = match[1]!;
    if (name.startsWith("resty.")) return "openresty";
    if (name === "silly" || name.startsWith("silly.")) silly = true;
  }
  if (silly) return "coroutine";
  if (/\bngx\s*\.\s*(?:log|exit|sleep|say|var|req|thread|timer|shared|now|time)\b/.test(code))
    return "openresty";
  return "callback";
}

/** Removes Lua comments (`--` to end of line, `--[[ … ]]` / `--[==[ … ]==]` blocks); strings are left alone. */
export function stripComments(source: string): string {
  return source.replace(/--\[(=*)\[[\s\S]*?\]\1\]/g, "").replace(/--[^\n]*/g, "");
}
