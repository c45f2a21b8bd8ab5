import { WebSocketServer } from "../server/server.js";
import type { ServerOptions } from "../server/server-options.js";
import type { LuaHost } from "./lua-host.js";
import type { StyleRuntime } from "./script-app.js";

/** Coroutine style (silly): not built yet. */
export class CoroutineStyle implements StyleRuntime {
  readonly servers: WebSocketServer[];
  constructor(_host: LuaHost, options: ServerOptions) {
    this.servers = [new WebSocketServer({ ...options })];
  }
  load(): void {
    throw new Error("Coroutine-style (silly) scripts are not supported yet");
  }
  dispose(): void {}
}
