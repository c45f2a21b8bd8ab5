/**
 * Loads a script exactly as `moonsocket serve` does, without listening: the check behind
 * `moonsocket check`.
 *
 * The load is serve's own ({@link ScriptApp.create}): the same sandbox, style runtime, CPU
 * budget and memory limit, and the same top-level run (callback and coroutine styles run the
 * script once at load; an OpenResty script runs per connection, so it is only compiled). What
 * the check does not do: listen (a coroutine script's `http.listen` at startup creates its
 * server, which nobody starts), reach out (`websocket.connect` never connects; its task waits),
 * or run `on_startup` (it runs when the server starts listening).
 *
 * @module
 */

import type { LogFields, Logger, LogLevel } from "../observability/logger.js";
import { MetricsRegistry } from "../observability/metrics.js";
import { ScriptApp, type ScriptAppOptions } from "./script-app.js";

/** The limits of the load, as serve takes them (defaults as serve's). */
export type ScriptCheckLimits = Pick<
  ScriptAppOptions,
  "cpuBudgetMs" | "memoryLimitBytes" | "maxTimers" | "maxListeners" | "maxOutgoing" | "luaEngine"
>;

/** A warning or error the server logs while it loads the script. */
export interface LoggedProblem {
  readonly level: "warn" | "error";
  readonly message: string;
}

/** What loading a script as serve does showed. */
export interface ScriptLoadReport {
  /** Why serve would refuse the script (a `LuaError` for syntax and load errors), or null. */
  readonly error: unknown;
  /** What serve would log at warn or error level while loading. */
  readonly logged: readonly LoggedProblem[];
  /**
   * Where a coroutine-style script's startup `http.listen` calls would listen (`host:port`),
   * though nothing was opened; empty for the other styles (they listen on serve's --port).
   */
  readonly listens: readonly string[];
}

/**
 * Loads `scriptPath` as serve would, then frees it. Never throws for a script's fault (that
 * is {@link ScriptLoadReport.error}); the file must be readable.
 */
export async function loadScriptAsServe(
  scriptPath: string,
  limits: ScriptCheckLimits = {},
): Promise<ScriptLoadReport> {
  const logged: LoggedProblem[] = [];
  let app: ScriptApp;
  try {
    app = await ScriptApp.create({
      ...limits,
      scriptPath,
      // serve's defaults: a coroutine script's listens keep the ports it asked for.
      serverOptions: { port: 8085, host: "127.0.0.1" },
      logger: collectingLogger(logged),
      metrics: new MetricsRegistry(),
      offline: true,
    });
  } catch (error) {
    return { error, logged, listens: [] };
  }
  const listens =
    app.style === "coroutine"
      ? app.servers.map((server) => `${server.options.host}:${server.options.port}`)
      : [];
  app.dispose();
  return { error: null, logged, listens };
}

/** A logger that keeps warnings and errors, and drops the rest (`print` goes to info). */
function collectingLogger(into: LoggedProblem[]): Logger {
  const keep =
    (level: LoggedProblem["level"]) =>
    (message: string, _fields?: LogFields): void => {
      into.push({ level, message });
    };
  const logger: Logger = {
    level: "warn",
    debug: () => {},
    info: () => {},
    warn: keep("warn"),
    error: keep("error"),
    isLevelEnabled: (level: LogLevel) => level === "warn" || level === "error",
    child: () => logger,
  };
  return logger;
}
