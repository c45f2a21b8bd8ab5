import { readFileSync } from "node:fs";
import { createLogger, type Logger } from "../observability/logger.js";
import { MetricsRegistry } from "../observability/metrics.js";
import { StateError } from "../protocol/errors.js";
import type { Bus } from "../server/bus.js";
import { Hub } from "../server/hub.js";
import type { WebSocketServer } from "../server/server.js";
import type { ServerOptions } from "../server/server-options.js";
import { LuaHost, type LuaHostOptions } from "./host/lua-host.js";
import { detectStyle } from "./styles/detect.js";
import { type ScriptStyle, styleNamed } from "./styles/registry.js";
import type { StyleOptions, StyleRuntime } from "./styles/style-runtime.js";
import type { LuaEngineKind } from "./vm/engine.js";

/** Settings of a script-driven application. Durations in milliseconds, sizes in bytes. */
export interface ScriptAppOptions {
  scriptPath: string;
  /**
   * A server you built (callback-style scripts): the script's hooks join yours on it instead
   * of the app creating a server; `listen` and `close` stay yours. Other styles open their
   * own servers and refuse it (StateError). Default: none.
   */
  server?: WebSocketServer;
  /** Options of the server(s) the app creates: address, limits, static folder, TLS. Default: SERVER_DEFAULTS. */
  serverOptions?: ServerOptions;
  /** CPU budget per handler run. Default 1000 ms. */
  cpuBudgetMs?: number;
  /** Memory cap of the Lua state. Default 256 MiB. */
  memoryLimitBytes?: number;
  /** Which Lua engine runs the script (see {@link LuaEngineOptions.engine}). */
  luaEngine?: LuaEngineKind | "auto";
  /** Timers the script may have pending at once. Default 250,000. */
  maxTimers?: number;
  /** Listeners a coroutine-style script may have open at once. Default 100. */
  maxListeners?: number;
  /** Outgoing connections the script may have open at once. Default 10,000. */
  maxOutgoing?: number;
  /** Topics a callback-style script may subscribe one client to. Default 1,000. */
  maxTopics?: number;
  /** Default: the given server's logger, else a text logger on stderr. */
  logger?: Logger;
  /** Default: the given server's registry, else a new one. */
  metrics?: MetricsRegistry;
  /** A port given explicitly on the command line; replaces a silly script's own listen port. */
  portOverride?: number;
  /**
   * Load without reaching out, for `moonsocket check`: the script's outgoing connections
   * (a coroutine-style `websocket.connect` at startup) are never opened; their tasks wait.
   * Listening stays the caller's job, as always. Default false.
   */
  offline?: boolean;
  /** Called with the absolute path of every module file the script `require`s from its folder. */
  onModuleLoaded?: (file: string) => void;
  /**
   * Makes the bus of the cluster this application is a node of (`--redis`), with the metrics
   * and log of its server. Default: none (one process).
   */
  createBus?: (metrics: MetricsRegistry, logger: Logger) => Bus;
  /** Messages kept per topic for `_history` and `moonsocket.history` (`--history`). Default 0. */
  historyLength?: number;
  /** Where this process stands among the workers of `--workers N`. Default: alone. */
  worker?: StyleOptions["worker"];
  /** The store of `ngx.shared` when it lives outside the Lua state (`--workers N`). */
  sharedDicts?: StyleOptions["sharedDicts"];
}

/** A Lua script serving WebSockets: the Lua state, its style and its server(s). */
export class ScriptApp {
  readonly style: ScriptStyle;
  host: LuaHost;
  private runtime: StyleRuntime;

  private constructor(style: ScriptStyle, host: LuaHost, runtime: StyleRuntime) {
    this.style = style;
    this.host = host;
    this.runtime = runtime;
  }

  /**
   * Reads the script, detects its style and loads it. Throws LuaError on a syntax or load
   * error, StateError when `server` is given for a style that opens its own.
   *
   * @example
   * const server = new WebSocketServer({ port: 8085 });
   * server.addHooks({ onConnect: (client) => console.log("hello", client.id) });
   * await ScriptApp.create({ scriptPath: "echo.lua", server });
   * await server.listen();
   */
  static async create(given: ScriptAppOptions): Promise<ScriptApp> {
    const options = withDefaults(given);
    const source = readFileSync(options.scriptPath, "utf8");
    const style = detectStyle(source);
    if (options.server !== undefined && style !== "callback")
      throw new StateError(
        `a ${style}-style script opens its own servers: give serverOptions, not server`,
        "ERR_LUA_STYLE_SERVER",
      );
    const host = await LuaHost.create(hostOptions(options, hubFor(options)));
    try {
      const runtime = await createRuntime(style, host, options);
      await runtime.load();
      return new ScriptApp(style, host, runtime);
    } catch (error) {
      host.close();
      throw error;
    }
  }

