/**
 * `moonsocket check`: loads scripts as `serve` would (see `lua/script-check.ts`), adds the
 * static findings of `check-lint.ts`, and reports on each, one line at a time.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import {
  type LoggedProblem,
  loadScriptAsServe,
  type ScriptCheckLimits,
} from "../lua/script-check.js";
import { detectStyle } from "../lua/styles/detect.js";
import { defineCommand, formatHelp, parseCommandArgs } from "./args.js";
import { type Finding, lintScript } from "./check-lint.js";
import { describeLoadError, SERVE_COMMAND } from "./serve.js";

export const CHECK_COMMAND = defineCommand({
  name: "check",
  description:
    "Check Lua scripts without serving them. Each is loaded exactly as 'serve' loads it: the " +
    "same sandbox, style runtime, CPU budget and memory limit (an endless loop at the top level " +
    "is reported, not hung), and the same top-level run (callback and coroutine styles; an " +
    "OpenResty script runs per connection, so it is compiled only). No socket is opened: a " +
    "coroutine script's http.listen is recorded, not listened on, and websocket.connect never " +
    "connects. Reported: the error 'serve' would refuse the script with (file and line), what " +
    "'serve' would log as a warning while loading it, and as a warning with its line each call " +
    "of a function the sandbox lacks (os.execute, io.open…). Every output line starts with the " +
    "script's path; a script's report ends with OK or FAILED (a file that cannot be read gets " +
    "one line saying why). Exit 0 when every script would load, 1 when any would not or, with " +
    "--strict, has a warning.",
  positionals: [
    {
      name: "script.lua",
      required: true,
      variadic: true,
      description: "the scripts to check (several at once: each is checked on its own)",
    },
  ],
  options: {
    strict: { type: "boolean", description: "treat warnings as errors (FAILED and exit 1)" },
    cpuBudget: SERVE_COMMAND.options.cpuBudget,
    memoryLimit: SERVE_COMMAND.options.memoryLimit,
    maxTimers: SERVE_COMMAND.options.maxTimers,
    maxListeners: SERVE_COMMAND.options.maxListeners,
    maxOutgoing: SERVE_COMMAND.options.maxOutgoing,
    luaEngine: SERVE_COMMAND.options.luaEngine,
  },
  examples: [
    "moonsocket check app.lua",
    "moonsocket check --strict examples/*.lua",
    "moonsocket check slow.lua --cpu-budget 5s",
  ],
});

/** `moonsocket check`: 0 when every script would load (with --strict: without warnings), else 1. */
export async function runCheck(argv: readonly string[]): Promise<number> {
  const { help, values, positionals } = parseCommandArgs(CHECK_COMMAND, argv);
  if (help) {
    process.stdout.write(formatHelp(CHECK_COMMAND));
    return 0;
  }
  const limits: ScriptCheckLimits = {
    cpuBudgetMs: values.cpuBudget,
    memoryLimitBytes: values.memoryLimit,
    maxTimers: values.maxTimers,
    maxListeners: values.maxListeners,
    maxOutgoing: values.maxOutgoing,
    ...(values.luaEngine !== undefined ? { luaEngine: values.luaEngine } : {}),
  };
  let failed = false;
  for (const path of positionals) {
    const { lines, ok } = await checkScript(path, limits, values.strict);
    process.stdout.write(lines.map((line) => `${line}\n`).join(""));
    if (!ok) failed = true;
  }
  return failed ? 1 : 0;
}

/** The report on one script, each line starting with its path, and whether it passed. */
export async function checkScript(
  path: string,
  limits: ScriptCheckLimits,
  strict: boolean,
): Promise<{ lines: string[]; ok: boolean }> {
  let source: string;
  try {
    source = readFileSync(path, "utf8");
  } catch (error) {
    const reason = describeReadError(path, error as NodeJS.ErrnoException);
    return { lines: [`${path}: ${reason}`], ok: false };
  }
  const style = detectStyle(source);
  const findings = lintScript(source, style);
  const load = await loadScriptAsServe(path, limits);
  return formatReport(path, {
    style,
    findings,
    logged: load.logged,
    loadError: load.error === null ? null : describeLoadError(load.error),
    listens: load.listens,
    strict,
  });
}

/** What {@link formatReport} reports on. */
export interface CheckOutcome {
  style: string;
  /** Static findings, with their lines. */
  findings: readonly Finding[];
  /** What serve logs at warn or error level while loading the script. */
  logged: readonly LoggedProblem[];
  /** Serve's message for a script it refuses (may span lines), or null. */
  loadError: string | null;
  /** Where a coroutine-style script would listen (check opens nothing). */
  listens?: readonly string[];
  strict: boolean;
}

/**
 * The lines reporting on the script at `path`, each starting with it: findings
 * (`path:LINE: warning: …`), what serve logged, serve's error, then the verdict, OK only when
 * it passed.
 */
export function formatReport(
  path: string,
  outcome: CheckOutcome,
): { lines: string[]; ok: boolean } {
  const lines: string[] = [];
  const sorted = [...outcome.findings].sort((a, b) => a.line - b.line);
  for (const finding of sorted)
    lines.push(`${path}:${finding.line}: ${finding.severity}: ${finding.message}`);
  // A load error is logged on its way out too: report it once.
  const logged =
    outcome.loadError === null
      ? outcome.logged
      : outcome.logged.filter((entry) => entry.level === "warn");
  for (const entry of logged)
    lines.push(`${path}: ${entry.level === "warn" ? "warning" : "error"}: ${entry.message}`);
  if (outcome.loadError !== null)
    for (const line of outcome.loadError.split("\n")) lines.push(`${path}: ${line}`);
  if (outcome.listens !== undefined && outcome.listens.length > 0)
    lines.push(`${path}: would listen on ${outcome.listens.join(", ")} (check opens no port)`);
  const warnings =
    sorted.filter((finding) => finding.severity === "warning").length +
    logged.filter((entry) => entry.level === "warn").length;
  const errors =
    sorted.filter((finding) => finding.severity === "error").length +
    logged.filter((entry) => entry.level === "error").length +
    (outcome.loadError !== null ? 1 : 0);
  const ok = errors === 0 && !(outcome.strict && warnings > 0);
  const details = [`${outcome.style} style`];
  if (errors > 0) details.push(plural(errors, "error"));
  if (warnings > 0) details.push(plural(warnings, "warning"));
  const note = !ok && errors === 0 ? "; --strict treats warnings as errors" : "";
  lines.push(`${path}: ${ok ? "OK" : "FAILED"} (${details.join(", ")}${note})`);
  return { lines, ok };
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** One sentence for a script that cannot be read: `cannot read x.lua: no such file`. */
export function describeReadError(path: string, error: NodeJS.ErrnoException): string {
  const reasons: Record<string, string> = {
    ENOENT: "no such file",
    EACCES: "permission denied",
    EPERM: "permission denied",
    EISDIR: "it is a folder",
    ENOTDIR: "a part of the path is not a folder",
  };
  const reason = (error.code !== undefined ? reasons[error.code] : undefined) ?? error.message;
  return `cannot read ${path}: ${reason}`;
}
