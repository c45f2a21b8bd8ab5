// The one rewrite an OpenResty-style script gets before it runs (see openresty-style.ts,
// "Shared state").

const SHARED_LOCAL = /^local[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*\{[ \t]*\}[ \t]*(--.*)?$/;

/**
 * Prepares an OpenResty-style script for `runtime/ngx.lua`, keeping every line where it was:
 * the chunk receives its per-connection environment and the shared-table function
 * (`local _ENV, __ngx_shared = ...;` is put in front of line 1), and each top-level
 * `local NAME = {}` line (column 0, outside strings and comments, a comment may follow) becomes
 * `local NAME = __ngx_shared("NAME")`, one table per script shared by all connections.
 * A `#!` first line becomes a comment. `source` is the file's bytes decoded as latin1.
 */
export function rewriteOpenRestyScript(source: string): string {
  if (source.startsWith("\xef\xbb\xbf")) source = source.slice(3);
  const lines = source.split("\n");
  const inCode = codeLineStarts(source);
  for (let i = 0; i < lines.length; i++) {
    if (!inCode[i]) continue;
    let line = lines[i]!;
    const cr = line.endsWith("\r") ? "\r" : "";
    if (cr !== "") line = line.slice(0, -1);
    const m = SHARED_LOCAL.exec(line);
    if (m === null) continue;
    lines[i] =
      `local ${m[1]} = __ngx_shared("${m[1]}")${m[2] !== undefined ? ` ${m[2]}` : ""}${cr}`;
  }
  let first = lines[0] ?? "";
  if (first.startsWith("#")) first = `--${first}`;
  lines[0] = `local _ENV, __ngx_shared = ...; ${first}`;
  return lines.join("\n");
}

/** For each line of `src`, whether it starts in code (not inside a string or a long comment). */
function codeLineStarts(src: string): boolean[] {
  const starts = [true];
  let state: "code" | "short" | "long" | "comment" = "code";
  let quote = "";
  let level = 0;
  const longBracket = (at: number): number => {
    if (src[at] !== "[") return -1;
    let j = at + 1;
    while (src[j] === "=") j++;
    return src[j] === "[" ? j - at - 1 : -1;
  };
  for (let i = 0; i < src.length; ) {
    const c = src[i]!;
    if (c === "\n") {
      if (state === "comment") state = "code";
      starts.push(state === "code");
      i++;
      continue;
    }
    if (state === "code") {
      if (c === "-" && src[i + 1] === "-") {
        const lvl = longBracket(i + 2);
        if (lvl >= 0) {
          state = "long";
          level = lvl;
          i += lvl + 4;
        } else {
          state = "comment";
          i += 2;
        }
      } else if (c === "[" && longBracket(i) >= 0) {
        level = longBracket(i);
        state = "long";
        i += level + 2;
      } else if (c === '"' || c === "'") {
        state = "short";
        quote = c;
        i++;
      } else {
        i++;
      }
    } else if (state === "short") {
      if (c === "\\") {
        // An escaped line break continues the string on the next line.
        if (src[i + 1] === "\n") starts.push(false);
        i += 2;
      } else {
        if (c === quote) state = "code";
        i++;
      }
    } else if (state === "long") {
      if (c === "]" && src.startsWith(`${"=".repeat(level)}]`, i + 1)) {
        state = "code";
        i += level + 2;
      } else {
        i++;
      }
    } else {
      i++;
    }
  }
  return starts;
}
