import { stripComments } from "./lua-source.js";
import { DEFAULT_STYLE, type ScriptStyle, STYLES } from "./registry.js";

export { stripComments } from "./lua-source.js";
export type { ScriptStyle } from "./registry.js";

/**
 * Tells a script's style from its source, no flag needed: the first style (in registry order)
 * whose modules the script requires, else the first whose globals it uses, else the callback
 * style. Today: a script that requires `resty.*` (or uses `ngx.`) is OpenResty style; one that
 * requires `silly` or `silly.*` is coroutine style; anything else is callback style
 * (WebSocketServer's `main`, `on_connect`, `on_disconnect`). Comments are ignored.
 */
export function detectStyle(source: string): ScriptStyle {
  const code = stripComments(source);
  const evidence = STYLES.map((style) => style.recognize(code));
  const chosen =
    STYLES[evidence.indexOf("requires")] ?? STYLES[evidence.indexOf("uses")] ?? DEFAULT_STYLE;
  return chosen.name;
}
