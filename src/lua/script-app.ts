import { readFileSync } from "node:fs";
import type { Logger } from "../observability/logger.js";
import type { MetricsRegistry } from "../observability/metrics.js";
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
  /** Options of the server(s): address, limits, static folder, TLS. */
  serverOptions: ServerOptions;
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
  logger: Logger;
  metrics: MetricsRegistry;
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

  /** Reads the script, detects its style and loads it. Throws LuaError on a syntax or load error. */
  static async create(options: ScriptAppOptions): Promise<ScriptApp> {
    const source = readFileSync(options.scriptPath, "utf8");
    const style = detectStyle(source);
    // The cluster's bus: Redis's (--redis), else the one the server options bring (a worker of
    // --workers), else none (one process).
    const bus =
      options.createBus !== undefined
        ? options.createBus(options.metrics, options.logger)
        : options.serverOptions.bus;
    const hub = new Hub({
      logger: options.logger,
      ...(bus !== undefined ? { bus } : {}),
      historyLength: options.historyLength ?? options.serverOptions.historyLength ?? 0,
    });
    const host = await LuaHost.create(hostOptions(options, hub));
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
  async reload(options: ScriptAppOptions): Promise<boolean> {
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

/** The Lua state's settings out of the application's (the limits given, the rest default). */
function hostOptions(options: ScriptAppOptions, hub: Hub): LuaHostOptions {
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
  options: ScriptAppOptions,
): Promise<StyleRuntime> {
  return styleNamed(style).create(host, {
    serverOptions: {
      ...options.serverOptions,
      logger: options.logger,
      metrics: options.metrics,
      hub: host.hub,
    },
    ...(options.portOverride !== undefined ? { portOverride: options.portOverride } : {}),
    ...(options.maxListeners !== undefined ? { maxListeners: options.maxListeners } : {}),
    ...(options.offline ? { offline: true } : {}),
    ...(options.worker !== undefined ? { worker: options.worker } : {}),
    ...(options.sharedDicts !== undefined ? { sharedDicts: options.sharedDicts } : {}),
  });
}
