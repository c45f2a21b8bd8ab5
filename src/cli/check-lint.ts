/**
 * The static part of `moonsocket check`: functions a script calls that the sandbox does not
 * offer, named with their line. They are warnings, not errors: a call in a branch that never
 * runs (`if setfenv then … end`) is harmless, and the load itself reports a call that does run.
 *
 * @module
 */

import { type ScriptStyle, stripComments } from "../lua/styles/detect.js";

/** A finding about a script, with its 1-based line. */
export interface Finding {
  line: number;
  severity: "error" | "warning";
  message: string;
}

/** A pattern (global flag; group 1 names the function when there are several) and its message. */
const UNSUPPORTED: ReadonlyArray<[RegExp, (name: string) => string]> = [
  [
    /\brequire\s*\(?\s*["']ffi["']/g,
    () => `require "ffi" fails: LuaJIT's ffi is not available (moonsocket runs Lua 5.4)`,
  ],
  [
    /\b(setfenv|getfenv)\s*\(/g,
    (name) => `${name} does not exist in Lua 5.4: use _ENV or load(chunk, name, "t", env)`,
  ],
  [
    /\b(dofile|loadfile)\s*\(/g,
    (name) =>
      `${name} is not available in the sandbox (require reads modules from the script's folder)`,
  ],
  [/\bio\s*\.\s*(\w+)/g, (name) => `the io library is not available in the sandbox (io.${name})`],
  [
    /\bos\s*\.\s*(execute|exit|remove|rename|tmpname|getenv|setlocale)\b/g,
    (name) =>
      `os.${name} is not available in the sandbox (os keeps only clock, date, difftime and time)`,
  ],
  [
    /\bdebug\s*\.\s*(?!traceback\b)(\w+)/g,
    (name) => `debug.${name} is not available in the sandbox (debug keeps only traceback)`,
  ],
  [
    /\bpackage\s*\.\s*(loadlib|searchpath)\b/g,
    (name) => `package.${name} is not available in the sandbox`,
  ],
  [/\bstring\s*\.\s*dump\b/g, () => "string.dump is not available in the sandbox"],
];

/**
 * Static checks of a script's source: each call of a function the sandbox lacks, once per
 * line, and for the OpenResty style (whose code runs per connection, not at load) a handler
 * that never reads.
 */
export function lintScript(source: string, style: ScriptStyle): Finding[] {
  const findings: Finding[] = [];
  const lines = stripComments(source).split("\n");
  lines.forEach((text, index) => {
    const messages = new Set<string>();
    for (const [pattern, message] of UNSUPPORTED) {
      for (const match of text.matchAll(pattern)) messages.add(message(match[1] ?? ""));
    }
    for (const message of messages)
      findings.push({ line: index + 1, severity: "warning", message });
  });
  if (style === "openresty" && !/recv_frame/.test(lines.join("\n"))) {
    findings.push({
      line: 1,
      severity: "warning",
      message: "the script never calls wb:recv_frame(): incoming frames are never read",
    });
  }
  return findings;
}
