import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { createLuaEngine, LuaError } from "../lua/engine.js";
import { detectStyle, type ScriptStyle, stripComments } from "../lua/style-detect.js";
import { ArgsError, defineCommand, formatHelp, parseCommandArgs } from "./args.js";

export const CHECK_COMMAND = defineCommand({
  name: "check",
  description:
    "Check a Lua script without running it: syntax (with line numbers), the detected style, and the use " +
    "of features the sandbox does not offer. Exit 0 when it would load, 1 when it would not.",
  positionals: [{ name: "script.lua", required: true, description: "the script to check" }],
  options: {
    strict: { type: "boolean", description: "treat warnings as errors (exit 1)" },
  },
  examples: ["moonsocket check app.lua"],
});

/** A finding about a script, with its 1-based line. */
export interface Finding {
  line: number;
  severity: "error" | "warning";
  message: string;
}

const UNSUPPORTED: ReadonlyArray<[RegExp, string]> = [
  [/\brequire\s*\(?\s*["']ffi["']/, "LuaJIT's ffi is not available (moonsocket runs Lua 5.4)"],
  [
    /\b(setfenv|getfenv)\s*\(/,
    "setfenv/getfenv do not exist in Lua 5.4: use _ENV or load(chunk, name, 't', env)",
  ],
  [/\bio\s*\.\s*\w+/, "the io library is not available in the sandbox"],
  [
    /\bos\s*\.\s*(execute|exit|remove|rename|tmpname|getenv|setlocale)\b/,
    "this os function is not available in the sandbox",
  ],
  [
    /\bdebug\s*\.\s*(?!traceback\b)\w+/,
    "the debug library is not available in the sandbox (only debug.traceback)",
  ],
  [/\bpackage\s*\.\s*loadlib\b/, "package.loadlib is not available in the sandbox"],
  [/\bstring\s*\.\s*dump\b/, "string.dump is not available in the sandbox"],
];

/** Static checks of a script's source: unsupported features and missing entry points. */
export function lintScript(source: string, style: ScriptStyle): Finding[] {
  const findings: Finding[] = [];
  const lines = stripComments(source).split("\n");
  lines.forEach((text, index) => {
    for (const [pattern, message] of UNSUPPORTED) {
      if (pattern.test(text)) findings.push({ line: index + 1, severity: "warning", message });
    }
  });
  const code = lines.join("\n");
  if (style === "callback" && !/\bfunction\s+main\s*\(|\bmain\s*=\s*function\b/.test(code)) {
    findings.push({
      line: 1,
      severity: "warning",
      message: "no main(clientId, message) is defined: messages will be ignored",
    });
  }
  if (style === "openresty" && !/recv_frame/.test(code)) {
    findings.push({
      line: 1,
      severity: "warning",
      message: "the script never calls wb:recv_frame(): incoming frames are never read",
    });
  }
  if (style === "coroutine" && !/\.listen\s*[{(]|\.connect\s*\(/.test(code)) {
    findings.push({
      line: 1,
      severity: "warning",
      message: "the script neither listens (http.listen) nor connects: it serves nothing",
    });
  }
  return findings;
}

/** `moonsocket check`: 0 when the script compiles (and, with --strict, has no warnings), else 1. */
export async function runCheck(argv: readonly string[]): Promise<number> {
  const { help, values, positionals } = parseCommandArgs(CHECK_COMMAND, argv);
  if (help) {
    process.stdout.write(formatHelp(CHECK_COMMAND));
    return 0;
  }
  const path = positionals[0]!;
  let source: string;
  try {
    source = readFileSync(path, "utf8");
  } catch (error) {
    throw new ArgsError(
      `moonsocket check: cannot read '${path}': ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  const name = basename(path);
  const style = detectStyle(source);
  const engine = await createLuaEngine({ cpuBudgetMs: 1000 });
  try {
    engine.load(source, `@${path}`).release();
  } catch (error) {
    const message = error instanceof LuaError ? error.message : String(error);
    process.stdout.write(
      `${message.replace(/^@/, "")}\n${name}: syntax error, the script would not load\n`,
    );
    return 1;
  } finally {
    engine.close();
  }
  const findings = lintScript(source, style);
  for (const finding of findings)
    process.stdout.write(`${path}:${finding.line}: ${finding.severity}: ${finding.message}\n`);
  const warnings = findings.filter((finding) => finding.severity === "warning").length;
  process.stdout.write(
    `${name}: OK (${style} style${warnings > 0 ? `, ${warnings} warning${warnings === 1 ? "" : "s"}` : ""})\n`,
  );
  return values.strict && warnings > 0 ? 1 : 0;
}