  /**
   * Loads the script again (after an edit). The callback style keeps every connection open
   * and swaps the script in place (resolves true); other styles cannot, and resolve false:
   * the caller restarts them. A script that fails to load leaves the running one in place
   * and rejects with the error.
   */
  async reload(given: ScriptAppOptions): Promise<boolean> {
    const options = withDefaults(given);
    if (
      this.runtime.reloadInto === undefined ||
      detectStyle(readFileSync(options.scriptPath, "utf8")) !== this.style
    )
      return false;
    const host = await LuaHost.create(hostOptions(options, this.host.hub));
    let runtime: StyleRuntime;
    try {
      runtime = this.runtime.reloadInto(host);
    } catch (error) {
      host.close();
      throw error;
    }
    this.runtime.dispose();
    this.host.close();
    this.host = host;
    this.runtime = runtime;
    return true;
  }

  /** The servers to listen on. */
  get servers(): readonly WebSocketServer[] {
    return this.runtime.servers;
  }

  /** Frees the Lua state; call after the servers closed. */
  dispose(): void {
    this.runtime.dispose();
    this.host.close();
  }
}

/** The options with a logger and a registry: the given server's, else new ones. */
type ResolvedAppOptions = ScriptAppOptions & { logger: Logger; metrics: MetricsRegistry };

function withDefaults(options: ScriptAppOptions): ResolvedAppOptions {
  return {
    ...options,
    logger: options.logger ?? options.server?.logger ?? createLogger(),
    metrics: options.metrics ?? options.server?.metricsRegistry ?? new MetricsRegistry(),
  };
}

/**
 * The script's hub: the given server's, else a new one on the cluster's bus — Redis's
 * (`--redis`), else the one the server options bring (a worker of `--workers`), else none.
 */
function hubFor(options: ResolvedAppOptions): Hub {
  if (options.server !== undefined) return options.server.hub;
  const bus: Bus | undefined =
    options.createBus !== undefined
      ? options.createBus(options.metrics, options.logger)
      : options.serverOptions?.bus;
  return new Hub({
    logger: options.logger,
    ...(bus !== undefined ? { bus } : {}),
    historyLength: options.historyLength ?? options.serverOptions?.historyLength ?? 0,
  });
}

/** The Lua state's settings out of the application's (the limits given, the rest default). */
function hostOptions(options: ResolvedAppOptions, hub: Hub): LuaHostOptions {
  return {
    scriptPath: options.scriptPath,
    hub,
    logger: options.logger,
    metrics: options.metrics,
    ...(options.onModuleLoaded !== undefined ? { onModuleLoaded: options.onModuleLoaded } : {}),
    ...(options.cpuBudgetMs !== undefined ? { cpuBudgetMs: options.cpuBudgetMs } : {}),
    ...(options.memoryLimitBytes !== undefined
      ? { memoryLimitBytes: options.memoryLimitBytes }
      : {}),
    ...(options.maxTimers !== undefined ? { maxTimers: options.maxTimers } : {}),
    ...(options.luaEngine !== undefined ? { luaEngine: options.luaEngine } : {}),
    ...(options.maxOutgoing !== undefined ? { maxOutgoing: options.maxOutgoing } : {}),
    ...(options.maxTopics !== undefined ? { maxTopics: options.maxTopics } : {}),
  };
}

/** The runtime of `style` for the script of `host`. */
function createRuntime(
  style: ScriptStyle,
  host: LuaHost,
  options: ResolvedAppOptions,
): Promise<StyleRuntime> {
  return styleNamed(style).create(host, {
    serverOptions: {
      ...options.serverOptions,
      logger: options.logger,
      metrics: options.metrics,
      hub: host.hub,
    },
    ...(options.server !== undefined ? { server: options.server } : {}),
    ...(options.portOverride !== undefined ? { portOverride: options.portOverride } : {}),
    ...(options.maxListeners !== undefined ? { maxListeners: options.maxListeners } : {}),
    ...(options.offline ? { offline: true } : {}),
    ...(options.worker !== undefined ? { worker: options.worker } : {}),
    ...(options.sharedDicts !== undefined ? { sharedDicts: options.sharedDicts } : {}),
  });
}
