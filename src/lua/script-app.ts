import { readFileSync } from "node:fs";
import type { Logger } from "../server/logger.js";
import type { MetricsRegistry } from "../server/metrics.js";
import { WebSocketServer } from "../server/server.js";
import type { ServerOptions } from "../server/server-options.js";
import { CallbackStyle } from "./callback-style.js";
import type { LuaEngineKind, LuaEngineOptions } from "./engine.js";
import { LuaHost, type LuaHostOptions } from "./lua-host.js";
import { detectStyle, type ScriptStyle } from "./style-detect.js";

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
}

/** What a style runtime offers the application: its servers, and a way to stop. */
export interface StyleRuntime {
  /** Servers this style serves on (a silly script may open several with http.listen). */
  readonly servers: readonly WebSocketServer[];
  /** Runs the script; servers are created but not yet listening. */
  load(): Promise<void> | void;
  /** Releases the style's own resources (after the servers closed). */
  dispose(): void;
  /**
   * Loads a new version of the script into `host` on the same servers, keeping connections
   * open; absent when the style cannot (then the app is restarted instead).
   */
  reloadInto?(host: LuaHost): StyleRuntime;
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
    const host = await LuaHost.create(hostOptions(options));
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
    const host = await LuaHost.create(hostOptions(options));
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

/** The callback style's runtime: one server; reloads swap the hooks and keep every client. */
function callbackRuntime(server: WebSocketServer, callbacks: CallbackStyle): StyleRuntime {
  return {
    servers: [server],
    load: () => callbacks.load(server),
    dispose: () => {},
    reloadInto(host: LuaHost): StyleRuntime {
      const next = new CallbackStyle(host);
      next.load(server);
      // Messages that arrived before the reload go to the script they were sent to.
      callbacks.flush();
      server.replaceHooks(callbacks, next);
      // The new script has not seen the clients that are already here: introduce them, so
      // that on_disconnect still only follows an on_connect of the same script.
      next.introduceClients(server);
      return callbackRuntime(server, next);
    },
  };
}

/** The Lua state's settings out of the application's (the limits given, the rest default). */
function hostOptions(options: ScriptAppOptions): LuaHostOptions {
  return {
    scriptPath: options.scriptPath,
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

async function createRuntime(
  style: ScriptStyle,
  host: LuaHost,
  options: ScriptAppOptions,
): Promise<StyleRuntime> {
  const serverOptions: ServerOptions = {
    ...options.serverOptions,
    logger: options.logger,
    metrics: options.metrics,
  };
  switch (style) {
    case "callback": {
      const server = new WebSocketServer(serverOptions);
      const callbacks = new CallbackStyle(host);
      server.addHooks(callbacks);
      return callbackRuntime(server, callbacks);
    }
    case "openresty": {
      const { OpenRestyStyle } = await import("./openresty-style.js");
      return new OpenRestyStyle(host, serverOptions);
    }
    case "coroutine": {
      const { CoroutineStyle } = await import("./coroutine-style.js");
      return new CoroutineStyle(host, serverOptions, {
        ...(options.portOverride !== undefined ? { portOverride: options.portOverride } : {}),
        ...(options.maxListeners !== undefined ? { maxListeners: options.maxListeners } : {}),
        ...(options.offline ? { offline: true } : {}),
      });
    }
  }
}
