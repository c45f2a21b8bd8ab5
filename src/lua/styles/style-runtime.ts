import type { SharedDictStore } from "../../cluster/shared-dict-store.js";
import type { WebSocketServer } from "../../server/server.js";
import type { ServerOptions } from "../../server/server-options.js";
import type { LuaHost } from "../host/lua-host.js";

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

/** What every style is created with. Durations in milliseconds. */
export interface StyleOptions {
  /** Options of the server(s): address, limits, static folder, TLS, logger and metrics. */
  readonly serverOptions: ServerOptions;
  /** A server the application built, to add the script's hooks to (callback style only). */
  readonly server?: WebSocketServer;
  /** A port given explicitly on the command line; replaces a silly script's own listen port. */
  readonly portOverride?: number;
  /** Listeners a coroutine-style script may have open at once. Default 100. */
  readonly maxListeners?: number;
  /** Never reach out (`moonsocket check`): outgoing connections are not opened. Default false. */
  readonly offline?: boolean;
  /** Where this process stands among the workers of `--workers N`. Default: alone. */
  readonly worker?: WorkerPlace;
  /**
   * The store of OpenResty's `ngx.shared` dictionaries when they live outside the Lua state
   * (`--workers N`: the primary's, shared by every worker). Default: in the Lua state.
   */
  readonly sharedDicts?: SharedDictStore;
}

/** A worker's place among the workers of `--workers N`, as `ngx.worker` numbers them. */
export interface WorkerPlace {
  /** 0..count-1 (`ngx.worker.id()`). */
  readonly id: number;
  /** The number of workers (`ngx.worker.count()`). */
  readonly count: number;
}

/**
 * How strongly a script's source points at a style: "requires" when it requires the style's
 * own modules, "uses" when it only uses its globals, null when nothing points at it.
 */
export type StyleEvidence = "requires" | "uses" | null;

/** One script style: how it is recognised and how its runtime is made. */
export interface StyleDefinition {
  /** The style's name, as `moonsocket check` and the "script loaded" log line show it. */
  readonly name: string;
  /** Reads the evidence for this style in a script's code (comments already removed). */
  recognize(code: string): StyleEvidence;
  /** Creates the runtime for the script of `host` (loaded lazily: a style costs nothing unused). */
  create(host: LuaHost, options: StyleOptions): Promise<StyleRuntime>;
}
