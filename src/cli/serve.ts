import { existsSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { currentWorker } from "../cluster/worker-process.js";
import { ScriptApp } from "../lua/script-app.js";
import { describeLuaEngine } from "../lua/vm/create-engine.js";
import { type LuaEngineKind, LuaError } from "../lua/vm/engine.js";
import { createLogger } from "../observability/logger.js";
import { MetricsRegistry } from "../observability/metrics.js";
import { BusError } from "../server/bus.js";
import { ArgsError, defineCommand, formatHelp, parseCommandArgs } from "./args.js";
import { CLUSTER_FLAGS, type ClusterFlagValues, createBusFactory } from "./cluster-flags.js";
import { describeEndpoint, describeListenError } from "./lifecycle.js";
import { ScriptWatcher } from "./script-watcher.js";
import { runWorkersPrimary, ServeWorker } from "./serve-workers.js";
import {
  readWorkerCount,
  SERVER_FLAGS,
  type ServerFlagValues,
  toServerOptions,
  WORKERS_FLAG,
} from "./server-flags.js";

export const SERVE_COMMAND = defineCommand({
  name: "serve",
  description:
    "Serve WebSockets whose logic is a Lua script. The style is detected from the script: callback " +
    "(main/on_connect/_send), coroutine (silly) or OpenResty (resty.websocket.server).",
  positionals: [
    { name: "script.lua", description: "the Lua script (default: the built-in chat demo)" },
  ],
  options: {
    ...SERVER_FLAGS,
    ...CLUSTER_FLAGS,
    workers: WORKERS_FLAG,
    cpuBudget: {
      type: "duration",
      min: 1,
      default: 1000,
      description: "CPU time a Lua handler may run before it is stopped with an error",
    },
    memoryLimit: {
      type: "bytes",
      min: 1024 * 1024,
      default: 256 * 1024 * 1024,
      description: "memory cap of the Lua state",
    },
    maxTimers: {
      type: "number",
      integer: true,
      min: 1,
      default: 250_000,
      description: "timers a script may have pending at once (_setTimeout, time.sleep, ngx.timer…)",
    },
    maxListeners: {
      type: "number",
      integer: true,
      min: 1,
      default: 100,
      description: "listeners a coroutine-style script may have open at once (http.listen)",
    },
    maxOutgoing: {
      type: "number",
      integer: true,
      min: 1,
      default: 10_000,
      description:
        "outgoing WebSocket connections a script may have open at once (websocket.connect, resty.websocket.client)",
    },
    maxTopics: {
      type: "number",
      integer: true,
      min: 1,
      default: 1000,
      description: "topics a callback-style script may subscribe one client to (_subscribe)",
    },
    luaEngine: {
      type: "string",
      choices: ["wasm", "native", "auto"],
      description:
        "Lua to run: wasm (WebAssembly, always there), native (Debian's liblua5.4, built at install when liblua5.4-dev is installed) or auto (native when built); default $MOONSOCKET_LUA_ENGINE, else wasm",
    },
    watch: {
      type: "boolean",
      description: "reload the script when it or a module it requires changes",
    },
  },
  examples: [
    "moonsocket serve app.lua",
    "moonsocket serve chat.lua --static public --port 8080",
    "moonsocket serve chat.lua --redis redis://127.0.0.1:6379 --history 50",
  ],
});

/** `moonsocket serve`: resolves with the exit code once the server has shut down. */
export async function runServe(
  argv: readonly string[],
  defaults?: { script: string; staticDir: string },
): Promise<number> {
  const { help, values, positionals } = parseCommandArgs(SERVE_COMMAND, argv);
  if (help) {
    process.stdout.write(formatHelp(SERVE_COMMAND));
    return 0;
  }
  const scriptPath = positionals[0] ?? defaults?.script;
  if (scriptPath === undefined)
    throw new ArgsError("moonsocket serve: missing script.lua; see 'moonsocket serve --help'");
  if (!existsSync(scriptPath))
    throw new ArgsError(`moonsocket serve: no such script '${scriptPath}'`);
  const flagValues = values as unknown as ServerFlagValues &
    ClusterFlagValues & {
      cpuBudget: number;
      memoryLimit: number;
      maxTimers: number;
      maxListeners: number;
      maxOutgoing: number;
      maxTopics: number;
      luaEngine: LuaEngineKind | "auto" | undefined;
      watch: boolean;
      workers: string;
    };
  if (flagValues.static === undefined && positionals[0] === undefined && defaults !== undefined)
    flagValues.static = defaults.staticDir;
  // The built-in chat demo replays its last 50 messages to a newcomer (from the topic history).
  const historyGiven = argv.some((arg) => arg === "--history" || arg.startsWith("--history="));
  if (positionals[0] === undefined && defaults !== undefined && !historyGiven)
    flagValues.history = 50;
  const serverOptions = toServerOptions("serve", flagValues);
  const createBus = await createBusFactory("serve", flagValues);
  // A script without a folder of its own gets the built-in console page at /.
  serverOptions.consolePage = serverOptions.staticDir === undefined;
  const pageHint = serverOptions.consolePage ? "for a console" : "in a browser";
  let logger = serverOptions.logger ?? createLogger();
  // --workers N: this process supervises N workers (each runs serve as below), or is one of them.
  const workerCount = readWorkerCount("serve", flagValues.workers);
  if (workerCount > 1 && flagValues.redis !== undefined)
    throw new ArgsError(
      "moonsocket serve: --workers and --redis cannot be combined yet: run one --redis node per core instead (each on its own --port)",
    );
  const identity = currentWorker();
  if (identity === null && workerCount > 1)
    return runWorkersPrimary(workerCount, serverOptions, logger);
  const worker = identity === null ? null : new ServeWorker(identity, () => app.servers);
  if (worker !== null) logger = worker.adapt(serverOptions, logger);
  const portGiven =
    worker !== null ||
    argv.some((arg) => arg === "--port" || arg === "-p" || arg.startsWith("--port="));
  const watcher = flagValues.watch
    ? new ScriptWatcher((files) => void reloadAfterChange(files))
    : null;
  watcher?.add(scriptPath);
  const appOptions = {
    ...(portGiven ? { portOverride: serverOptions.port ?? flagValues.port } : {}),
    ...worker?.appOptions(),
    scriptPath,
    serverOptions,
    cpuBudgetMs: flagValues.cpuBudget,
    memoryLimitBytes: flagValues.memoryLimit,
    maxTimers: flagValues.maxTimers,
    maxListeners: flagValues.maxListeners,
    maxOutgoing: flagValues.maxOutgoing,
    maxTopics: flagValues.maxTopics,
    historyLength: flagValues.history,
    ...(createBus !== undefined ? { createBus } : {}),
    ...(flagValues.luaEngine !== undefined ? { luaEngine: flagValues.luaEngine } : {}),
    logger,
    metrics: new MetricsRegistry(),
    // --watch follows every module the script requires, even one required long after startup.
    ...(watcher === null ? {} : { onModuleLoaded: (file: string) => watcher.add(file) }),
  };
  const load = async (): Promise<ScriptApp> =>
    ScriptApp.create({ ...appOptions, metrics: new MetricsRegistry() });
  let app: ScriptApp;
  try {
    app = await load();
  } catch (error) {
    watcher?.close();
    process.stderr.write(`moonsocket serve: ${describeLoadError(error)}\n`);
    return 1;
  }
  const announce = worker === null ? undefined : (lines: string[]) => worker.announce(lines);
  if (
    !(await startApp(
      app,
      serverOptions.port ?? 8085,
      serverOptions.host ?? "127.0.0.1",
      pageHint,
      announce,
    ))
  ) {
    watcher?.close();
    app.dispose();
    return 1;
  }
  logger.info("script loaded", { script: scriptPath, style: app.style });
  // Not awaited: the signal handlers below must be in place as soon as clients can connect (a
  // SIGTERM in between would end the process without closing them with 1001).
  describeLuaEngine(app.host.engine.kind).then(
    (line) => logger.info(line),
    () => {},
  );

  let stopping = false;
  let reloading = false;
  /** Files that changed while a reload was under way: reloaded again once it is done. */
  let changedDuringReload: string[] = [];
  const scriptDir = dirname(resolve(scriptPath));

  /** Reloads after `files` changed; the log names them (relative to the script's folder). */
  async function reloadAfterChange(files: readonly string[]): Promise<void> {
    if (stopping) return;
    if (reloading) {
      changedDuringReload.push(...files);
      return;
    }
    reloading = true;
    const names = files.map((file) => relative(scriptDir, resolve(file))).join(", ");
    logger.info(`${names} changed, reloading`, { script: scriptPath });
    await reloadOrRestart();
    reloading = false;
    const again = changedDuringReload;
    changedDuringReload = [];
    if (again.length > 0) await reloadAfterChange([...new Set(again)]);
  }

  /** Swaps the script in place when the style can, else restarts the servers with it. */
  async function reloadOrRestart(): Promise<void> {
    try {
      const metrics = app.servers[0]?.metricsRegistry ?? appOptions.metrics;
      if (await app.reload({ ...appOptions, metrics })) {
        logger.info("script reloaded; connections kept", { script: scriptPath });
        return;
      }
    } catch (error) {
      logger.error(`reload failed, keeping the running script: ${describeLoadError(error)}`);
      return;
    }
    // This style cannot swap scripts under live connections: restart it.
    let next: ScriptApp;
    try {
      next = await load();
    } catch (error) {
      logger.error(`reload failed, keeping the running script: ${describeLoadError(error)}`);
      return;
    }
    await Promise.all(app.servers.map((server) => server.close()));
    app.dispose();
    app = next;
    await startApp(
      app,
      serverOptions.port ?? 8085,
      serverOptions.host ?? "127.0.0.1",
      pageHint,
      announce,
    );
    logger.info("script restarted", { script: scriptPath });
  }

  return new Promise<number>((finish) => {
    const stop = async () => {
      if (stopping) process.exit(1);
      stopping = true;
      watcher?.close();
      await Promise.all(app.servers.map((server) => server.close()));
      app.dispose();
      worker?.finish();
      finish(0);
    };
    if (worker !== null) {
      worker.onStop(() => void stop());
      return;
    }
    process.on("SIGINT", () => void stop());
    process.on("SIGTERM", () => void stop());
  });
}

/**
 * Starts every server of `app` and prints a banner line for each (a worker of --workers hands
 * its lines to `announce` instead: the primary prints them once every worker listens).
 */
async function startApp(
  app: ScriptApp,
  port: number,
  host: string,
  pageHint: string,
  announce?: (lines: string[]) => void,
): Promise<boolean> {
  // A coroutine-style script may listen on several addresses: name the one that failed.
  let failing: { port?: number; host?: string } = {};
  const banners: string[] = [];
  try {
    for (const server of app.servers) {
      failing = server.options;
      await server.listen();
      banners.push(
        `moonsocket serve listening on ${describeEndpoint(server)} (open ${server.url.replace(/^ws/, "http")} ${pageHint})`,
      );
      if (announce === undefined) process.stdout.write(`${banners.at(-1)}\n`);
    }
    announce?.(banners);
    return true;
  } catch (error) {
    if (error instanceof BusError) {
      process.stderr.write(
        `moonsocket serve: ${error.message} (is Redis running? check --redis)\n`,
      );
      return false;
    }
    process.stderr.write(
      `moonsocket serve: ${describeListenError(
        error as NodeJS.ErrnoException,
        failing.port ?? port,
        failing.host ?? host,
      )}\n`,
    );
    return false;
  }
}

export function describeLoadError(error: unknown): string {
  if (error instanceof LuaError) {
    return `${error.code === "ERR_LUA_SYNTAX" ? "syntax error" : "error while loading the script"}: ${error.message}${error.traceback ? `\n${error.traceback}` : ""}`;
  }
  return error instanceof Error ? error.message : String(error);
}
